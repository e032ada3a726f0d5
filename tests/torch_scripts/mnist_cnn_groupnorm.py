"""The MNIST example of pytorch/examples (mnist/main.py, BSD 3-Clause
licence, (c) PyTorch contributors) with GroupNorm after each convolution, as
people write it for small batches: Net (conv1, conv2, GroupNorm,
max_pool2d, flatten, fc1, fc2, log_softmax), train and test with
DataLoader, F.nll_loss, Adadelta under StepLR, argmax(keepdim=True),
eq(view_as).  Adapted to small local data: 10x10 "digits" (noisy bars and
rings made with NumPy), the weights from NumPy, dropout 0, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import StepLR
from torch.utils.data import DataLoader, TensorDataset

rng = np.random.default_rng(1)
torch.manual_seed(1)


class Net(nn.Module):
    def __init__(self):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.gn1 = nn.GroupNorm(2, 8)
        self.conv2 = nn.Conv2d(8, 8, 3, 1)
        self.gn2 = nn.GroupNorm(4, 8)
        self.dropout1 = nn.Dropout(0.0)
        self.fc1 = nn.Linear(72, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = F.relu(self.gn1(self.conv1(x)))
        x = F.relu(self.gn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=1)


def make_images(n):
    yy, xx = np.mgrid[:10, :10]
    shapes = [(np.abs(xx - 5) < 2), (np.abs(yy - 5) < 2), (np.abs(np.hypot(xx - 4.5, yy - 4.5) - 3) < 1)]
    labels = rng.integers(0, 3, n)
    images = np.stack([shapes[k] + 0.3 * rng.standard_normal((10, 10)) for k in labels])[:, None]
    return torch.from_numpy(images), torch.from_numpy(labels)


def train(model, device, train_loader, optimizer, epoch):
    model.train()
    for batch_idx, (data, target) in enumerate(train_loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.nll_loss(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % 2 == 0:
            print("Train Epoch: {} [{}/{} ({:.0f}%)]\tLoss: {:.6f}".format(
                epoch, batch_idx * len(data), len(train_loader.dataset),
                100. * batch_idx / len(train_loader), loss.item()))


def test(model, device, test_loader):
    model.eval()
    test_loss = 0
    correct = 0
    with torch.no_grad():
        for data, target in test_loader:
            data, target = data.to(device), target.to(device)
            output = model(data)
            test_loss += F.nll_loss(output, target, reduction="sum").item()
            pred = output.argmax(dim=1, keepdim=True)
            correct += pred.eq(target.view_as(pred)).sum().item()
    test_loss /= len(test_loader.dataset)
    print("\nTest set: Average loss: {:.4f}, Accuracy: {}/{} ({:.0f}%)\n".format(
        test_loss, correct, len(test_loader.dataset), 100. * correct / len(test_loader.dataset)))


device = torch.device("cpu")
train_loader = DataLoader(TensorDataset(*make_images(64)), batch_size=16)
test_loader = DataLoader(TensorDataset(*make_images(32)), batch_size=32)
model = Net().double().to(device)
with torch.no_grad():
    for name, p in model.named_parameters():
        if "gn" not in name:
            p.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, tuple(p.shape))))
optimizer = optim.Adadelta(model.parameters(), lr=1.0)
scheduler = StepLR(optimizer, step_size=1, gamma=0.7)
for epoch in range(1, 4):
    train(model, device, train_loader, optimizer, epoch)
    test(model, device, test_loader)
    scheduler.step()
print(model.gn1, model.gn2.weight.sum().item())
