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
    ("logsumexp", lambda x: x.logsumexp(1), lambda x: x.logsumexp(1)),
    ("logsumexp_last_keep", lambda x: x.logsumexp(-1, keepdim=True), lambda x: x.logsumexp(-1, keepdim=True)),
    ("logsumexp_dims", lambda x: gpugrad.logsumexp(x, (0, 2)), lambda x: torch.logsumexp(x, (0, 2))),
    ("softmax", lambda x: x.softmax(1), lambda x: x.softmax(1)),
    ("softmax_last", lambda x: gpugrad.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    ("log_softmax", lambda x: x.log_softmax(0), lambda x: x.log_softmax(0)),
    ("log_softmax_last", lambda x: gpugrad.log_softmax(x, 2), lambda x: torch.log_softmax(x, 2)),
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


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_row_reductions_at_extreme_values(device, dtype):
    """+-1e4 logits and -inf entries, against torch in float64 (the exact
    answer: torch's own float32 logsumexp backward loses three digits here)."""
    rows = [[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, -1e4, -1e4], [float("-inf"), 0.0, 5.0, float("-inf")],
            [1e4 - 3, 1e4, 1e4 - 0.5, -1e4]]
    tol = FLOAT_TOLERANCE[dtype]
    x = gpugrad.tensor(rows, dtype=getattr(gpugrad, dtype), device=device, requires_grad=True)
    tx = to_torch(x).double().requires_grad_(True)
    assert_close(x.logsumexp(1), tx.logsumexp(1), tol)
    for ours, theirs in [(gpugrad.softmax, torch.softmax), (gpugrad.log_softmax, torch.log_softmax)]:
        assert_close(ours(x, 1), theirs(tx, 1), tol)
    weights = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    (x.logsumexp(1) * gpugrad.tensor(weights.numpy(), device=device)).sum().backward(retain_graph=True)
    (tx.logsumexp(1) * weights.to(tx.device)).sum().backward()
    assert_close(x.grad, tx.grad, tol)
    for ours, theirs in [(gpugrad.softmax, torch.softmax), (gpugrad.log_softmax, torch.log_softmax)]:
        x.grad = tx.grad = None
        (ours(x, 1)[:, 1:3] ** 2).sum().backward()
        (theirs(tx, 1)[:, 1:3] ** 2).sum().backward()
        assert_close(x.grad, tx.grad, tol)


def test_all_minus_inf_rows_follow_torch(device):
    x = gpugrad.full((2, 3), float("-inf"), dtype=gpugrad.float64, device=device, requires_grad=True)
    tx = to_torch(x, requires_grad=True)
    assert x.logsumexp(1).tolist() == tx.logsumexp(1).tolist() == [float("-inf")] * 2
    x.logsumexp(1).sum().backward()
    tx.logsumexp(1).sum().backward()
    assert_close(x.grad, tx.grad, 0)      # nan where torch has nan


def test_naive_log_softmax_overflows_where_logsumexp_does_not():
    x = gpugrad.tensor([50.0, 100.0], dtype=gpugrad.float32, requires_grad=True)
    naive = -(x.exp()[0] / x.exp().sum()).log()
    assert not bool(naive.isfinite())
    stable = x.logsumexp(0) - x[0]
    assert stable.item() == pytest.approx(50.0)
    stable.backward()
    assert x.grad.tolist() == pytest.approx([-1.0, 1.0])


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
