"""The "Learning PyTorch with Examples" tutorial (fit sin(x) with a cubic), in
its four forms: tensors by hand, a custom autograd Function, nn with manual
updates (``param -= lr * param.grad``, ``p.data``), and an optimizer."""

import math

import numpy as np
import torch

dtype = torch.float
x = torch.linspace(-math.pi, math.pi, 2000, dtype=dtype)
y = torch.sin(x)
start = np.random.default_rng(0).standard_normal(4)

# -- tensors and autograd, updated by hand --------------------------------------
a, b, c, d = (torch.tensor(v, dtype=dtype, requires_grad=True) for v in start)
learning_rate = 1e-6
for t in range(2000):
    y_pred = a + b * x + c * x ** 2 + d * x ** 3
    loss = (y_pred - y).pow(2).sum()
    if t % 500 == 99:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        a -= learning_rate * a.grad
        b -= learning_rate * b.grad
        c -= learning_rate * c.grad
        d -= learning_rate * d.grad
        a.grad = None
        b.grad = None
        c.grad.zero_()
        d.grad.zero_()
print(f"Result: y = {a.item()} + {b.item()} x + {c.item()} x^2 + {d.item()} x^3")


# -- a custom autograd Function ------------------------------------------------------
class LegendrePolynomial3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input ** 3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


a, b, c, d = (torch.full((), v, dtype=dtype, requires_grad=True) for v in (0.0, -1.0, 0.0, 0.3))
learning_rate = 5e-6
for t in range(2000):
    P3 = LegendrePolynomial3.apply
    y_pred = a + b * P3(c + d * x)
    loss = (y_pred - y).pow(2).sum()
    if t % 500 == 99:
        print(t, loss.item())
    loss.backward()
    with torch.no_grad():
        for p in (a, b, c, d):
            p -= learning_rate * p.grad
            p.grad = None
print(f"Result: y = {a.item()} + {b.item()} * P3({c.item()} + {d.item()} x)")

# -- nn, parameters updated in place through the loop variable and through .data -----
p = torch.tensor([1, 2, 3])
xx = x.unsqueeze(-1).pow(p)
model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
with torch.no_grad():
    model[0].weight.copy_(torch.from_numpy(start[:3]).reshape(1, 3))
    model[0].bias.fill_(start[3])
loss_fn = torch.nn.MSELoss(reduction="sum")
learning_rate = 1e-6
for t in range(2000):
    loss = loss_fn(model(xx), y)
    if t % 500 == 99:
        print(t, loss.item())
    model.zero_grad()
    loss.backward()
    with torch.no_grad():
        for param in model.parameters():
            param -= learning_rate * param.grad
    for param in model.parameters():
        param.data.add_(param.grad.data, alpha=-learning_rate / 10)
linear_layer = model[0]
print(f"Result: y = {linear_layer.bias.item()} + {linear_layer.weight[:, 0].item()} x + "
      f"{linear_layer.weight[:, 1].item()} x^2 + {linear_layer.weight[:, 2].item()} x^3")
print("weight norm", linear_layer.weight.data.norm().item(), type(linear_layer.weight.data).__name__)

# -- an optimizer (in float64: near the optimum float32 gradients are rounding noise) --
model.double()
xx, y = xx.double(), y.to(torch.float64)
with torch.no_grad():
    model[0].weight.copy_(torch.from_numpy(start[:3]).reshape(1, 3))
    model[0].bias.fill_(start[3])
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
for t in range(300):
    loss = loss_fn(model(xx), y)
    if t % 100 == 99:
        print(t, loss.item())
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print("square_avg", optimizer.state[linear_layer.weight]["square_avg"].sum().item())
