"""Likelihood losses beyond MSE, as probabilistic-regression tutorials and
count-model notebooks write them: a heteroscedastic network predicting a
mean and a variance (softplus) trained with nn.GaussianNLLLoss, a Poisson
regression of counts with nn.PoissonNLLLoss (log_input and full),
multi-label tagging with nn.MultiLabelSoftMarginLoss (with class weights)
beside BCEWithLogitsLoss(pos_weight=), and KLDivLoss(batchmean,
log_target) for distillation.  Small local data from NumPy, the weights
from NumPy, float64."""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

rng = np.random.default_rng(9)
torch.set_default_dtype(torch.float64)


def init_(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape))))
    return module


x = torch.from_numpy(np.sort(rng.uniform(-3, 3, (80, 1)), axis=0))
noise = torch.from_numpy(rng.standard_normal((80, 1)))
y = torch.sin(x) + (0.1 + 0.3 * x.abs()) * noise


class MeanVariance(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh())
        self.mean = nn.Linear(16, 1)
        self.var = nn.Linear(16, 1)

    def forward(self, x):
        h = self.body(x)
        return self.mean(h), F.softplus(self.var(h)) + 1e-6


net = init_(MeanVariance())
gaussian = nn.GaussianNLLLoss(full=True)
optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
for step in range(60):
    mean, var = net(x)
    loss = gaussian(mean, y, var)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 20 == 19:
        print("gaussian nll", step + 1, round(loss.item(), 6), var.min().item(), var.max().item())
print("homoscedastic", F.gaussian_nll_loss(mean, y, torch.ones(80)).item(), F.gaussian_nll_loss(mean, y, 0.5).item())

features = torch.from_numpy(rng.standard_normal((100, 3)))
rates = torch.exp(features @ torch.tensor([0.5, -0.3, 0.2]) + 0.5)
counts = torch.from_numpy(rng.poisson(rates.numpy()).astype(np.float64))
poisson_model = init_(nn.Linear(3, 1))
poisson = nn.PoissonNLLLoss(log_input=True, full=True)
optimizer = torch.optim.LBFGS(poisson_model.parameters(), lr=0.5, max_iter=20, line_search_fn="strong_wolfe")


def closure():
    optimizer.zero_grad()
    loss = poisson(poisson_model(features).squeeze(1), counts)
    loss.backward()
    return loss


for step in range(3):
    loss = optimizer.step(closure)
    print("poisson nll", step, round(loss.item(), 6))
print("weights", poisson_model.weight.data, "bias", poisson_model.bias.item())
print("rate form", F.poisson_nll_loss(rates, counts, log_input=False).item())

tags = torch.from_numpy((rng.uniform(size=(60, 5)) < 0.3).astype(np.float64))
inputs = torch.from_numpy(rng.standard_normal((60, 4))) + tags[:, :4]
tagger = init_(nn.Sequential(nn.Linear(4, 12), nn.ReLU(), nn.Linear(12, 5)))
multilabel = nn.MultiLabelSoftMarginLoss(weight=torch.tensor([1.0, 2.0, 1.0, 0.5, 1.0]))
bce = nn.BCEWithLogitsLoss(pos_weight=torch.full((5,), 2.0))
optimizer = torch.optim.SGD(tagger.parameters(), lr=0.5)
for step in range(30):
    logits = tagger(inputs)
    loss = multilabel(logits, tags) + 0.5 * bce(logits, tags)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("multilabel", round(loss.item(), 6), ((logits > 0) == tags.bool()).double().mean().item())

teacher = F.log_softmax(tagger(inputs) / 2.0, dim=1)
student = init_(nn.Linear(4, 5))
kl = nn.KLDivLoss(reduction="batchmean", log_target=True)
optimizer = torch.optim.Adam(student.parameters(), lr=0.05)
for step in range(20):
    loss = kl(F.log_softmax(student(inputs) / 2.0, dim=1), teacher.detach())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("distillation", round(loss.item(), 6))
