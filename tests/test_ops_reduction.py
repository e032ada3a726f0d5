"""gpugrad/ops/reduction.py against torch: values and gradients over dims,
keepdim, ties, extreme values; second derivatives."""

import pytest
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
