"""gpugrad/ops/fused/: log-sum-exp, softmax, log_softmax and cross-entropy
against torch at the edges: nan, +-inf, rows of -inf, empty tensors, 0-d
tensors, strided class dims, the gradient written by the forward, every
reduction.  (Values on random inputs are in test_ops_reduction.py and
test_nn_functional.py; the GPU path of the same math in test_cuda_emulated.py.)"""

import math

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import FLOAT_TOLERANCE, assert_close, assert_forward_backward, launch_counter, make_pair, to_torch

import gpugrad
import gpugrad.nn.functional as F
from gpugrad.autograd import gradcheck, gradgradcheck

NAN, INF = math.nan, math.inf
ROW_OPS = [
    ("logsumexp", lambda x: x.logsumexp(1), lambda x: x.logsumexp(1)),
    ("logsumexp_last_keep", lambda x: x.logsumexp(-1, keepdim=True), lambda x: x.logsumexp(-1, keepdim=True)),
    ("logsumexp_dims", lambda x: gpugrad.logsumexp(x, (0, 2)), lambda x: torch.logsumexp(x, (0, 2))),
    ("softmax", lambda x: x.softmax(1), lambda x: x.softmax(1)),
    ("softmax_last", lambda x: gpugrad.softmax(x, -1), lambda x: torch.softmax(x, -1)),
    ("log_softmax", lambda x: x.log_softmax(0), lambda x: x.log_softmax(0)),
    ("log_softmax_last", lambda x: gpugrad.log_softmax(x, 2), lambda x: torch.log_softmax(x, 2)),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,ours,theirs", ROW_OPS, ids=[r[0] for r in ROW_OPS])
def test_row_ops_match_torch(rng, device, dtype, name, ours, theirs):
    x, tx = make_pair(rng, (3, 4, 5), dtype, device, -3.0, 3.0)
    assert_forward_backward(rng, ours(x), theirs(tx), [(x, tx)], FLOAT_TOLERANCE[dtype])


@pytest.mark.parametrize("name,ours,theirs", ROW_OPS, ids=[r[0] for r in ROW_OPS])
def test_row_ops_second_derivatives(rng, device, name, ours, theirs):
    x, _ = make_pair(rng, (2, 3, 2), "float64", device)
    assert gradcheck(ours, (x,))
    assert gradgradcheck(ours, (x,))


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


SPECIAL_ROWS = {
    "nan_entry": [1.0, NAN, 2.0, 0.5],
    "only_nan": [NAN, NAN, NAN, NAN],
    "posinf_entry": [INF, 1.0, 0.0, -3.0],
    "two_posinf": [INF, INF, 0.0, 1.0],
    "neginf_entry": [-INF, 1.0, 2.0, 0.0],
    "all_neginf": [-INF, -INF, -INF, -INF],
    "nan_and_posinf": [NAN, INF, 0.0, 1.0],
    "huge": [1e4, -1e4, 1e4 - 1.0, 3.0],
}


TOLERANCE = {"float64": 1e-12, "float32": 1e-5, "float16": 2e-3}


def _same(ours, theirs, tol=1e-12):
    a = ours.detach().array.astype(numpy.float64)
    b = theirs.detach().double().numpy()
    assert a.shape == b.shape
    assert numpy.array_equal(numpy.isnan(a), numpy.isnan(b)), f"nan pattern {a} vs {b}"
    inf = numpy.isinf(b)
    assert numpy.array_equal(a[inf], b[inf]), f"infinities {a} vs {b}"
    finite = ~numpy.isnan(b) & ~inf
    assert numpy.allclose(a[finite], b[finite], rtol=tol, atol=tol), f"{a} vs {b}"


@pytest.mark.parametrize("dtype", ["float64", "float32", "float16"])
@pytest.mark.parametrize("name", SPECIAL_ROWS)
def test_special_rows_follow_torch(name, dtype):
    """Against torch in float64 on the same (rounded) values."""
    rows = numpy.array([SPECIAL_ROWS[name], [0.5, -1.0, 2.0, 0.25]])
    rows = rows.astype(dtype).astype(numpy.float64)
    tol = TOLERANCE[dtype]
    for ours, theirs in ((lambda a: gpugrad.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1)),
                         (lambda a: gpugrad.softmax(a, 1), lambda a: torch.softmax(a, 1)),
                         (lambda a: gpugrad.log_softmax(a, 1), lambda a: torch.log_softmax(a, 1))):
        x = gpugrad.tensor(rows, dtype=getattr(gpugrad, dtype), requires_grad=True)
        tx = torch.tensor(rows, requires_grad=True)
        out, tout = ours(x), theirs(tx)
        _same(out, tout, tol)
        out.sum().backward()
        tout.sum().backward()
        _same(x.grad, tx.grad, tol)
    for target in range(4):
        for smoothing in (0.0, 0.1):
            x = gpugrad.tensor(rows, dtype=getattr(gpugrad, dtype), requires_grad=True)
            tx = torch.tensor(rows, requires_grad=True)
            t = [target, 1]
            loss = F.cross_entropy(x, gpugrad.tensor(t), label_smoothing=smoothing, reduction="none")
            tloss = TF.cross_entropy(tx, torch.tensor(t), label_smoothing=smoothing, reduction="none")
            _same(loss, tloss, tol)
            loss.sum().backward()
            tloss.sum().backward()
            _same(x.grad, tx.grad, tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"weight": True}], ids=str)
@pytest.mark.parametrize("classes", [4, 600])
def test_ignored_rows_without_finite_statistics_have_nan_gradients(device, classes, reduction, options):
    """An ignored row holding nan or +inf, or only -inf: a loss of 0, a gradient
    of nan (torch's log_softmax backward, 0 * exp(nan)); other ignored rows 0.
    600 classes: on CUDA the forward writes the gradient under 'mean' too."""
    rng = numpy.random.default_rng(7)
    rows = [numpy.resize(numpy.array(v), classes) for v in SPECIAL_ROWS.values()]
    values = numpy.concatenate([numpy.array(rows), rng.standard_normal((3, classes))])
    target = numpy.full(len(values), -100)
    target[-2:] = [1, 2]                  # two used rows, so that the mean is finite
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = rng.uniform(0.5, 2.0, classes)
        kwargs["weight"] = gpugrad.tensor(w, device=device)
        tkwargs["weight"] = torch.tensor(w)
    x = gpugrad.tensor(values, device=device, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    loss = F.cross_entropy(x, gpugrad.tensor(target, device=device), reduction=reduction, **kwargs)
    tloss = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
    assert_close(loss, tloss, 1e-12)
    loss.sum().backward()
    tloss.sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)
    special = [not name.startswith(("neginf_entry", "huge")) for name in SPECIAL_ROWS]    # what torch gives
    assert numpy.isnan(tx.grad[:8][special].numpy()).all() and (tx.grad[:8][[not s for s in special]] == 0).all()


def test_the_reviews_nan_and_inf_cases():
    """logsumexp([[1, nan]]) = nan, logsumexp([[nan]]) = nan, softmax([1, nan]) = [nan, nan],
    cross_entropy([[1, nan]], [0]) = nan, softmax([inf, 1]) = [nan, nan], cross_entropy([[inf, 1]], [1]) = nan."""
    assert math.isnan(gpugrad.logsumexp(gpugrad.tensor([[1.0, NAN]]), 1).item())
    assert math.isnan(gpugrad.logsumexp(gpugrad.tensor([[NAN]]), 1).item())
    assert all(math.isnan(v) for v in gpugrad.softmax(gpugrad.tensor([1.0, NAN]), 0).tolist())
    assert math.isnan(F.cross_entropy(gpugrad.tensor([[1.0, NAN]]), gpugrad.tensor([0])).item())
    assert all(math.isnan(v) for v in gpugrad.softmax(gpugrad.tensor([INF, 1.0]), 0).tolist())
    assert math.isnan(F.cross_entropy(gpugrad.tensor([[INF, 1.0]]), gpugrad.tensor([1])).item())
    assert gpugrad.logsumexp(gpugrad.tensor([[INF, 1.0]]), 1).item() == INF


def test_empty_and_zero_dim():
    assert gpugrad.logsumexp(gpugrad.ones(3, 0), 1).tolist() == torch.logsumexp(torch.ones(3, 0), 1).tolist()
    assert gpugrad.logsumexp(gpugrad.ones(0, 3), 1).shape == (0,)
    x = gpugrad.ones(3, 0, requires_grad=True)
    gpugrad.logsumexp(x, 1).sum().backward()
    assert x.grad.shape == (3, 0)
    s = gpugrad.softmax(gpugrad.tensor(2.0), 0)
    assert s.shape == () and s.item() == torch.softmax(torch.tensor(2.0), 0).item()
    assert gpugrad.log_softmax(gpugrad.tensor(2.0), -1).item() == 0.0
    assert gpugrad.softmax(gpugrad.ones(0, 4), 1).shape == (0, 4)
    empty = gpugrad.zeros(0, 5, requires_grad=True)
    loss = F.cross_entropy(empty, gpugrad.zeros(0, dtype=gpugrad.int64))
    assert math.isnan(loss.item()) and math.isnan(TF.cross_entropy(torch.zeros(0, 5), torch.zeros(0).long()).item())
    assert F.cross_entropy(empty, gpugrad.zeros(0, dtype=gpugrad.int64), reduction="sum").item() == 0.0


def test_all_ignored_batch_is_nan_with_zero_gradient():
    x = gpugrad.tensor(numpy.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    loss = F.cross_entropy(x, gpugrad.full((4,), -100))
    assert math.isnan(loss.item())
    F.cross_entropy(x, gpugrad.full((4,), -100), reduction="sum").backward()
    assert x.grad.abs().sum().item() == 0


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", ["transposed", "nchw", "sliced"])
def test_strided_class_dims(rng, reduction, layout):
    if layout == "transposed":
        values = rng.standard_normal((6, 9))
        target = rng.integers(0, 6, 9)
        view = lambda a: a.T                                       # noqa: E731
    elif layout == "nchw":
        values = rng.standard_normal((2, 5, 3, 4))
        target = rng.integers(0, 5, (2, 3, 4))
        view = lambda a: a                                         # noqa: E731
    else:
        values = rng.standard_normal((7, 12))
        target = rng.integers(0, 10, 7)
        view = lambda a: a[:, 1:11]                                # noqa: E731
    target.flat[0] = -100
    x = gpugrad.tensor(values, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    loss = F.cross_entropy(view(x), gpugrad.tensor(target), reduction=reduction, label_smoothing=0.1)
    tloss = TF.cross_entropy(view(tx), torch.tensor(target), reduction=reduction, label_smoothing=0.1)
    assert_close(loss, tloss, 1e-12)
    upstream = rng.standard_normal(tuple(tloss.shape))
    loss.backward(gpugrad.tensor(upstream))
    tloss.backward(torch.tensor(upstream))
    assert_close(x.grad, tx.grad, 1e-12)


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.3}, {"weight": True}], ids=str)
def test_all_ignored_batch_has_zero_second_derivatives_as_torch(rng, device, options):
    """mean over no rows: the loss is nan, the gradient and the gradient of its square are 0."""
    values = rng.standard_normal((4, 5))
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = rng.uniform(0.5, 2.0, 5)
        kwargs["weight"], tkwargs["weight"] = gpugrad.tensor(w, device=device), torch.tensor(w)
    x = gpugrad.tensor(values, device=device, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    g, = gpugrad.autograd.grad(F.cross_entropy(x, gpugrad.full((4,), 2, device=device), ignore_index=2, **kwargs),
                               x, create_graph=True)
    tg, = torch.autograd.grad(TF.cross_entropy(tx, torch.full((4,), 2), ignore_index=2, **tkwargs), tx,
                              create_graph=True)
    h, = gpugrad.autograd.grad((g * g).sum(), x)
    th, = torch.autograd.grad((tg * tg).sum(), tx)
    assert_close(g, tg, 1e-12)
    assert_close(h, th, 1e-12)
    assert not th.abs().sum() and not h.abs().sum().item()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.3}, {"weight": True, "ignore_index": 1}],
                         ids=str)
def test_gradient_written_by_the_forward_is_used_once(rng, reduction, options):
    """loss.backward() takes the forward's gradient; any other upstream gradient,
    a second backward (retain_graph) and create_graph recompute it."""
    values = rng.standard_normal((6, 5))
    target = rng.integers(0, 5, 6)
    target[::3] = 1
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = rng.uniform(0.5, 2.0, 5)
        kwargs["weight"], tkwargs["weight"] = gpugrad.tensor(w), torch.tensor(w)
    x = gpugrad.tensor(values, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    loss = F.cross_entropy(x, gpugrad.tensor(target), reduction=reduction, **kwargs)
    tloss = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
    loss.backward(retain_graph=True)
    tloss.backward(retain_graph=True)
    assert_close(x.grad, tx.grad, 1e-12)
    loss.backward(retain_graph=True)                 # again: the saved statistics, not the used-up gradient
    tloss.backward(retain_graph=True)
    assert_close(x.grad, tx.grad, 1e-12)
    (loss * 3).backward()
    (tloss * 3).backward()
    assert_close(x.grad, tx.grad, 1e-12)
    x2 = gpugrad.tensor(values, requires_grad=True)
    g, = gpugrad.autograd.grad(F.cross_entropy(x2, gpugrad.tensor(target), reduction=reduction, **kwargs), x2,
                               create_graph=True)
    tx2 = torch.tensor(values, requires_grad=True)
    tg, = torch.autograd.grad(TF.cross_entropy(tx2, torch.tensor(target), reduction=reduction, **tkwargs), tx2,
                              create_graph=True)
    assert_close(g, tg, 1e-12)
    h, = gpugrad.autograd.grad((g * g).sum(), x2)
    th, = torch.autograd.grad((tg * tg).sum(), tx2)
    assert_close(h, th, 1e-10)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype,classes", [("float64", 512), ("float32", 600), ("bfloat16", 1000)])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2, "weight": True, "ignore_index": 3}], ids=str)
@pytest.mark.parametrize("blocks_per_sm", [1, 8])
def test_warp_rows_writing_the_gradient_stride_over_row_groups(rng, dtype, classes, reduction, options,
                                                               blocks_per_sm, monkeypatch):
    """Rows of a warp each go 16 to a block when the forward writes the
    gradient (cross_entropy.GRAD_WARP_ROWS): 37 rows are three row groups, the
    last of 5 rows, on a device of one SM taken by one block that strides over
    them, or by a block each; torch's loss and gradient."""
    from gpugrad.cuda import launch
    from gpugrad.ops.fused import cross_entropy as ce
    monkeypatch.setattr(launch, "sm_count", lambda device_id: 1)
    monkeypatch.setattr(launch, "BLOCKS_PER_SM", blocks_per_sm)
    shapes = []

    def recorded(filename, name, device_id, shape, args, shared_mem=0):
        if name.startswith("cross_entropy_forward"):
            shapes.append((shape.grid, shape.block))
        return real(filename, name, device_id, shape, args, shared_mem)
    real = launch.launch
    monkeypatch.setattr(launch, "launch", recorded)
    values = rng.standard_normal((37, classes)) * 3
    target = rng.integers(0, classes, 37)
    target[::4] = 3
    kwargs, tkwargs = dict(options), dict(options)
    if options.get("weight"):
        w = rng.uniform(0.5, 2.0, classes)
        kwargs["weight"] = gpugrad.tensor(w, dtype=getattr(gpugrad, dtype), device="cuda")
        tkwargs["weight"] = torch.tensor(kwargs["weight"].to(gpugrad.float64).cpu().numpy())
    x = gpugrad.tensor(values, dtype=getattr(gpugrad, dtype), device="cuda", requires_grad=True)
    tx = torch.tensor(x.detach().to(gpugrad.float64).cpu().numpy(), requires_grad=True)
    loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), reduction=reduction, **kwargs)
    tloss = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
    loss.backward()
    tloss.backward()
    tolerance = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 2e-2}[dtype]
    assert_close(loss, tloss, tolerance)
    assert_close(x.grad, tx.grad, tolerance)
    assert shapes == [((1 if blocks_per_sm == 1 else 3, 1), (32, ce.GRAD_WARP_ROWS))]


def test_loss_used_twice_gets_its_full_gradient(rng):
    values = rng.standard_normal((4, 3))
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    t = rng.integers(0, 3, 4)
    loss = F.cross_entropy(x, gpugrad.tensor(t))
    tloss = TF.cross_entropy(tx, torch.tensor(t))
    (loss + loss * loss).backward()
    (tloss + tloss * tloss).backward()
    assert_close(x.grad, tx.grad, 1e-12)


SCALED_LOSSES = {
    "2 * loss": (lambda loss, step, tensor: 2 * loss, True),
    "loss / 4": (lambda loss, step, tensor: loss / 4, True),
    "loss * tensor(8)": (lambda loss, step, tensor: loss * tensor(8.0), True),
    "2 * loss + loss": (lambda loss, step, tensor: 2 * loss + loss, True),
    "loss * -0.0": (lambda loss, step, tensor: loss * -0.0, True),
    "a scale that changes": (lambda loss, step, tensor: loss * (1.0 + step), False),
    "a tensor scale that changes": (lambda loss, step, tensor: loss * tensor(0.5 ** step), False),
    "loss ** 2": (lambda loss, step, tensor: loss ** 2, False),
}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("pattern", list(SCALED_LOSSES))
def test_scaled_loss_takes_the_forward_gradient(device, reduction, pattern):
    """(2 * loss).backward(), loss / steps, a tensor scale (GradScaler): from the
    second step on the forward writes its gradient for the upstream gradient
    the last step's backward received, and the backward keeps it (the logits,
    spoilt with nan after the forward, are not read again); a different
    upstream gradient (a scale that changes, loss ** 2) is computed again."""
    rng = numpy.random.default_rng(29)
    classes = 600                      # on CUDA under 'mean', the forward writes dx from 512 classes
    values = rng.standard_normal((12, classes)) * 2
    target = rng.integers(0, classes, 12)
    target[5] = -100
    scaled, constant = SCALED_LOSSES[pattern]
    for step in range(3):
        x = gpugrad.tensor(values, device=device, requires_grad=True)
        tx = torch.tensor(values, requires_grad=True)
        loss = F.cross_entropy(x, gpugrad.tensor(target, device=device), reduction=reduction)
        tloss = TF.cross_entropy(tx, torch.tensor(target), reduction=reduction)
        if constant and step > 0:
            x.array[...] = NAN         # behind autograd's back: a backward that reads the logits gives nan
        scaled(loss, step, lambda v: gpugrad.tensor(v, device=device)).backward()
        scaled(tloss, step, torch.tensor).backward()
        assert_close(x.grad, tx.grad, 1e-12)


# (a step's name, its scaled loss, whether the forward's gradient is kept with no backward launch: the scale's
# value is known on the host and the same as the last step's, which the forward wrote the gradient for)
KNOWN_STEPS = [
    ("2 * loss", lambda loss, tensor: 2 * loss, False),
    ("2 * loss again", lambda loss, tensor: 2 * loss, True),
    ("loss / 3", lambda loss, tensor: loss / 3, False),
    ("loss / 3 again", lambda loss, tensor: loss / 3, True),
    ("-(loss * 0.5) / 7", lambda loss, tensor: -(loss * 0.5) / 7, False),
    ("-(loss * 0.5) / 7 again", lambda loss, tensor: -(loss * 0.5) / 7, True),
    ("loss", lambda loss, tensor: loss, False),
    ("loss again", lambda loss, tensor: loss, True),
    ("a tensor scale", lambda loss, tensor: loss * tensor(4.0), False),
    ("2 * loss after a tensor scale", lambda loss, tensor: 2 * loss, False),    # (checked on the device)
    ("2 * loss once more", lambda loss, tensor: 2 * loss, True),
    ("loss ** 2", lambda loss, tensor: loss ** 2, False),
    ("2 * loss + loss", lambda loss, tensor: 2 * loss + loss, False),
    ("loss * -0.0", lambda loss, tensor: loss * -0.0, False),
    ("loss * 0.0", lambda loss, tensor: loss * 0.0, False),
    ("loss * 0.0 again", lambda loss, tensor: loss * 0.0, True),
]


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_scale_known_on_the_host_keeps_the_forward_gradient_with_no_launch(rng, device, dtype, reduction,
                                                                             monkeypatch):
    """A number times the loss (2 * loss, loss / 3, -(loss * 0.5) / 7, in
    bfloat16 through the cast back from float32): the engine carries the
    implicit seed down the chain, and from the second step with the same
    value the backward returns the forward's gradient without a launch (the
    logits, spoilt with nan after the forward, are not read); a new value, a
    tensor scale, loss ** 2 and a loss of two consumers go to the backward
    (computed again, or checked on the device).  Torch's values every step."""
    from gpugrad.ops.fused import cross_entropy as ce
    monkeypatch.setattr(ce, "_expected_upstream", type(ce._expected_upstream)())
    calls = []

    def counted(function):
        def run(*args, **kwargs):
            calls.append(function.__name__)
            return function(*args, **kwargs)
        return run
    monkeypatch.setattr(ce, "backward_numpy", counted(ce.backward_numpy))
    monkeypatch.setattr(ce, "backward_cuda", counted(ce.backward_cuda))
    classes = 600                      # on CUDA under 'mean', the forward writes dx from 512 classes
    values = rng.standard_normal((12, classes)) * 2
    target = rng.integers(0, classes, 12)
    target[5] = -100
    tolerance = {"float64": 1e-12, "float32": 1e-5, "bfloat16": 2e-2}[dtype]
    for name, scaled, keep in KNOWN_STEPS:
        x = gpugrad.tensor(values, dtype=getattr(gpugrad, dtype), device=device, requires_grad=True)
        tx = torch.tensor(x.detach().to(gpugrad.float64).cpu().numpy(), requires_grad=True)
        loss = F.cross_entropy(x, gpugrad.tensor(target, device=device), reduction=reduction)
        if keep:
            x.array[...] = NAN         # behind autograd's back: a backward that reads the logits gives nan
        calls.clear()
        scaled(loss, lambda v: gpugrad.tensor(v, dtype=x.dtype, device=device)).backward()
        scaled(TF.cross_entropy(tx, torch.tensor(target), reduction=reduction), torch.tensor).backward()
        assert_close(x.grad, tx.grad, tolerance)
        assert len(calls) == (0 if keep else 1), name


def test_a_hook_or_retain_graph_on_a_scaled_loss_gets_torch_gradients(rng, device):
    """The engine knows the gradient only down a chain of numbers: a hook that
    changes the loss's gradient, retain_grad, a second backward through the
    retained graph (the forward's gradient used once) give torch's values."""
    values = rng.standard_normal((6, 600))
    target = rng.integers(0, 600, 6)
    for step in range(3):
        x = gpugrad.tensor(values, device=device, requires_grad=True)
        tx = torch.tensor(values, requires_grad=True)
        loss, tloss = F.cross_entropy(x, gpugrad.tensor(target, device=device)), TF.cross_entropy(
            tx, torch.tensor(target))
        if step == 1:
            loss.register_hook(lambda g: g * 3)
            tloss.register_hook(lambda g: g * 3)
        if step == 2:
            loss.retain_grad()
            tloss.retain_grad()
        (2 * loss).backward(retain_graph=True)
        (2 * loss).backward()
        (2 * tloss).backward(retain_graph=True)
        (2 * tloss).backward()
        assert_close(x.grad, tx.grad, 1e-12)
        if step == 2:
            assert_close(loss.grad, tloss.grad, 0)


def test_the_expected_upstream_gradients_are_bounded(rng, device, monkeypatch):
    """One expected upstream gradient per kind of loss (shape, dtype,
    options), for the EXPECTED_KINDS kinds used last: a program of many shapes
    holds no more, and a kind no longer kept starts from 1 again (torch's
    values throughout)."""
    from gpugrad.ops.fused import cross_entropy as ce
    monkeypatch.setattr(ce, "_expected_upstream", type(ce._expected_upstream)())
    kinds = ce.EXPECTED_KINDS + 4
    for rows in list(range(1, kinds + 1)) + [1, kinds]:
        values = rng.standard_normal((rows, 600))
        target = rng.integers(0, 600, rows)
        x = gpugrad.tensor(values, device=device, requires_grad=True)
        tx = torch.tensor(values, requires_grad=True)
        (F.cross_entropy(x, gpugrad.tensor(target, device=device)) / 5).backward()
        (TF.cross_entropy(tx, torch.tensor(target)) / 5).backward()
        assert_close(x.grad, tx.grad, 1e-12)
        assert len(ce._expected_upstream) <= ce.EXPECTED_KINDS
    shapes = [key[2] for key in ce._expected_upstream]
    assert shapes[-2:] == [(1, 600), (kinds, 600)]
    assert (2, 600) not in shapes and len(shapes) == ce.EXPECTED_KINDS


# logsumexp's upstream gradients: (the loss of out = logsumexp(x, ...), the rows whose gradient the forward
# wrote for the upstream gradient that will come, from the second step on: "all", a mask of rows, or None)
LSE_UPSTREAMS = {
    "lse.sum()": (lambda out, step, w: out.sum(), "all"),
    "2 * lse.sum()": (lambda out, step, w: (2 * out).sum(), "all"),
    "lse.mean()": (lambda out, step, w: out.mean(), "all"),
    "lse * -0.0": (lambda out, step, w: (out * -0.0).sum(), "all"),
    "a scale that changes": (lambda out, step, w: (out * (1.0 + step)).sum(), None),
    "lse ** 2": (lambda out, step, w: (out ** 2).sum(), None),
    "per-row weights": (lambda out, step, w: (out * w).sum(), "rows"),
}
LSE_LAYOUTS = {       # (shape, dim, keepdim, transposed)
    "rows": ((12, 600), 1, False, False),
    "short rows (by spans on CUDA)": ((300, 10), 1, False, False),
    "strided dim, keepdim": ((5, 7, 3), 1, True, False),
    "transposed, last dim": ((6, 40), -1, False, True),
    "dims (0, 2)": ((4, 3, 5), (0, 2), False, False),
}


@pytest.mark.parametrize("layout", list(LSE_LAYOUTS))
@pytest.mark.parametrize("pattern", list(LSE_UPSTREAMS))
def test_logsumexp_takes_the_gradient_its_forward_wrote(device, pattern, layout):
    """logsumexp's forward writes x's gradient for the upstream gradient the
    last backward of the same kind received (1 at first), and the backward
    keeps it in the rows where that is the one that came: x, spoilt with nan
    after the forward in those rows, is not read again; the other rows (a
    scale that changes, lse ** 2, per-row weights that differ from the first)
    are computed again from x.  torch's values in float64 at every step."""
    rng = numpy.random.default_rng(29)
    shape, dim, keepdim, transposed = LSE_LAYOUTS[layout]
    values = rng.standard_normal(shape) * 2
    values[1, ...] = -INF                # a row of -inf only (nan gradient, as torch)
    if transposed:
        values = values.T.copy()
    loss_of, kept = LSE_UPSTREAMS[pattern]
    t_out_shape = torch.logsumexp(torch.tensor(values), dim, keepdim=keepdim).shape
    weights = rng.choice([1.0, 1.0, 3.0, -0.5], size=t_out_shape)
    weights.reshape(-1)[0] = 1.0
    for step in range(3):
        x = gpugrad.tensor(values.T if transposed else values, device=device)
        x = (x.T if transposed else x).requires_grad_()
        tx = torch.tensor(values, requires_grad=True)
        out = gpugrad.logsumexp(x, dim, keepdim=keepdim)
        tout = torch.logsumexp(tx, dim, keepdim=keepdim)
        assert_close(out, tout, 1e-12)
        if kept is not None and step > 0:
            # behind autograd's back: a backward that reads x in those rows gives nan there
            rows = numpy.ones(t_out_shape, dtype=bool) if kept == "all" else weights == weights.reshape(-1)[0]
            spoilt = numpy.broadcast_to(rows if keepdim else numpy.expand_dims(rows, dim), values.shape)
            if isinstance(dim, tuple) and not x.is_cpu:
                spoilt = numpy.zeros_like(spoilt)  # (over two dims the CUDA path writes no gradient forward)
            x.array[gpugrad.tensor(spoilt, device=device).array] = NAN
        loss_of(out, step, gpugrad.tensor(weights, device=device)).backward()
        loss_of(tout, step, torch.tensor(weights)).backward()
        assert_close(x.grad, tx.grad, 1e-12)


def test_logsumexp_gradient_of_the_forward_is_used_once(device):
    """A second backward (retain_graph) and create_graph compute the gradient
    again from x: the forward's is handed out once."""
    values = numpy.random.default_rng(4).standard_normal((5, 9))
    x, tx = gpugrad.tensor(values, device=device, requires_grad=True), torch.tensor(values, requires_grad=True)
    out, tout = gpugrad.logsumexp(x, 1), torch.logsumexp(tx, 1)
    for _ in range(2):
        out.sum().backward(retain_graph=True)
        tout.sum().backward(retain_graph=True)
        assert_close(x.grad, tx.grad, 1e-12)
    g, = gpugrad.autograd.grad(gpugrad.logsumexp(x, 1).sum(), x, create_graph=True)
    tg, = torch.autograd.grad(torch.logsumexp(tx, 1).sum(), tx, create_graph=True)
    assert_close(g, tg, 1e-12)
    assert_close(gpugrad.autograd.grad((g * g).sum(), x)[0], torch.autograd.grad((tg * tg).sum(), tx)[0], 1e-10)


@pytest.mark.cuda
def test_logsumexp_sum_backward_is_one_launch():
    """lse.sum().backward(): the forward writes the gradient and the backward
    takes it with no launch (the engine's 1, on the host); (2 * lse).sum()
    from the second step: one launch more, whose blocks return at once."""
    x = gpugrad.tensor(numpy.random.default_rng(3).standard_normal((64, 1000)), dtype=gpugrad.float32,
                       device="cuda", requires_grad=True)
    # (2 * lse): the warm step's gradient comes from the backward kernel (the forward wrote it for 1), the
    # counted one from the forward's: two kernels whose float32 roundings differ on a GPU (FMA contraction)
    for loss_of, launches, tol in ((lambda out: out.sum(), 1, 0.0), (lambda out: (2 * out).sum(), 2, 1e-6)):
        x.grad = None
        loss_of(gpugrad.logsumexp(x, 1)).backward()    # warm: the kernels built, the upstream gradient seen
        expected = x.grad.detach().clone()
        out = gpugrad.logsumexp(x, 1)
        stop = launch_counter()
        x.grad = None
        loss_of(out).backward()
        if stop is not None:
            assert stop()[0] == launches - 1         # the forward's launch is before the count
        assert_close(x.grad, expected, tol)


def test_bad_targets_raise_on_the_cpu():
    x = gpugrad.zeros(3, 4)
    with pytest.raises(IndexError, match="Target 4 is out of bounds"):
        F.cross_entropy(x, gpugrad.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match="Target -2 is out of bounds"):
        F.nll_loss(x, gpugrad.tensor([0, -2, 1]))
    assert F.cross_entropy(x, gpugrad.tensor([0, -7, 1]), ignore_index=-7).item() == pytest.approx(math.log(4))


def test_class_weights_are_converted_once_and_follow_in_place_changes():
    w = gpugrad.tensor([1.0, 2.0, 3.0])
    x = gpugrad.zeros(2, 3)
    t = gpugrad.tensor([1, 2])
    first = F.cross_entropy(x, t, weight=w, reduction="sum").item()
    with gpugrad.no_grad():
        w.mul_(2)                       # the cache sees the new version
    assert F.cross_entropy(x, t, weight=w, reduction="sum").item() == pytest.approx(2 * first)
    tw = torch.tensor([2.0, 4.0, 6.0])
    assert F.cross_entropy(x, t, weight=w, reduction="sum").item() == pytest.approx(
        TF.cross_entropy(to_torch(x), torch.tensor([1, 2]), weight=tw, reduction="sum").item())


def _implementations():
    """{(module, step): {"numpy": function, "cuda": function}} over gpugrad/ops/fused/."""
    import importlib
    import pkgutil

    import gpugrad.ops.fused as package
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for name, value in vars(module).items():
            for kind in ("numpy", "cuda"):
                if name.endswith("_" + kind) and callable(value) and value.__module__ == module.__name__:
                    found.setdefault((info.name, name[:-len(kind) - 1]), {})[kind] = value
    return found


def test_each_fused_step_has_a_numpy_twin_and_a_cuda_launcher_of_one_signature():
    import inspect
    found = _implementations()
    assert {("logsumexp", "forward"), ("logsumexp", "backward"), ("softmax", "forward"), ("softmax", "backward"),
            ("cross_entropy", "forward"), ("cross_entropy", "backward"), ("indices", "check")} <= set(found)
    for (module, step), pair in found.items():
        assert set(pair) == {"numpy", "cuda"}, f"{module}.{step}: only {sorted(pair)}"
        assert inspect.signature(pair["numpy"]) == inspect.signature(pair["cuda"]), (
            f"{module}.{step}_numpy{inspect.signature(pair['numpy'])} != "
            f"{module}.{step}_cuda{inspect.signature(pair['cuda'])}")
