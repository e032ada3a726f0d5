"""The fused CUDA kernels against torch CUDA (run on a GPU machine with
`make test-gpu`; skipped elsewhere).

References are torch CUDA in float64 on the same (rounded) inputs: float64
must agree to 1e-10, float32 to 1e-5, float16 to 1e-3.  Before each case the
CuPy pool is filled with NaN, so an output element a kernel forgot to write
shows up as a mismatch.
"""

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import TORCH_CUDA, assert_close, relative_error

import gpugrad
import gpugrad.nn.functional as F

pytestmark = pytest.mark.cuda

TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "float16": 1e-3}
SHAPES = [(1, 2), (3, 7), (5, 1000), (64, 1024), (7, 1025), (33, 4099), (4, 32000), (65536, 3),
          (65536, 33), (8, 50257), (2, 128256), (1, 262144), (3, 262143)]


POISON_LIMIT = 1 << 30        # bytes: the GPU is shared by the test processes (pytest-xdist's workers)


def poison_pool(nbytes):
    """NaN in the memory a case's next allocations get, so that an element a kernel
    forgot to write shows: CuPy's pool gives its cached free blocks back, then one
    block of 8x the case's input bytes (1 MiB to POISON_LIMIT) is filled and freed,
    and the case's arrays are cut from it.  (It took all the pool's free bytes: a
    new block of that size whenever they were in pieces, so the pool could double
    at each call; the GPU run asked for 72 GB, and the other workers ran out.)"""
    import cupy
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    junk = cupy.empty(min(max(8 * nbytes, 1 << 20), POISON_LIMIT) // 8, dtype=cupy.float64)
    junk.fill(numpy.nan)
    del junk


def inputs(rng, shape, dtype, low=-8.0, high=8.0):
    """(gpugrad leaf, torch float64 leaf on the GPU holding the same rounded values)."""
    values = rng.uniform(low, high, size=shape).astype(dtype)
    ours = gpugrad.tensor(values, device="cuda", requires_grad=True)
    theirs = torch.tensor(values.astype("float64"), device=TORCH_CUDA, requires_grad=True)
    return ours, theirs


def rounded(reference, dtype):
    """The float64 reference rounded to the result's dtype: where a float16
    result overflows (a sum over 65536 rows), it is inf, as torch's is."""
    return reference.detach().to(getattr(torch, dtype)).double()


def assert_matches(ours, exact, torch_same, dtype):
    """Within the dtype's tolerance of the float64 result, or (float32, float16)
    no further from it than twice torch's own result in that dtype: float16
    results of long rows are subnormal (a softmax over 262144 classes, a gradient
    divided by 65536 rows: ulps of 6e-8), a tiny loss computed as lse - x carries
    lse's rounding, and a softmax gradient y * (g - sum(g * y)) of a row whose y
    is almost one-hot cancels (torch's formula too)."""
    expected = rounded(exact, dtype)
    if torch_same is None:
        assert_close(ours, expected, TOLERANCE[dtype])
        return
    err = relative_error(ours, expected)
    try:
        theirs = relative_error(torch_same, expected)
    except AssertionError:     # torch's float16 overflowed where the result is finite (its smoothing sum on the CPU)
        theirs = 0.0
    assert err <= max(TOLERANCE[dtype], 2 * theirs), f"relative error {err:.3e}; torch {dtype}'s {theirs:.3e}"


def compare(ours_fn, theirs_fn, x, tx, dtype, rng):
    """``theirs_fn`` runs on torch's float64 leaf and, below float64, on a copy in the dtype."""
    nbytes = x.numel() * x.element_size()
    poison_pool(nbytes)
    out = ours_fn(x)
    tout = theirs_fn(tx)
    th = tx.detach().to(getattr(torch, dtype)).requires_grad_(True) if dtype != "float64" else None
    thout = theirs_fn(th) if th is not None else None
    assert_matches(out, tout, thout, dtype)
    upstream = rng.standard_normal(tuple(out.shape)).astype(dtype)
    poison_pool(nbytes)
    out.backward(gpugrad.tensor(upstream, device="cuda"))
    tout.backward(torch.tensor(upstream.astype("float64"), device=TORCH_CUDA))
    if th is not None:
        thout.backward(torch.tensor(upstream, device=TORCH_CUDA))
    assert_matches(x.grad, tx.grad, th.grad if th is not None else None, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_logsumexp_softmax_log_softmax(rng, dtype, shape):
    for ours_fn, theirs_fn in [(lambda a: gpugrad.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1)),
                               (lambda a: gpugrad.softmax(a, -1), lambda a: torch.softmax(a, -1)),
                               (lambda a: gpugrad.log_softmax(a, 1), lambda a: torch.log_softmax(a, 1))]:
        x, tx = inputs(rng, shape, dtype)
        compare(ours_fn, theirs_fn, x, tx, dtype, rng)


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("options", [{}, {"reduction": "sum", "label_smoothing": 0.1},
                                     {"reduction": "none", "weight": True, "ignore_index": 1},
                                     {"weight": True, "label_smoothing": 0.2}], ids=str)
def test_cross_entropy(rng, dtype, shape, options):
    rows, classes = shape
    x, tx = inputs(rng, shape, dtype)
    target = rng.integers(0, classes, rows)
    if "ignore_index" in options and rows > 1:
        target[::3] = options["ignore_index"]
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = rng.uniform(0.3, 2.0, classes).astype(dtype)
        kwargs["weight"] = gpugrad.tensor(w, device="cuda")
        tkwargs["weight"] = torch.tensor(w.astype("float64"), device=TORCH_CUDA)
    t = gpugrad.tensor(target, device="cuda")
    tt = torch.tensor(target, device=TORCH_CUDA)
    compare(lambda a: F.cross_entropy(a, t, **kwargs),
            lambda a: TF.cross_entropy(a, tt, **{k: v.to(a.dtype) if torch.is_tensor(v) else v
                                                 for k, v in tkwargs.items()}),
            x, tx, dtype, rng)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_extreme_logits_and_masked_classes(rng, dtype):
    values = rng.uniform(-1e4, 1e4, (64, 1500))
    values[0] = 1e4
    values[1, 10:] = -1e4
    values[2, 100:1400] = -numpy.inf
    values[3] = 1e4 + rng.uniform(-2, 2, 1500)
    values = values.astype(dtype) if dtype == "float32" else numpy.clip(values, -6e4, 6e4).astype(dtype)
    x = gpugrad.tensor(values, device="cuda", requires_grad=True)
    tx = torch.tensor(values.astype("float64"), device=TORCH_CUDA, requires_grad=True)
    target = rng.integers(0, 100, 64)
    for kwargs in ({}, {"label_smoothing": 0.1}):
        x.grad = tx.grad = None
        loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), reduction="sum", **kwargs)
        tloss = TF.cross_entropy(tx, torch.tensor(target, device=TORCH_CUDA), reduction="sum", **kwargs)
        assert_close(loss, rounded(tloss, dtype), TOLERANCE[dtype])
        loss.backward()
        tloss.backward()
        assert_close(x.grad, rounded(tx.grad, dtype), TOLERANCE[dtype])
    x.grad = tx.grad = None
    gpugrad.logsumexp(x, 1).sum().backward()
    torch.logsumexp(tx, 1).sum().backward()
    assert_close(x.grad, rounded(tx.grad, dtype), TOLERANCE[dtype])


def test_all_ignored_batch_and_minus_inf_rows(rng):
    x, tx = inputs(rng, (16, 300), "float32")
    t = gpugrad.full((16,), -100, device="cuda")
    assert numpy.isnan(F.cross_entropy(x, t).item())
    F.cross_entropy(x, t, reduction="sum").backward()
    assert x.grad.abs().sum().item() == 0
    inf_rows = gpugrad.full((4, 2000), float("-inf"), device="cuda")
    assert gpugrad.logsumexp(inf_rows, 1).tolist() == [float("-inf")] * 4


@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_strided_and_misaligned_rows(rng, dtype):
    """Row-sliced views run in place (row stride > C); a view starting one
    element in exercises the scalar head; a column step forces a copy."""
    base, tbase = inputs(rng, (40, 4101), dtype)
    for view in (lambda a: a[:, :3000], lambda a: a[:, 1:], lambda a: a[:, 3:3000:2], lambda a: a.T.T[5:]):
        base.grad = tbase.grad = None
        x, tx = view(base), view(tbase)
        t = rng.integers(0, x.shape[1], x.shape[0])
        loss = F.cross_entropy(x, gpugrad.tensor(t, device="cuda"), label_smoothing=0.05) + \
            gpugrad.logsumexp(x, 1).sum() + gpugrad.softmax(x, 1)[:, :7].sum()
        tloss = TF.cross_entropy(tx, torch.tensor(t, device=TORCH_CUDA), label_smoothing=0.05) + \
            torch.logsumexp(tx, 1).sum() + torch.softmax(tx, 1)[:, :7].sum()
        assert_close(loss, tloss, TOLERANCE[dtype])
        loss.backward()
        tloss.backward()
        assert_close(base.grad, tbase.grad, TOLERANCE[dtype])


def test_reduction_over_a_middle_dim_and_second_derivatives(rng):
    x, tx = inputs(rng, (3, 50, 4), "float64")
    assert_close(gpugrad.logsumexp(x, 1), torch.logsumexp(tx, 1), 1e-10)
    small = gpugrad.tensor(rng.standard_normal((3, 5)), device="cuda", requires_grad=True)
    t = gpugrad.tensor([0, 4, 2], device="cuda")
    assert gpugrad.autograd.gradgradcheck(lambda a: F.cross_entropy(a, t, label_smoothing=0.1), (small,))
    assert gpugrad.autograd.gradgradcheck(lambda a: gpugrad.logsumexp(a, 1), (small,))
    assert gpugrad.autograd.gradgradcheck(lambda a: gpugrad.softmax(a, 1), (small,))


def test_bad_target_is_reported_and_the_context_stays_usable(rng):
    x = gpugrad.tensor(rng.standard_normal((8, 1000)), device="cuda", requires_grad=True)
    bad = gpugrad.tensor([0, 1, 2, 3, 1000, 5, 6, 7], device="cuda")
    loss = F.cross_entropy(x, bad)
    with pytest.raises(IndexError, match="Target 1000 is out of bounds"):
        loss.item()
    loss = F.nll_loss(F.log_softmax(x, 1), gpugrad.tensor([-5] + [0] * 7, device="cuda"))
    with pytest.raises(IndexError, match="Target -5 is out of bounds"):
        loss.backward()
    good = gpugrad.tensor(rng.integers(0, 1000, 8), device="cuda")
    x.grad = None
    F.cross_entropy(x, good).backward()
    assert numpy.isfinite(x.grad.sum().item())            # the context still works


def test_debug_mode_raises_at_the_launch(rng, monkeypatch):
    monkeypatch.setenv("GPUGRAD_DEBUG", "1")
    x = gpugrad.tensor(rng.standard_normal((4, 10)), device="cuda")
    with pytest.raises(IndexError, match="Target 10 is out of bounds"):
        F.cross_entropy(x, gpugrad.tensor([0, 10, 1, 2], device="cuda"))


def test_half_inputs_keep_float32_row_statistics(rng):
    x, _ = inputs(rng, (4, 5000), "float16")
    loss = F.cross_entropy(x, gpugrad.tensor([1, 2, 3, 4], device="cuda"))
    saved = [s[1] for s in loss.grad_fn._saved if s is not None and s[0] == "constant"]   # (kind, value, ...)
    statistics = [v for v in saved if v.ndim == 1 and v.shape[0] == 4 and v.dtype.kind == "f"]
    assert statistics and {v.dtype for v in statistics} == {gpugrad.float32}
