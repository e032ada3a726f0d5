"""gpugrad/ops/reduction.py against torch: values and gradients over dims,
keepdim, ties, extreme values; second derivatives."""

import pytest
import torch
from conftest import FLOAT_TOLERANCE, assert_close, assert_forward_backward, make_pair, to_torch

import gpugrad
from gpugrad.autograd import gradcheck, gradgradcheck

REDUCTIONS = [
    ("sum_all", lambda x: x.sum(), lambda x: x.sum()),
    ("sum_dim", lambda x: x.sum(1), lambda x: x.sum(1)),
    ("sum_dims_keep", lambda x: x.sum((0, 2), keepdim=True), lambda x: x.sum((0, 2), keepdim=True)),
    ("mean_all", lambda x: x.mean(), lambda x: x.mean()),
    ("mean_neg_dim", lambda x: x.mean(-1), lambda x: x.mean(-1)),
    ("prod_all", lambda x: x.prod(), lambda x: x.prod()),
    ("prod_dim", lambda x: x.prod(1, keepdim=True), lambda x: x.prod(1, keepdim=True)),
    ("max_all", lambda x: x.max(), lambda x: x.max()),
    ("max_dim", lambda x: x.max(1).values, lambda x: x.max(1).values),
    ("min_dim_keep", lambda x: x.min(2, keepdim=True)[0], lambda x: x.min(2, keepdim=True)[0]),
    ("amax", lambda x: x.amax((1, 2)), lambda x: x.amax((1, 2))),
    ("amin", lambda x: x.amin(0), lambda x: x.amin(0)),
    ("var", lambda x: x.var(1), lambda x: x.var(1)),
    ("var_biased", lambda x: x.var((0, 1), unbiased=False), lambda x: x.var((0, 1), unbiased=False)),
    ("std", lambda x: x.std(), lambda x: x.std()),
    ("std_keep", lambda x: x.std(2, keepdim=True), lambda x: x.std(2, keepdim=True)),
    ("norm", lambda x: x.norm(), lambda x: x.norm()),
    ("norm_dim", lambda x: x.norm(dim=1), lambda x: x.norm(dim=1)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,ours,theirs", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reduction_matches_torch(rng, device, dtype, name, ours, theirs):
    x, tx = make_pair(rng, (3, 4, 5), dtype, device, 0.5, 2.0 if "prod" in name else 3.0)
    assert_forward_backward(rng, ours(x), theirs(tx), [(x, tx)], FLOAT_TOLERANCE[dtype])


@pytest.mark.parametrize("name,ours,theirs", REDUCTIONS, ids=[r[0] for r in REDUCTIONS])
def test_reduction_second_derivatives(rng, device, name, ours, theirs):
    x, _ = make_pair(rng, (2, 3, 2), "float64", device, 0.5, 2.0)
    assert gradcheck(ours, (x,))
    assert gradgradcheck(ours, (x,))


def test_ties_are_shared_as_in_torch(device):
    values = [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]
    for ours, theirs in [(lambda x: x.max(), lambda x: x.max()),
                         (lambda x: x.amax(1), lambda x: x.amax(1)),
                         (lambda x: x.min(1).values, lambda x: x.min(1).values)]:
        x = gpugrad.tensor(values, dtype=gpugrad.float64, device=device, requires_grad=True)
        tx = to_torch(x, requires_grad=True)
        ours(x).sum().backward()
        theirs(tx).sum().backward()
        assert_close(x.grad, tx.grad, 0)


def test_prod_with_zeros(device):
    x = gpugrad.tensor([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]], dtype=gpugrad.float64,
                       device=device, requires_grad=True)
    tx = to_torch(x, requires_grad=True)
    x.prod(1).sum().backward()
    tx.prod(1).sum().backward()
    assert_close(x.grad, tx.grad, 0)


def test_max_dim_returns_values_and_indices(rng, device):
    x, tx = make_pair(rng, (4, 6), "float64", device)
    values, indices = x.max(dim=1)
    tvalues, tindices = tx.max(dim=1)
    assert indices.dtype == gpugrad.int64
    assert indices.tolist() == tindices.tolist()
    assert_close(values, tvalues, 0)
    assert x.argmax().item() == tx.argmax().item()
    assert x.argmin(0).tolist() == tx.argmin(0).tolist()


def test_integer_sums_are_int64_and_mean_refuses_integers():
    x = gpugrad.tensor([[1, 2], [3, 4]], dtype=gpugrad.int32)
    assert x.sum().dtype == gpugrad.int64 and x.sum().item() == 10
    assert gpugrad.tensor([True, False, True]).sum().item() == 2
    with pytest.raises(RuntimeError, match="mean"):
        x.mean()


def test_half_reductions_accumulate_in_float32(rng):
    values = rng.uniform(0, 1, 4096).astype("float16")
    x = gpugrad.tensor(values)
    expected = values.astype("float64").sum()
    assert x.sum().dtype == gpugrad.float16
    assert abs(x.sum().item() - expected) / expected < 1e-3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scans_and_sorting_match_torch(rng, device, dtype):
    tol = FLOAT_TOLERANCE[dtype]
    for name, ours, theirs in (
            ("cumsum", lambda a: a.cumsum(1), lambda a: a.cumsum(1)),
            ("cumprod", lambda a: a.cumprod(2), lambda a: a.cumprod(2)),
            ("sort", lambda a: a.sort(1, descending=True).values, lambda a: a.sort(1, descending=True).values),
            ("topk", lambda a: a.topk(2, dim=-1).values, lambda a: a.topk(2, dim=-1).values),
            ("kthvalue", lambda a: a.kthvalue(2, 1).values, lambda a: a.kthvalue(2, 1).values),
            ("median", lambda a: a.median(2).values, lambda a: a.median(2).values)):
        x, tx = make_pair(rng, (3, 4, 5), dtype, device)
        assert_forward_backward(rng, ours(x), theirs(tx), [(x, tx)], tol)
    x = gpugrad.tensor([3.0, 1.0, 2.0, 1.0])
    assert x.sort().indices.tolist() == torch.tensor([3.0, 1.0, 2.0, 1.0]).sort(stable=True).indices.tolist()
    assert x.argsort(descending=True).tolist() == [0, 2, 1, 3]
    assert x.topk(2).indices.tolist() == [0, 2] and x.topk(2, largest=False).values.tolist() == [1.0, 1.0]


def test_cumprod_with_zeros_has_torchs_gradient(rng):
    values = rng.standard_normal((3, 6))
    values[0, 2] = 0.0
    values[1, [1, 4]] = 0.0
    values[2, 0] = 0.0
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    assert_forward_backward(rng, x.cumprod(1), tx.cumprod(1), [(x, tx)], 1e-12)


def test_prod_with_zeros_is_twice_differentiable():
    for values in ([0.0, 2.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [1.5, 2.0, 3.0]):
        x = gpugrad.tensor(values, dtype=gpugrad.float64)
        tx = torch.tensor(values, dtype=torch.float64)
        ours = gpugrad.autograd.functional.hessian(lambda a: a.prod(), x)
        theirs = torch.autograd.functional.hessian(lambda a: a.prod(), tx)
        assert_close(ours, theirs, 1e-12)


def test_gradients_at_nan_go_where_torch_sends_them():
    nan = float("nan")
    for name, ours, theirs, values in (
            ("max", lambda a: a.max(), lambda a: a.max(), [nan, 1.0, 3.0]),
            ("max_ties", lambda a: a.max(), lambda a: a.max(), [3.0, 1.0, 3.0]),
            ("max_dim", lambda a: a.max(0).values, lambda a: a.max(0).values, [1.0, nan, 3.0]),
            ("amax", lambda a: a.amax(), lambda a: a.amax(), [nan, 1.0, 3.0]),
            ("relu", lambda a: a.relu().sum(), lambda a: a.relu().sum(), [nan, 1.0, -1.0, 0.0]),
            ("clamp", lambda a: a.clamp(0, 1).sum(), lambda a: a.clamp(0, 1).sum(), [nan, 0.5, 2.0, 0.0, 1.0])):
        x = gpugrad.tensor(values, dtype=gpugrad.float64, requires_grad=True)
        tx = torch.tensor(values, dtype=torch.float64, requires_grad=True)
        ours(x).backward()
        theirs(tx).backward()
        assert_close(x.grad, tx.grad, 0)
    a = gpugrad.tensor([nan, 1.0, 2.0], requires_grad=True)
    b = gpugrad.tensor([1.0, nan, 2.0], requires_grad=True)
    ta = torch.tensor([nan, 1.0, 2.0], requires_grad=True)
    tb = torch.tensor([1.0, nan, 2.0], requires_grad=True)
    gpugrad.maximum(a, b).sum().backward()
    torch.maximum(ta, tb).sum().backward()
    assert a.grad.tolist() == ta.grad.tolist() and b.grad.tolist() == tb.grad.tolist()


def test_empty_reductions_as_torch():
    assert gpugrad.ones(0, 3).amax(1).shape == (0,)
    with pytest.raises(IndexError, match="Expected reduction dim 1 to have non-zero size"):
        gpugrad.ones(3, 0).amax(1)
    with pytest.raises(RuntimeError, match="Expected reduction dim to be specified"):
        gpugrad.ones(0).max()
    assert gpugrad.ones(0, 3).sum(0).tolist() == [0.0, 0.0, 0.0]
    assert all(v != v for v in gpugrad.ones(0, 3).mean(0).tolist())
    assert gpugrad.ones(2, 3).sum(1, keepdims=True).shape == (2, 1)
    assert gpugrad.ones(2, 3).amax(0, keepdims=True).shape == (1, 3)
