"""Softmax regression and an MLP from scratch, as the Dive into Deep
Learning book writes them (d2l.ai chapters 3.6 and 4.2, the PyTorch
version, CC BY-SA 4.0 text / MIT-0 code, (c) the d2l authors): softmax
with exp and keepdim sums, cross_entropy by fancy indexing y_hat[range(n),
y], accuracy, evaluate_accuracy with an Accumulator, the hand-written sgd
updater under no_grad with param.grad.zero_(), the relu of torch.max with
zeros_like, then the concise nn.Sequential version with init.normal_ and
nn.CrossEntropyLoss(reduction='none').  Adapted to small local data: three
Gaussian classes in 8-D made with NumPy, a few epochs, float64."""

import numpy as np
import torch
from torch import nn

rng = np.random.default_rng(42)
means = rng.normal(0, 2, (3, 8))
labels = rng.integers(0, 3, 120)
features = means[labels] + rng.standard_normal((120, 8))
train_iter = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
    torch.from_numpy(features[:90]), torch.from_numpy(labels[:90])), batch_size=30, shuffle=False)
test_iter = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
    torch.from_numpy(features[90:]), torch.from_numpy(labels[90:])), batch_size=30)
num_inputs, num_outputs = 8, 3
W = torch.from_numpy(rng.normal(0, 0.01, (num_inputs, num_outputs))).requires_grad_(True)
b = torch.zeros(num_outputs, dtype=torch.float64, requires_grad=True)


def softmax(X):
    X_exp = torch.exp(X)
    partition = X_exp.sum(1, keepdim=True)
    return X_exp / partition


def net(X):
    return softmax(torch.matmul(X.reshape((-1, W.shape[0])), W) + b)


def cross_entropy(y_hat, y):
    return - torch.log(y_hat[range(len(y_hat)), y])


def accuracy(y_hat, y):
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


class Accumulator:
    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def __getitem__(self, idx):
        return self.data[idx]


def evaluate_accuracy(net, data_iter):
    if isinstance(net, torch.nn.Module):
        net.eval()
    metric = Accumulator(2)
    with torch.no_grad():
        for X, y in data_iter:
            metric.add(accuracy(net(X), y), y.numel())
    return metric[0] / metric[1]


def sgd(params, lr, batch_size):
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def train_epoch_ch3(net, train_iter, loss, updater):
    if isinstance(net, torch.nn.Module):
        net.train()
    metric = Accumulator(3)
    for X, y in train_iter:
        y_hat = net(X)
        l = loss(y_hat, y)  # noqa: E741
        if isinstance(updater, torch.optim.Optimizer):
            updater.zero_grad()
            l.mean().backward()
            updater.step()
        else:
            l.sum().backward()
            updater(X.shape[0])
        metric.add(float(l.sum()), accuracy(y_hat, y), y.numel())
    return metric[0] / metric[2], metric[1] / metric[2]


def train_ch3(net, train_iter, test_iter, loss, num_epochs, updater):
    for epoch in range(num_epochs):
        train_metrics = train_epoch_ch3(net, train_iter, loss, updater)
        test_acc = evaluate_accuracy(net, test_iter)
        print(f"epoch {epoch + 1}, loss {train_metrics[0]:.5f}, train acc {train_metrics[1]:.3f}, "
              f"test acc {test_acc:.3f}")


X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
print(X.sum(0, keepdim=True), X.sum(1, keepdim=True), softmax(X).sum(1))
y = torch.tensor([0, 2])
y_hat = torch.tensor([[0.1, 0.3, 0.6], [0.3, 0.2, 0.5]])
print(y_hat[[0, 1], y], cross_entropy(y_hat, y), accuracy(y_hat, y) / len(y))
lr = 0.1
train_ch3(net, train_iter, test_iter, cross_entropy, 4, lambda batch_size: sgd([W, b], lr, batch_size))


def relu(X):
    a = torch.zeros_like(X)
    return torch.max(X, a)


W1 = nn.Parameter(torch.from_numpy(rng.normal(0, 0.1, (8, 16))))
b1 = nn.Parameter(torch.zeros(16, dtype=torch.float64))
W2 = nn.Parameter(torch.from_numpy(rng.normal(0, 0.1, (16, 3))))
b2 = nn.Parameter(torch.zeros(3, dtype=torch.float64))


def mlp(X):
    H = relu(X @ W1 + b1)
    return H @ W2 + b2


loss = nn.CrossEntropyLoss(reduction="none")
train_ch3(mlp, train_iter, test_iter, loss, 3, torch.optim.SGD([W1, b1, W2, b2], lr=0.1))

concise = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3)).double()


def init_weights(m):
    if type(m) == nn.Linear:  # noqa: E721
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(rng.normal(0, 0.01, tuple(m.weight.shape))))
            m.bias.copy_(torch.from_numpy(rng.normal(0, 0.01, tuple(m.bias.shape))))


concise.apply(init_weights)
train_ch3(concise, train_iter, test_iter, loss, 3, torch.optim.SGD(concise.parameters(), lr=0.5))
