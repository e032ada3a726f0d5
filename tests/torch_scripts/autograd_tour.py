"""The autograd tutorial's idioms: grad_fn and next_functions, vector-Jacobian
products, retain_graph, hooks, higher derivatives, autograd.functional, grad
modes, and in-place changes of views of tensors in the graph."""

import numpy as np
import torch

rng = np.random.default_rng(0)
x = torch.ones(5)
y = torch.zeros(3)
w = torch.tensor(rng.standard_normal((5, 3)), dtype=torch.float32, requires_grad=True)
b = torch.tensor(rng.standard_normal(3), dtype=torch.float32, requires_grad=True)
z = torch.matmul(x, w) + b
loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
print(f"Gradient function for z = {z.grad_fn}")
print(f"Gradient function for loss = {loss.grad_fn}")
print("next", [(type(f).__name__ if f is None else f.name(), i) for f, i in loss.grad_fn.next_functions])
loss.backward()
print(w.grad)
print(b.grad)
print(z.requires_grad, z.detach().requires_grad, z.is_leaf, w.is_leaf)
with torch.no_grad():
    print("no_grad", (torch.matmul(x, w) + b).requires_grad)


@torch.no_grad
def evaluate(t):
    return t * 2


@torch.inference_mode()
def infer(t):
    return t * 2


print("decorators", evaluate(w).requires_grad, infer(w).requires_grad)

inp = torch.eye(4, 5, requires_grad=True)
out = (inp + 1).pow(2).t()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"First call\n{inp.grad}")
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nSecond call\n{inp.grad}")
inp.grad.zero_()
out.backward(torch.ones_like(out), retain_graph=True)
print(f"\nCall after zeroing gradients\n{inp.grad}")

# hooks, retain_grad, autograd.grad and higher derivatives
a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
handle = a.register_hook(lambda g: g * 2)
h = a * a
h.retain_grad()
h.register_hook(lambda g: print("hook on h sees", g))
(h * 3).sum().backward()
print("a.grad", a.grad, "h.grad", h.grad)
g, = torch.autograd.grad((a ** 3).sum(), a, create_graph=True)
g2, = torch.autograd.grad(g.sum(), a)
print("grad", g, "second", g2)
handle.remove()
a.grad = None
(a * 3).sum().backward(inputs=[a])
print("after remove", a.grad)
print("hessian", torch.autograd.functional.hessian(lambda t: (t ** 3).prod(), a.detach()))
print("jacobian", torch.autograd.functional.jacobian(lambda t: t.cumsum(0) * t, a.detach()))
print("vjp", torch.autograd.functional.vjp(lambda t: t.exp(), a.detach(), torch.ones(3))[1])

# in-place changes of views rewrite the base's history (CopySlices)
base = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
y = base * 2
y[1:].mul_(3)
y[0] = 0
y.sum().backward()
print("views", y, base.grad)
m = torch.tensor(rng.standard_normal((2, 3)), requires_grad=True)
buf = torch.zeros(2, 2, 3, dtype=torch.float64)
buf[0].copy_(m * 2)
buf[1] += m
(buf ** 2).sum().backward()
print("copy_ into a buffer", m.grad)
q = torch.tensor([0.5, -1.0], requires_grad=True)
r = q.exp()
r.add_(1)
try:
    r.sum().backward()
    print("exp saved its output: torch raises here, as should we")
except RuntimeError as error:
    print("RuntimeError", "modified by an inplace operation" in str(error))
try:
    q.add_(1)
except RuntimeError as error:
    print("RuntimeError", str(error))
print("version", r._version)
