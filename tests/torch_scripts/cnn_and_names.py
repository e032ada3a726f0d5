"""A small CNN (Conv2d, BatchNorm2d, MaxPool2d, AvgPool2d, containers) trained
with Adagrad under OneCycleLR, then the tensor names new users reach for:
sort/topk/cumsum/cumprod/tril/triu/einsum/roll/flip, allclose/isclose,
one_hot/pad, keepdims, log2/log10, legacy tensor types, in-place operators."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), nn.Conv2d(4, 6, 3), nn.AvgPool2d(2))
        self.heads = nn.ModuleDict({"cls": nn.Linear(6, 3), "aux": nn.Linear(6, 1)})
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(3)), nn.Parameter(torch.zeros(1))])
        self.norm = nn.BatchNorm1d(6)

    def forward(self, x):
        h = self.norm(self.features(x).flatten(1))
        return self.heads["cls"](h) * self.scales[0], self.heads["aux"](h) + self.scales[1]


torch.manual_seed(0)
net = Net().double()
with torch.no_grad():
    for p in net.parameters():
        p.copy_(torch.from_numpy(rng.uniform(-0.4, 0.4, tuple(p.shape))))
images = torch.from_numpy(rng.standard_normal((48, 1, 8, 8)))
labels = torch.from_numpy(rng.integers(0, 3, 48))
optimizer = torch.optim.Adagrad(net.parameters(), lr=0.05)
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=30, cycle_momentum=False)
for step in range(30):
    batch = slice(16 * (step % 3), 16 * (step % 3 + 1))
    logits, aux = net(images[batch])
    loss = F.cross_entropy(logits, labels[batch]) + F.smooth_l1_loss(aux.squeeze(1), labels[batch].double())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    if step % 10 == 9:
        print(step, round(loss.item(), 6), scheduler.get_last_lr())
net.eval()
with torch.no_grad():
    logits, _ = net(images)
    print("accuracy", (logits.argmax(dim=1) == labels).float().mean().item())
    print("running_mean", net.features[1].running_mean)

# names
t = torch.tensor(rng.standard_normal((3, 4)))
values, indices = t.sort(dim=1, descending=True)
print("sort", values, indices)
print("topk", torch.topk(t, 2, dim=0))
print("cumsum", t.cumsum(1), "cumprod", torch.cumprod(t, dim=0))
print("tril", torch.tril(t), "triu", t.triu(1))
print("einsum", torch.einsum("ij,kj->ik", t, t))
print("roll", torch.roll(t, 1, 0), "flip", t.flip(1))
print("allclose", torch.allclose(t, t + 1e-9), torch.isclose(t, t + 1e-3).sum().item())
print("one_hot", F.one_hot(torch.tensor([0, 2, 1]), num_classes=4))
print("pad", F.pad(t, (1, 2), value=-1.0).shape, F.pad(t[None], (1, 1, 0, 1), mode="reflect").shape)
print("keepdims", t.sum(1, keepdims=True).shape, t.abs().log2().mean().item(), t.abs().log10().max().item())
print("legacy", torch.FloatTensor([1, 2]).dtype == torch.float32, torch.LongTensor([1]).type(),
      t.type(torch.float32).dtype == torch.float32, t.type())
u = t.clone()
u += 1
u -= torch.ones(4)
u *= 2
u /= 4
u **= 2
v = torch.arange(6).reshape(2, 3)
v //= 2
v %= 2
v |= torch.tensor([1, 0, 0])
v &= 1
v ^= torch.tensor([0, 1, 1])
v <<= 1
m = torch.eye(4, dtype=torch.float64)
m @= t.t() @ t
print("in place", u, v, m.sum().item())
alias = u[0]
u.mul_(0)
print("alias sees it", alias.sum().item())
