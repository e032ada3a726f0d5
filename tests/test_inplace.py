"""gpugrad/autograd/inplace.py: in-place ops and augmented operators against
torch: the same object, every alias sees the change, versions, errors, and
torch's semantics for in-place ops on views of tensors in the graph (CopySlices)."""

import numpy
import pytest
import torch
from conftest import assert_close, to_torch

import gpugrad


@pytest.mark.parametrize("op", ["+=", "-=", "*=", "/=", "**="])
def test_augmented_operators_work_in_place(rng, op):
    values = rng.uniform(0.5, 2.0, (3, 4))
    other = rng.uniform(0.5, 2.0, (4,))
    x = gpugrad.tensor(values)
    alias, view = x, x[1]
    before = x._version
    namespace = {"x": x, "o": gpugrad.tensor(other)}
    exec(f"x {op} o", namespace)
    assert namespace["x"] is alias
    t = torch.tensor(values)
    tnamespace = {"x": t, "o": torch.tensor(other)}
    exec(f"x {op} o", tnamespace)
    assert_close(x, tnamespace["x"], 1e-12)
    assert_close(view, tnamespace["x"][1], 1e-12)               # a view made before sees the change
    assert x._version > before


def test_integer_and_bitwise_augmented_operators():
    x = gpugrad.tensor([5, 6, 7])
    same = x
    x //= 2
    x %= 2
    x |= gpugrad.tensor([2, 2, 2])
    x &= gpugrad.tensor([3, 3, 1])
    x ^= gpugrad.tensor([1, 1, 1])
    t = torch.tensor([5, 6, 7])
    t //= 2
    t %= 2
    t |= torch.tensor([2, 2, 2])
    t &= torch.tensor([3, 3, 1])
    t ^= torch.tensor([1, 1, 1])
    assert x is same and x.tolist() == t.tolist()
    with pytest.raises(RuntimeError, match="result type float32 can't be cast to the desired output type int64"):
        x += 1.5


def test_matmul_and_shift_augmented_operators(rng):
    a, b = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    x, t = gpugrad.tensor(a), torch.tensor(a)
    row = x[0]
    same = x
    tsame = t
    x @= gpugrad.tensor(b)              # torch has no in-place matmul: ``x = x @ b``, a new tensor
    t @= torch.tensor(b)
    assert (x is same) == (t is tsame) == False  # noqa: E712
    assert_close(x, t, 1e-12)
    assert_close(row, tsame[0], 1e-12)
    x @= gpugrad.ones(3, 2, dtype=gpugrad.float64)
    assert x.shape == (3, 2)
    s, ts = gpugrad.tensor([1, 8, 3]), torch.tensor([1, 8, 3])
    s <<= 2
    s >>= gpugrad.tensor([1, 2, 0])
    ts <<= 2
    ts >>= torch.tensor([1, 2, 0])
    assert s.tolist() == ts.tolist()


def test_leaf_that_requires_grad_refuses_in_place_outside_no_grad():
    w = gpugrad.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place"):
        w -= 1
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        w.add_(1)
    with pytest.raises(RuntimeError, match="a view of a leaf Variable that requires grad"):
        w[1:].mul_(2)
    with gpugrad.no_grad():
        w -= 1
    assert w.tolist() == [0.0, 0.0, 0.0] and w.requires_grad and w.is_leaf


def test_manual_sgd_updates_the_parameters():
    """The scripts' `for p in model.parameters(): p -= lr * p.grad` (silently a no-op before)."""
    model = gpugrad.nn.Linear(3, 1, dtype=gpugrad.float64)          # float64: float32's rounding of a bias
    tmodel = torch.nn.Linear(3, 1, dtype=torch.float64)            # near 0 is no test of the update
    with torch.no_grad():
        tmodel.weight.copy_(to_torch(model.weight))
        tmodel.bias.copy_(to_torch(model.bias))
    x = numpy.arange(12.0).reshape(4, 3) / 10
    for ours, theirs, data in ((model, tmodel, gpugrad.tensor(x, dtype=gpugrad.float64)),
                               (tmodel, None, torch.tensor(x, dtype=torch.float64))):
        for _ in range(3):
            loss = (ours(data) ** 2).mean()
            ours.zero_grad()
            loss.backward()
            with (gpugrad.no_grad() if theirs is not None else torch.no_grad()):
                for p in ours.parameters():
                    p -= 0.1 * p.grad
    assert_close(model.weight, tmodel.weight, 1e-12)
    assert_close(model.bias, tmodel.bias, 1e-12)


def test_in_place_on_a_view_rewrites_the_base_history(rng):
    values = rng.standard_normal(4)
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y, ty = x * 1, tx * 1
    v, tv = y[1:], ty[1:]
    v.mul_(3)
    tv.mul_(3)
    assert y.grad_fn.name() == "CopySlices" and v._base is y
    assert_close(y, ty, 1e-12)
    (y * gpugrad.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    (ty * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)


def test_setitem_on_a_view_of_a_view(rng):
    values = rng.standard_normal((3, 4))
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y, ty = x * 2, tx * 2
    y[0][1] = 0
    ty[0][1] = 0
    assert_close(y, ty, 1e-12)
    (y ** 2).sum().backward()
    (ty ** 2).sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)


def test_copy_into_a_view_of_a_plain_buffer_keeps_the_gradient(rng):
    """buf[0].copy_(w * 2) lost the gradient before."""
    values = rng.standard_normal(3)
    w, tw = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    buf, tbuf = gpugrad.zeros(2, 3, dtype=gpugrad.float64), torch.zeros(2, 3, dtype=torch.float64)
    buf[0].copy_(w * 2)
    tbuf[0].copy_(tw * 2)
    assert buf.requires_grad and buf.grad_fn is not None
    (buf * gpugrad.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    (tbuf * torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])).sum().backward()
    assert_close(w.grad, tw.grad, 1e-12)


def test_other_views_of_the_base_see_the_new_history(rng):
    values = rng.standard_normal(3)
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    y, ty = x * 2, tx * 2
    first, tfirst = y[:2], ty[:2]
    second, tsecond = y[1:], ty[1:]
    first.mul_(10)
    tfirst.mul_(10)
    second.sum().backward()
    tsecond.sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)


def test_modified_saved_tensor_raises_at_backward():
    x = gpugrad.ones(3, requires_grad=True)
    y = x.exp()
    z = y * 2
    y.add_(1)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (y.sum() + z.sum()).backward()


def test_in_place_op_that_saves_its_input_keeps_the_old_values(rng):
    values, other = rng.standard_normal(3), rng.standard_normal(3)
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    w, tw = gpugrad.tensor(other, requires_grad=True), torch.tensor(other, requires_grad=True)
    y, ty = x + 0, tx + 0
    y.mul_(w)
    ty.mul_(tw)
    y.sum().backward()
    ty.sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)
    assert_close(w.grad, tw.grad, 1e-12)


def test_data_gives_a_tensor_outside_the_graph():
    p = gpugrad.nn.Parameter(gpugrad.tensor([3.0, 4.0]))
    data = p.data
    assert isinstance(data, gpugrad.Tensor) and not data.requires_grad and data.grad_fn is None
    assert data.norm().item() == 5.0
    version = p._version
    p.data += 1                                   # in place through .data: invisible to autograd
    assert p.tolist() == [4.0, 5.0] and p._version == version
    p.data.zero_()
    assert p.tolist() == [0.0, 0.0]
    p.data = gpugrad.tensor([1.0, 2.0, 3.0], dtype=gpugrad.float64)
    assert p.shape == (3,) and p.dtype == gpugrad.float64 and p.requires_grad
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got int"):
        p.data = 3
    with pytest.raises(RuntimeError, match="must be floating point"):
        p.data = gpugrad.tensor([1, 2])


def test_a_result_saved_for_backward_then_changed_in_place_raises_as_torch():
    """relu, abs, fill_ and the in-place forms of ops that save their result (x.relu_() then x.mul_(2))
    keep what torch keeps, so an in-place change after them raises at backward as torch's does; pow_ and
    x.add_(x) save nothing that changes."""
    cases = {
        "relu then mul_": lambda y: y.relu().mul_(2),
        "abs then mul_ of its input": lambda y: (y.abs(), y.mul_(2))[0],
        "relu_ then mul_": lambda y: y.relu_().mul_(2),
        "tanh_ then mul_": lambda y: y.tanh_().mul_(2),
        "sigmoid then fill_": lambda y: y.sigmoid().fill_(1.0),
        "exp then zero_": lambda y: y.exp().zero_(),
        "mul_ by itself": lambda y: y.mul_(y),
        "pow_ then mul_": lambda y: y.pow_(2).mul_(2),
        "add_ itself": lambda y: y.add_(y),
        "relu_ through a view": lambda y: (y[0].relu_(), y.mul_(2))[1],
    }
    for name, program in cases.items():
        outcomes = []
        for lib in (torch, gpugrad):
            x = lib.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=lib.float64, requires_grad=True)
            out = program(x * 1)
            try:
                out.sum().backward()
                outcomes.append(x.grad.tolist())
            except RuntimeError as error:
                assert "modified by an inplace operation" in str(error)
                outcomes.append("raises")
        assert outcomes[0] == outcomes[1], name
