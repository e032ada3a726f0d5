"""The saving and logging lines at the end of today's training scripts
(the pytorch/tutorials "Saving and loading models" recipe and "Visualizing
models, data, and training with TensorBoard", BSD 3-Clause licence, (c)
PyTorch contributors): torch.save of a checkpoint dict (model and
optimizer state_dicts, epoch, loss) and torch.load with weights_only
(the default) to resume; torch.save of the whole model and
torch.load(weights_only=False); the refusal of pickled code under
weights_only=True; copy.deepcopy; SummaryWriter's add_scalar,
add_histogram and add_text, flushed and closed, with the event file
read back by the tensorboard package.  Small local data from NumPy,
float64."""

import copy
import glob
import pickle

import numpy as np
import torch
import torch.nn as nn
from torch.utils.tensorboard import SummaryWriter

rng = np.random.default_rng(4)
X = torch.from_numpy(rng.standard_normal((32, 4)))
y = torch.from_numpy(rng.integers(0, 2, 32))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def make():
    net = Net().double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape))))
    return net


model = make()
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
criterion = nn.CrossEntropyLoss()
writer = SummaryWriter("runs/experiment_1")
for epoch in range(6):
    optimizer.zero_grad()
    loss = criterion(model(X), y)
    loss.backward()
    optimizer.step()
    writer.add_scalar("training loss", loss.item(), epoch)
writer.add_histogram("fc1.weight", model.fc1.weight, 6)
writer.add_text("note", "trained 6 epochs")
writer.flush()
writer.close()
torch.save({"epoch": 6, "model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict(),
            "loss": loss.item()}, "checkpoint.pt")

resumed = make()
resumed_optimizer = torch.optim.SGD(resumed.parameters(), lr=0.1, momentum=0.9)
checkpoint = torch.load("checkpoint.pt")
resumed.load_state_dict(checkpoint["model_state_dict"])
resumed_optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
print("resumed at epoch", checkpoint["epoch"], "loss", round(checkpoint["loss"], 6))
for net, opt in ((model, optimizer), (resumed, resumed_optimizer)):
    opt.zero_grad()
    loss = criterion(net(X), y)
    loss.backward()
    opt.step()
    print("next step", round(loss.item(), 6))
print("same weights", torch.equal(model.fc2.weight, resumed.fc2.weight))

torch.save(model, "model.pt")
try:
    torch.load("model.pt")
except Exception as error:
    print("weights_only refuses the whole model:", type(error).__name__)
whole = torch.load("model.pt", weights_only=False)
whole.eval()
print(type(whole).__name__, torch.equal(whole(X), model(X)))
twin = copy.deepcopy(model)
twin.fc1.weight.data.zero_()
print("deepcopy independent", model.fc1.weight.abs().sum().item() > 0, twin.fc1.weight.abs().sum().item())
t = pickle.loads(pickle.dumps(torch.arange(4.0).reshape(2, 2)))
print("pickled tensor", t, t.dtype == torch.float32)

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

events = EventAccumulator(glob.glob("runs/experiment_1")[0])
events.Reload()
scalars = events.Scalars("training loss")
print("logged", [s.step for s in scalars], [round(s.value, 4) for s in scalars])
print("histograms", events.Tags()["histograms"])
