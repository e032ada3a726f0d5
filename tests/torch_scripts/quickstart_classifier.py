"""The "Quickstart" tutorial's loop on a synthetic dataset: a Dataset and
DataLoader, an nn.Module with nn.Flatten, train/test functions, accuracy by
``(pred.argmax(1) == y).type(torch.float).sum().item()``, a checkpoint saved
to ``model.pth`` and loaded back, a learning-rate schedule."""

import os

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, random_split

rng = np.random.default_rng(0)
centers = rng.standard_normal((4, 2, 4, 4)) * 2
labels = rng.integers(0, 4, 600)
images = (centers[labels] + rng.standard_normal((600, 2, 4, 4))).astype(np.float32)


class Blobs(Dataset):
    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, idx):
        return torch.from_numpy(self.images[idx]), int(self.labels[idx])


training_data = Blobs(images[:500], labels[:500])
test_data = TensorDataset(torch.tensor(images[500:]), torch.tensor(labels[500:]))
train_dataloader = DataLoader(training_data, batch_size=64)
test_dataloader = DataLoader(test_data, batch_size=64)
for X, y in test_dataloader:
    print(f"Shape of X [N, C, H, W]: {X.shape}")
    print(f"Shape of y: {y.shape} {y.dtype == torch.int64}")  # dtypes are NumPy's: they print as int64
    break


class NeuralNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear_relu_stack = nn.Sequential(
            nn.Linear(2 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))

    def forward(self, x):
        x = self.flatten(x)
        return self.linear_relu_stack(x)


model = NeuralNetwork()
with torch.no_grad():
    for name, param in model.named_parameters():
        param.copy_(torch.tensor(rng.uniform(-0.2, 0.2, tuple(param.shape)), dtype=torch.float32))
print(model)

loss_fn = nn.CrossEntropyLoss()
optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def train(dataloader, model, loss_fn, optimizer):
    size = len(dataloader.dataset)
    model.train()
    for batch, (X, y) in enumerate(dataloader):
        pred = model(X)
        loss = loss_fn(pred, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if batch % 4 == 0:
            loss, current = loss.item(), (batch + 1) * len(X)
            print(f"loss: {loss:>7f}  [{current:>5d}/{size:>5d}]")


def test(dataloader, model, loss_fn):
    size = len(dataloader.dataset)
    num_batches = len(dataloader)
    model.eval()
    test_loss, correct = 0, 0
    with torch.no_grad():
        for X, y in dataloader:
            pred = model(X)
            test_loss += loss_fn(pred, y).item()
            correct += (pred.argmax(1) == y).type(torch.float).sum().item()
    test_loss /= num_batches
    correct /= size
    print(f"Test Error: \n Accuracy: {(100 * correct):>0.1f}%, Avg loss: {test_loss:>8f} \n")
    return correct


for t in range(4):
    print(f"Epoch {t + 1}\n-------------------------------")
    train(train_dataloader, model, loss_fn, optimizer)
    test(test_dataloader, model, loss_fn)
    scheduler.step()
    print("lr", scheduler.get_last_lr())

torch.save(model.state_dict(), "model.pth")
print("Saved PyTorch Model State to model.pth", os.path.exists("model.pth"), sorted(os.listdir(".")))
model = NeuralNetwork()
model.load_state_dict(torch.load("model.pth", weights_only=True, map_location="cpu"))
print("reloaded accuracy", test(test_dataloader, model, loss_fn))
x, y = test_data[0][0], test_data[0][1]
with torch.no_grad():
    pred = model(x.unsqueeze(0))
    print(f'Predicted: "{pred[0].argmax(0).item()}", Actual: "{y.item()}"')

# shuffling, splitting and the rest of utils.data: what does not depend on the random stream
generator = torch.Generator().manual_seed(42)
loader = DataLoader(training_data, batch_size=32, shuffle=True, drop_last=True, generator=generator)
seen = torch.cat([y for _, y in loader])
print("batches", len(loader), "seen", len(seen), "label sum", int(seen.sum()) <= int(labels[:500].sum()))
train_part, val_part = random_split(training_data, [0.8, 0.2], generator=torch.Generator().manual_seed(1))
print("split", len(train_part), len(val_part), isinstance(train_part, Subset))
overlap = set(train_part.indices) & set(val_part.indices)
print("disjoint", not overlap, "covering", len(set(train_part.indices) | set(val_part.indices)))
first = next(iter(DataLoader(Subset(training_data, [3, 1, 4]), batch_size=3,
                             collate_fn=lambda items: [label for _, label in items])))
print("collate_fn", first)
