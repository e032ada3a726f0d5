"""gpugrad/ops/reduction.py against torch: values and gradients over dims,
keepdim, ties, extreme values; second derivatives."""

import numpy
import pytest
import torch
from conftest import (
    FLOAT_TOLERANCE,
    assert_close,
    assert_forward_backward,
    launch_counter,
    make_pair,
    to_numpy,
    to_torch,
)

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


# -- issue 25: exactness --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["std", "var"])
def test_std_var_gradients_of_a_constant_column_and_past_the_degrees_of_freedom(name):
    """torch's std gives 0 where std is 0 (was nan), and var with correction >= N gives inf / nan as torch's."""
    values = numpy.array([[1.0, 2.0], [1.0, 3.5], [1.0, -1.0]])
    for kwargs in ({"dim": 0}, {}, {"dim": 1, "correction": 2}, {"correction": 6}, {"dim": 0, "correction": 3}):
        x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
        out, tout = getattr(gpugrad, name)(x, **kwargs), getattr(torch, name)(tx, **kwargs)
        assert_close(out, tout, 1e-12)
        out.sum().backward()
        tout.sum().backward()
        assert_close(x.grad, tx.grad, 1e-12)


@pytest.mark.parametrize("p", [0.5, 0, 1, 3, float("inf")])
def test_norm_gradient_at_zero(p):
    values = numpy.array([0.0, 0.0, 2.0, -1.0])
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    gpugrad.norm(x, p).backward()
    torch.norm(tx, p).backward()
    if p == 0:      # torch gives the 0-norm no gradient (None, or an unshaped zero)
        assert x.grad.tolist() == [0.0] * 4 and (tx.grad is None or tx.grad.sum().item() == 0)
    else:
        assert_close(x.grad, tx.grad, 1e-12)


def test_median_is_nan_with_a_nan_and_shares_the_gradient_of_ties():
    n = float("nan")
    values = numpy.array([[1.0, n, 2.0, 3.0], [4.0, 1.0, 0.0, 2.0]])
    out = gpugrad.median(gpugrad.tensor(values), 1)
    expected = torch.median(torch.tensor(values), 1)
    assert_close(out.values, expected.values, 0)
    assert out.indices.tolist() == expected.indices.tolist()
    assert numpy.isnan(gpugrad.median(gpugrad.tensor(values)).item())
    ties = numpy.array([1.0, 2.0, 2.0, 5.0])
    x, tx = gpugrad.tensor(ties, requires_grad=True), torch.tensor(ties, requires_grad=True)
    gpugrad.median(x).backward()
    torch.median(tx).backward()
    assert x.grad.tolist() == tx.grad.tolist() == [0.0, 0.5, 0.5, 0.0]


def test_0d_reductions_kthvalue_median_logsumexp():
    x, tx = gpugrad.tensor(2.5, requires_grad=True), torch.tensor(2.5, requires_grad=True)
    for ours, theirs in ((gpugrad.kthvalue(x, 1).values, torch.kthvalue(tx, 1).values),
                         (gpugrad.median(x, 0).values, torch.median(tx, 0).values),
                         (gpugrad.logsumexp(x, 0), torch.logsumexp(tx, 0))):
        assert ours.shape == theirs.shape == ()
        assert_close(ours, theirs, 1e-12)
    with pytest.raises(RuntimeError, match="selected number k out of range"):
        gpugrad.kthvalue(x, 2)


@pytest.mark.parametrize("dim", [0, 1])
def test_prod_backward_over_an_empty_dim_and_with_zeros(rng, dim):
    for values in (numpy.zeros((0, 3)), numpy.array([[0.0, 2.0, 3.0], [0.0, 0.0, 1.5]])):
        x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
        out, tout = gpugrad.prod(x, dim), torch.prod(tx, dim)
        g, = gpugrad.autograd.grad(out.sum(), x, create_graph=True)
        tg, = torch.autograd.grad(tout.sum(), tx, create_graph=True)
        assert_close(g, tg, 1e-12)
        if values.size:
            assert_close(gpugrad.autograd.grad(g.sum(), x)[0], torch.autograd.grad(tg.sum(), tx)[0], 1e-12)


@pytest.mark.parametrize("name", ["var", "std", "var_mean", "std_mean"])
def test_statistics_tell_dim_none_from_no_dim(rng, name):
    """torch's overloads: dim=None with unbiased= and keepdim= reduces everything
    (keeping the dims), unbiased= and keepdim= without a dim is a TypeError."""
    x, tx = make_pair(rng, (3, 4), "float64", "cpu")
    ours = getattr(gpugrad, name)(x, dim=None, unbiased=False, keepdim=True)
    theirs = getattr(torch, name)(tx, dim=None, unbiased=False, keepdim=True)
    for a, b in zip(ours if isinstance(ours, tuple) else (ours,), theirs if isinstance(theirs, tuple) else (theirs,)):
        assert_close(a, b, 1e-12)
    with pytest.raises(TypeError, match="invalid combination"):
        getattr(gpugrad, name)(x, unbiased=False, keepdim=True)
    with pytest.raises(TypeError):
        getattr(torch, name)(tx, unbiased=False, keepdim=True)


def test_cumprod_gradients_with_inf_nan_and_zeros_as_torch():
    """Each region of torch's cumprod backward (before the first zero, at it, up to the second) sums only
    its own terms: an inf or nan beyond it stays out; the second derivative without zeros is torch's."""
    import itertools
    values = (numpy.inf, 0.0, 2.0, -1.0, numpy.nan, -numpy.inf)
    upstream, second = [0.5, -1.0, 2.0], [1.5, 0.25, -3.0]
    for row in itertools.product(values, repeat=3):
        results = []
        for lib in (torch, gpugrad):
            x = lib.tensor(row, dtype=lib.float64, requires_grad=True)
            (g,) = lib.autograd.grad(x.cumprod(0), x, lib.tensor(upstream, dtype=lib.float64), create_graph=True)
            (h,) = lib.autograd.grad(g, x, lib.tensor(second, dtype=lib.float64))
            y = lib.tensor(row, dtype=lib.float64, requires_grad=True)
            y.cumprod(0).backward(lib.tensor(upstream, dtype=lib.float64))
            results.append(numpy.concatenate([g.detach().numpy(), h.numpy(), y.grad.numpy()]))
        numpy.testing.assert_array_equal(results[1], results[0], err_msg=str(row))
    with pytest.raises(IndexError, match="Dimension out of range"):       # the dim checked before the dtype
        gpugrad.ones(2, 3).cumprod(3, dtype=gpugrad.int64)


def test_prod_of_everything_with_two_zeros_and_an_infinity_has_a_zero_gradient():
    """torch's prod() (no dim) gives zeros when two or more elements are 0 (not the products of the
    others, nan beside an inf); with a dim, or under create_graph, the products; dims checked first."""
    values = [[0.0, 0.0, 2.0], [1.5, -numpy.inf, 0.5]]
    for kwargs in ({}, {"dim": 1}, {"dim": 0}):
        grads = []
        for lib in (torch, gpugrad):
            x = lib.tensor(values, dtype=lib.float64, requires_grad=True)
            x.prod(**kwargs).sum().backward()
            grads.append(x.grad.numpy())
        numpy.testing.assert_array_equal(grads[1], grads[0], err_msg=str(kwargs))
    for lib in (torch, gpugrad):
        with pytest.raises(IndexError, match="Dimension out of range"):
            lib.ones(2).prod(1, dtype=lib.int64)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("shape, dims, keepdim", [((300, 7), 0, False), ((2, 3, 40), (0, 1), True), ((0, 5), 0, False),
                                                   ((4, 2, 3), 0, True), ((3, 600), (0,), False)])
def test_half_sum_over_leading_dims(rng, device, dtype, shape, dims, keepdim):
    """A float16 / bfloat16 sum over the leading dims (a Linear's bias gradient
    under autocast): summed in float32 and rounded once, as torch; on CUDA one
    kernel launch and no other operation (no float32 result cast back)."""
    low = getattr(gpugrad, dtype)
    tol = 2 ** -8 if dtype == "bfloat16" else 2 ** -11      # half an ulp of the result, rounded once
    x = gpugrad.tensor(rng.standard_normal(shape) * 10, device=device).to(low).requires_grad_()
    tx = torch.tensor(to_numpy(x.detach())).requires_grad_()
    stop = launch_counter() if device == "cuda" else None
    out = x.sum(dims, keepdim=keepdim)
    counted = stop() if stop else None
    expected = tx.sum(dims, keepdim=keepdim)
    assert out.dtype == low and tuple(out.shape) == tuple(expected.shape)
    assert_close(to_numpy(out.detach()), expected.detach(), tol, floor=1.0)
    if counted is not None and x.numel():
        assert counted == (1, 0), f"{counted} (kernel launches, CuPy operations)"
    g = rng.standard_normal(tuple(expected.shape))
    out.backward(gpugrad.tensor(g, device=device).to(low))
    expected.backward(torch.tensor(to_numpy(gpugrad.tensor(g).to(low))))
    assert x.grad.dtype == low
    assert_close(to_numpy(x.grad), tx.grad, 0)
    transposed = x.detach().mT if x.ndim == 2 else x.detach().transpose(0, 1)    # not contiguous: as before
    assert_close(to_numpy(transposed.sum(0)), to_numpy(transposed).sum(0), tol, floor=1.0)
