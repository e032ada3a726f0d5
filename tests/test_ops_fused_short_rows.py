"""Short rows, many of them (small C): softmax, log_softmax, logsumexp and
cross-entropy against torch at the edges of the CUDA path that reads a block's rows as one
span (kernels/common.cuh, SpanLoad; gpugrad/cuda/launch.py, span_rows): C = 1
to 31, row counts that are not a multiple of the rows per span, inputs at an
offset (rows that start anywhere in a 16-byte vector) and strided ones (the
other path), -inf masks, +-1e4, nan, ignore_index, label smoothing, class
weights, bfloat16.  Each runs on the CPU twin and, with the emulator or a GPU,
on the CUDA kernels."""

import math

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import FLOAT_TOLERANCE, assert_close, launch_counter, to_torch, torch_device

import gpugrad
import gpugrad.nn.functional as F
from gpugrad.cuda import launch

CLASSES = [1, 2, 3, 10, 17, 31]
ROWS = 300            # more than one span at every C (at most 256 rows each), a multiple of none
LAYOUTS = ["contiguous", "offset", "sliced"]


def _values(rng, rows, classes, masks=True):
    """Logits with the edges: -inf masks (never a whole row, never the target's
    column 0), rows at +-1e4."""
    values = rng.standard_normal((rows, classes)) * 3
    if classes > 1 and masks:
        masked = rng.random((rows, classes)) < 0.2
        masked[:, 0] = False
        values[masked] = -math.inf
    values[3] += 1e4
    values[4] -= 1e4
    return values


def _leaf(values, dtype, device, layout):
    """A gpugrad leaf holding ``values`` in the given layout, and torch's float64
    leaf of the same (rounded) values."""
    rows, classes = values.shape
    dtype = getattr(gpugrad, dtype)
    if layout == "offset":          # rows start one element into a 16-byte vector
        flat = gpugrad.tensor(numpy.concatenate([[0.0], values.ravel()]), dtype=dtype, device=device)
        x = flat[1:].reshape(rows, classes)
    elif layout == "sliced":        # rows with gaps between them: the strided path
        wide = numpy.concatenate([values, numpy.zeros((rows, 3))], axis=1)
        x = gpugrad.tensor(wide, dtype=dtype, device=device)[:, :classes]
    else:
        x = gpugrad.tensor(values, dtype=dtype, device=device)
    x = x.detach().requires_grad_(True)
    tx = to_torch(x.detach().to(gpugrad.float64)).requires_grad_(True)
    return x, tx


def _tolerance(dtype):
    return 2e-2 if dtype == "bfloat16" else FLOAT_TOLERANCE[dtype]


def _check_softmax(rng, device, dtype, classes, layout, log, values):
    x, tx = _leaf(values, dtype, device, layout)
    y = (gpugrad.log_softmax if log else gpugrad.softmax)(x, 1)
    ty = (torch.log_softmax if log else torch.softmax)(tx, 1)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert_close(y, ty, _tolerance(dtype))
    upstream = gpugrad.tensor(rng.standard_normal(values.shape), dtype=x.dtype, device=device)
    y.backward(upstream)
    ty.backward(to_torch(upstream.to(gpugrad.float64)))
    assert_close(x.grad, tx.grad, _tolerance(dtype), floor=math.sqrt(values.size))


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_short_rows_softmax_matches_torch(rng, device, dtype, classes, layout, log):
    values = _values(rng, ROWS, classes)
    values[5, -1] = math.nan          # a row of nan, both ways
    values[6] = -math.inf             # a closed row: nan (torch's softmax)
    _check_softmax(rng, device, dtype, classes, layout, log, values)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("classes", [3, 10, 31])
def test_short_rows_softmax_bfloat16(rng, device, classes, log):
    _check_softmax(rng, device, "bfloat16", classes, "offset", log, _values(rng, ROWS, classes))


def _kernels_launched(monkeypatch):
    """The names of the kernels launched from here on (a list that fills)."""
    names = []
    original = launch.launch

    def recorded(filename, name, *args, **kwargs):
        names.append(name)
        return original(filename, name, *args, **kwargs)
    monkeypatch.setattr(launch, "launch", recorded)
    return names


def _special_rows(values):
    """Rows whose log-sum-exp is nan, -inf and +inf (torch's gradient: nan, nan, nan at the +inf and 0
    elsewhere), and one of -inf but one element."""
    values[5, -1] = math.nan
    values[6] = -math.inf
    values[7, 0] = math.inf
    values[8] = -math.inf
    values[8, -1] = 2.0


def _check_logsumexp(rng, device, dtype, x, tx, dim, keepdim=False):
    """logsumexp(x, dim) and its gradient against torch's float64: lse.sum().backward() (the
    gradient the forward wrote, kept), then per-row upstream values (computed again)."""
    tol = _tolerance(dtype)
    for step in range(2):
        x.grad, tx.grad = None, None
        out = gpugrad.logsumexp(x, dim, keepdim=keepdim)
        tout = torch.logsumexp(tx, dim, keepdim=keepdim)
        assert out.dtype == x.dtype and tuple(out.shape) == tuple(tout.shape)
        assert_close(out, tout, tol)
        if step == 0:
            out.sum().backward()
            tout.sum().backward()
        else:
            upstream = rng.standard_normal(tuple(tout.shape))
            upstream.reshape(-1)[::3] = 1.0            # some rows keep the forward's gradient
            out.backward(gpugrad.tensor(upstream, dtype=x.dtype, device=device))
            tout.backward(to_torch(upstream, device))
        assert x.grad.dtype == x.dtype
        assert_close(x.grad, tx.grad, tol, floor=math.sqrt(out.numel()))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("classes", CLASSES + [63])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_short_rows_logsumexp_matches_torch(rng, device, dtype, classes, layout):
    values = _values(rng, ROWS, classes)
    _special_rows(values)
    x, tx = _leaf(values, dtype, device, layout)
    _check_logsumexp(rng, device, dtype, x, tx, 1)


@pytest.mark.parametrize("classes", [3, 10, 31])
def test_short_rows_logsumexp_bfloat16(rng, device, classes):
    values = _values(rng, ROWS, classes)
    _special_rows(values)
    x, tx = _leaf(values, "bfloat16", device, "offset")
    _check_logsumexp(rng, device, "bfloat16", x, tx, 1)


@pytest.mark.parametrize("offset", [1, 2, 3, 5])
@pytest.mark.parametrize("classes", [7, 10])
def test_short_rows_logsumexp_at_every_phase(rng, device, classes, offset):
    """Rows that start anywhere in a 16-byte vector (float32: 4, 8 and 12 bytes in), 1,111 of
    them (five spans, the last one short), keepdim."""
    rows = 1111
    values = _values(rng, rows, classes)
    flat = gpugrad.tensor(numpy.concatenate([numpy.zeros(offset), values.ravel()]), dtype=gpugrad.float32,
                          device=device)
    x = flat[offset:].reshape(rows, classes).detach().requires_grad_(True)
    tx = to_torch(x.detach().to(gpugrad.float64)).requires_grad_(True)
    _check_logsumexp(rng, device, "float32", x, tx, -1, keepdim=True)


# (shape, dim, how x is made, whether its rows go by spans on CUDA)
LSE_PATHS = {
    "rows": ((300, 10), 1, "plain", True),
    "3-d, last dim": ((20, 15, 9), -1, "plain", True),
    "63 classes": ((70, 63), 1, "plain", True),
    "64 classes": ((70, 64), 1, "plain", False),
    "dim 0": ((10, 300), 0, "plain", False),
    "middle dim": ((20, 10, 3), 1, "plain", False),
    "transposed": ((10, 300), 1, "transposed", False),
    "sliced": ((300, 10), 1, "sliced", False),
    "one row": ((1, 10), 1, "plain", True),
}


@pytest.mark.parametrize("case", list(LSE_PATHS))
def test_short_rows_logsumexp_layouts(rng, device, case, monkeypatch):
    """Contiguous rows of under 64 elements go by spans on CUDA; rows of 64, reductions over another
    dim than the last and rows with gaps between them do not (and agree with torch either way)."""
    shape, dim, how, by_spans = LSE_PATHS[case]
    values = rng.standard_normal(shape) * 3
    if how == "transposed":
        x = gpugrad.tensor(values.T.copy(), dtype=gpugrad.float32, device=device).T
    elif how == "sliced":
        wide = numpy.concatenate([values, numpy.zeros((shape[0], 3))], axis=1)
        x = gpugrad.tensor(wide, dtype=gpugrad.float32, device=device)[:, :shape[1]]
    else:
        x = gpugrad.tensor(values, dtype=gpugrad.float32, device=device)
    x = x.detach().requires_grad_(True)
    tx = to_torch(x.detach().to(gpugrad.float64)).requires_grad_(True)
    names = _kernels_launched(monkeypatch)
    _check_logsumexp(rng, device, "float32", x, tx, dim)
    if device != "cpu":
        spans = [name for name in names if name.startswith("logsumexp_span_forward")]
        assert len(spans) == (2 if by_spans else 0), names


def test_short_rows_logsumexp_empty(device):
    for shape, dim in (((0, 10), 1), ((5, 0), 1), ((0, 10), 0)):
        x = gpugrad.zeros(*shape, device=device, requires_grad=True)
        tx = torch.zeros(*shape, dtype=torch.float64, device=torch_device(device), requires_grad=True)
        for keepdim in (False, True):
            out, tout = gpugrad.logsumexp(x, dim, keepdim=keepdim), torch.logsumexp(tx, dim, keepdim=keepdim)
            assert tuple(out.shape) == tuple(tout.shape)
            assert_close(out, tout, 0)
            out.sum().backward()
            tout.sum().backward()
            assert_close(x.grad, tx.grad, 0)


@pytest.mark.cuda
def test_short_rows_logsumexp_sum_is_one_launch(rng):
    """On the (emulated) GPU, logsumexp(x, 1).sum().backward() over short rows launches the span
    forward, which writes the gradient, and nothing in the backward but the sum's own ops."""
    if launch_counter() is None or not gpugrad.cuda.is_available():
        pytest.skip("counts launches under the emulator")
    x = gpugrad.tensor(rng.standard_normal((600, 10)), dtype=gpugrad.float32, device="cuda", requires_grad=True)
    gpugrad.logsumexp(x, 1).sum().backward()         # warm (kernels built)
    expected = x.grad.detach().clone()
    x.grad = None
    out = gpugrad.logsumexp(x, 1)
    stop = launch_counter()
    out.sum().backward()
    assert stop()[0] == 0
    assert_close(x.grad, expected, 0)


OPTIONS = [{}, {"label_smoothing": 0.1}, {"weight": True}, {"ignore_index": 1}]


def _check_cross_entropy(rng, device, dtype, values, reduction, options, layout, targets=None):
    rows, classes = values.shape
    x, tx = _leaf(values, dtype, device, layout)
    target = rng.integers(0, classes, rows) if targets is None else targets
    finite = numpy.isfinite(values[numpy.arange(rows), target])
    target = numpy.where(finite, target, 0)        # (column 0 is never masked)
    ignore = options.get("ignore_index", -100)
    target[::7] = ignore
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = gpugrad.tensor(rng.uniform(0.5, 2.0, classes), dtype=x.dtype, device=device)
        kwargs["weight"], tkwargs["weight"] = w, to_torch(w.to(gpugrad.float64))
    loss = F.cross_entropy(x, gpugrad.tensor(target, device=device), reduction=reduction, **kwargs)
    tloss = TF.cross_entropy(tx, to_torch(target, device), reduction=reduction, **tkwargs)
    tol = _tolerance(dtype)
    assert_close(loss, tloss, tol)
    if reduction == "none":
        upstream = rng.standard_normal(rows)
        loss.backward(gpugrad.tensor(upstream, dtype=x.dtype, device=device))
        tloss.backward(to_torch(upstream, device))
    else:
        loss.backward()
        tloss.backward()
    assert_close(x.grad, tx.grad, tol, floor=1.0 if reduction == "mean" else math.sqrt(rows))
    assert (x.grad.detach().to("cpu").array[target == ignore] == 0).all()


@pytest.mark.parametrize("options", OPTIONS, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("classes", CLASSES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_short_rows_cross_entropy_matches_torch(rng, device, dtype, classes, reduction, options):
    if options.get("ignore_index") == 1 and classes == 1:
        options = {"ignore_index": 0}
    layout = LAYOUTS[(CLASSES.index(classes) + len(options)) % len(LAYOUTS)]
    _check_cross_entropy(rng, device, dtype, _values(rng, ROWS, classes), reduction, options, layout)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("classes", [3, 10, 31])
def test_short_rows_cross_entropy_bfloat16(rng, device, classes, reduction):
    _check_cross_entropy(rng, device, "bfloat16", _values(rng, ROWS, classes), reduction, {"label_smoothing": 0.1},
                         "offset")


@pytest.mark.parametrize("options", [{}, {"weight": True}], ids=str)
def test_mean_denominator_over_many_blocks(rng, device, options):
    """Under 'mean' the span forward writes the gradient once every block's count of its
    used targets (or their weights) is in: 5,000 rows are twenty spans and blocks, some
    rows ignored (under the emulator, whose blocks run one after another, the first block
    counts the slots of all the others, which then find theirs taken)."""
    _check_cross_entropy(rng, device, "float32", _values(rng, 5000, 3), "mean", options, "contiguous")


@pytest.mark.parametrize("options", [{}, {"weight": True}, {"label_smoothing": 0.1}], ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_blocks_of_several_spans(rng, device, reduction, options, monkeypatch):
    """Fewer blocks than spans (as with more rows than a full GPU's blocks hold: here a device of one SM,
    eight blocks of 256 rows for 5,000 rows), each block's slot standing for all of its spans: its
    share of the mean's denominator counted from their targets before its first span's gradient."""
    if device != "cpu":
        monkeypatch.setattr(launch, "sm_count", lambda device_id: 1)
    _check_cross_entropy(rng, device, "float32", _values(rng, 5000, 3), reduction, options, "offset")


@pytest.mark.parametrize("options", [{}, {"weight": True}], ids=str)
def test_all_ignored_short_rows(rng, device, options):
    """Every target ignored: the mean is nan (0 / 0, torch's), the sum 0, the gradient 0."""
    values = _values(rng, 600, 10, masks=False)
    target = numpy.full(600, -100)
    for reduction in ("mean", "sum"):
        x, tx = _leaf(values, "float32", device, "contiguous")
        kwargs, tkwargs = {}, {}
        if options:
            w = gpugrad.tensor(rng.uniform(0.5, 2.0, 10), dtype=x.dtype, device=device)
            kwargs["weight"], tkwargs["weight"] = w, to_torch(w.to(gpugrad.float64))
        loss = F.cross_entropy(x, gpugrad.tensor(target, device=device), reduction=reduction, **kwargs)
        tloss = TF.cross_entropy(tx, to_torch(target, device), reduction=reduction, **tkwargs)
        assert math.isnan(loss.item()) == math.isnan(tloss.item()) == (reduction == "mean")
        loss.backward()
        tloss.backward()
        assert_close(x.grad, tx.grad, 0)
        assert not x.grad.abs().sum().item()


@pytest.mark.cuda
def test_span_exchange_buffer_is_renewed_before_its_tags_wrap(rng):
    """The blocks of a span forward exchange values tagged with the launch's 32-bit generation: the
    buffer is made again (zeroed, generation 1) before the tags would wrap, and results stay right."""
    if not gpugrad.cuda.is_available():
        pytest.skip("needs CUDA (or the emulator)")
    values = _values(rng, 700, 10, masks=False)
    target = rng.integers(0, 10, 700)
    F.cross_entropy(gpugrad.tensor(values, dtype=gpugrad.float32, device="cuda"),
                    gpugrad.tensor(target, device="cuda"))          # the buffer made
    for state in launch._exchanges.values():
        state[1] = 2**32 - 3
    for _ in range(4):                # generations 2**32 - 3 and - 2, then a new buffer: 1, 2
        _check_cross_entropy(rng, "cuda", "float32", values, "mean", {}, "contiguous", targets=target.copy())
    assert all(state[1] < 2**32 - 3 for state in launch._exchanges.values())


def test_scaled_loss_over_short_rows(rng, device):
    """(2 * loss).backward() twice: the second forward writes its gradient for 2,
    which the backward keeps; a scale that changes is computed again."""
    values = _values(rng, ROWS, 10, masks=False)
    target = rng.integers(0, 10, ROWS)
    for scale in (2.0, 2.0, 3.0):
        x, tx = _leaf(values, "float64", device, "offset")
        (scale * F.cross_entropy(x, gpugrad.tensor(target, device=device))).backward()
        (scale * TF.cross_entropy(tx, to_torch(target, device))).backward()
        assert_close(x.grad, tx.grad, 1e-12)


@pytest.mark.cuda
def test_short_rows_cross_entropy_is_one_launch(rng):
    """On the (emulated) GPU, loss.backward() of the mean over short rows is one
    kernel launch: the forward writes the gradient (no launch in the backward)."""
    if launch_counter() is None or not gpugrad.cuda.is_available():
        pytest.skip("counts launches under the emulator")
    x = gpugrad.tensor(rng.standard_normal((600, 10)), dtype=gpugrad.float32, device="cuda", requires_grad=True)
    t = gpugrad.tensor(rng.integers(0, 10, 600), device="cuda")
    F.cross_entropy(x, t).backward()            # warm (kernels built)
    x.grad = None
    stop = launch_counter()
    F.cross_entropy(x, t).backward()
    launches, _ = stop()
    assert launches == 1
