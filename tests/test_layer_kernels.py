"""The transformer layers' single kernels on CUDA (issue 28 point 3): layer
norm forward and backward, GELU (erf and tanh) forward and backward, and
dropout with a counter-based mask, each one launch; against torch in float64
on both devices (the NumPy path on the CPU, the kernels under the emulator)."""

import math

import numpy
import pytest
import torch
from conftest import EMULATED, assert_close, launch_counter, relative_error, to_numpy, to_torch

import gpugrad
from gpugrad.autograd import gradgradcheck

F = gpugrad.nn.functional


def _pair(rng, shape, device, scale=1.0):
    """A gpugrad leaf on ``device`` and torch's float64 leaf of the same values, on the CPU: this file's
    torch references all live there (their results are read with .numpy())."""
    values = rng.standard_normal(shape) * scale
    return gpugrad.tensor(values, device=device, requires_grad=True), to_torch(
        gpugrad.tensor(values), requires_grad=True)


def _count(fn, device):
    """(result of fn, kernel launches, CuPy operations) on the emulated cuda
    device; launches None elsewhere."""
    stop = launch_counter() if device == "cuda" else None
    result = fn()
    return (result, *stop()) if stop else (result, None, None)


LAYER_NORM_CASES = [((3, 5, 7), 1, True, True), ((4, 6, 10), 2, True, True), ((2, 70), 1, False, False),
                    ((2, 3, 300), 1, True, False), ((0, 8), 1, True, True), ((9,), 1, True, True)]


@pytest.mark.parametrize("shape, ndims, with_weight, with_bias", LAYER_NORM_CASES)
def test_layer_norm_matches_torch(rng, device, shape, ndims, with_weight, with_bias):
    x, tx = _pair(rng, shape, device, 3.0)
    normalized = shape[len(shape) - ndims:]
    w, tw = _pair(rng, normalized, device) if with_weight else (None, None)
    b, tb = _pair(rng, normalized, device) if with_bias else (None, None)
    out, launches, ops = _count(lambda: F.layer_norm(x, normalized, w, b, eps=1e-5), device)
    if launches is not None and x.numel():
        assert (launches, ops) == (1, 0), "the forward is one kernel"
    tout = torch.nn.functional.layer_norm(tx, normalized, tw, tb, eps=1e-5)
    assert_close(out, tout, 1e-12)
    g = rng.standard_normal(shape)
    _, launches, ops = _count(lambda: out.backward(gpugrad.tensor(g, device=device)), device)
    if launches is not None and x.numel():
        assert launches == 1, "the backward (dx, dw, db) is one kernel"
    tout.backward(torch.tensor(g))
    for ours, theirs in ((x, tx), (w, tw), (b, tb)):
        if ours is not None:
            assert ours.grad.shape == ours.shape
            assert_close(ours.grad, theirs.grad, 1e-12)


def test_layer_norm_non_contiguous_nan_and_only_some_gradients(rng, device):
    base, tbase = _pair(rng, (6, 4), device)
    x, tx = base.t(), tbase.t()                     # rows of 6 with stride 4
    w = gpugrad.tensor(rng.standard_normal(6), device=device)     # no gradient wanted for the weight
    tw = to_torch(w, "cpu")
    out = F.layer_norm(x, (6,), w)
    tout = torch.nn.functional.layer_norm(tx, (6,), tw)
    assert_close(out, tout, 1e-12)
    out.sum().backward()
    tout.sum().backward()
    assert_close(base.grad, tbase.grad, 1e-12)
    values = rng.standard_normal((3, 5))
    values[1, 2], values[2, 0] = math.nan, math.inf
    got = to_numpy(F.layer_norm(gpugrad.tensor(values, device=device), (5,)))
    want = torch.nn.functional.layer_norm(torch.tensor(values), (5,)).numpy()
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want))
    assert_close(got[0], want[0], 1e-12)


def test_layer_norm_of_an_expanded_or_strided_weight_and_bias(rng, device):
    """The kernels read weight[c] and bias[c]: an expanded (stride 0) or step-sliced weight and bias are
    copied first (the emulated fuzz run, layer_norm/F:698071852: an expanded weight read past its one
    element, NaN there)."""
    x = rng.standard_normal((3, 4))
    w_values, b_values = rng.standard_normal(1), rng.standard_normal(8)
    ours, theirs = [], []
    for lib, dev in ((gpugrad, device), (torch, "cpu")):
        w = lib.tensor(w_values, device=dev, requires_grad=True)
        b = lib.tensor(b_values, device=dev, requires_grad=True)
        xt = lib.tensor(x, device=dev, requires_grad=True)
        out = lib.nn.functional.layer_norm(xt, (4,), w.expand(4), b[::2])
        out.backward(lib.tensor(x[::-1].copy(), device=dev))
        (ours if lib is gpugrad else theirs).extend([out, xt.grad, w.grad, b.grad])
    for got, want in zip(ours, theirs):
        assert_close(got, want, 1e-12)


def test_layer_norm_float32_and_double_backward(rng, device):
    x, tx = _pair(rng, (5, 33), device)
    w, tw = _pair(rng, (33,), device)
    out = F.layer_norm(x.float(), (33,), w.float())
    tout = torch.nn.functional.layer_norm(tx.float(), (33,), tw.float())
    assert out.dtype == gpugrad.float32
    assert_close(out, tout, 1e-6)
    # create_graph: the differentiable formula, then a second derivative equal to torch's
    y = F.layer_norm(x, (33,), w)
    ty = torch.nn.functional.layer_norm(tx, (33,), tw)
    gx, = gpugrad.autograd.grad((y * y).sum(), x, create_graph=True)
    tgx, = torch.autograd.grad((ty * ty).sum(), tx, create_graph=True)
    assert_close(gx, tgx, 1e-12)
    (gx * gx).sum().backward()
    (tgx * tgx).sum().backward()
    assert_close(w.grad, tw.grad, 1e-10)
    assert_close(x.grad, tx.grad, 1e-10)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(5, 33), (), (0, 3), (2, 3, 4)])
def test_gelu_matches_torch(rng, device, approximate, shape):
    x, tx = _pair(rng, shape, device, 3.0)
    out, launches, ops = _count(lambda: F.gelu(x, approximate=approximate), device)
    if launches is not None and x.numel():
        assert (launches, ops) == (1, 0)
    tout = torch.nn.functional.gelu(tx, approximate=approximate)
    # against the size of x: 1 + tanh (1 + erf) cancels for x << 0, where an ulp of tanh is 1e-13 of gelu(x) in
    # torch's value too (seed 88 drew x = -3.278 for the 0-d case: torch 4.7e-14, gpugrad 8.1e-14 from the truth)
    assert_close(out, tout, 1e-14, floor=float(tx.detach().norm()))
    g = rng.standard_normal(shape)
    _, launches, ops = _count(lambda: out.backward(gpugrad.tensor(g, device=device)), device)
    if launches is not None and x.numel():
        assert launches == 1
    tout.backward(torch.tensor(g))
    assert_close(x.grad, tx.grad, 1e-12, floor=1.0)     # gelu' cancels near x = -2.4: against its scale, 1


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_edges_non_contiguous_and_second_derivative(rng, device, approximate):
    values = numpy.array([math.nan, math.inf, -math.inf, 0.0, -0.0, 30.0, -30.0, 1e-300])
    got = to_numpy(F.gelu(gpugrad.tensor(values, device=device), approximate=approximate))
    want = torch.nn.functional.gelu(torch.tensor(values), approximate=approximate).numpy()
    numpy.testing.assert_array_equal(numpy.isnan(got), numpy.isnan(want))
    finite = ~numpy.isnan(want)
    numpy.testing.assert_allclose(got[finite], want[finite], rtol=1e-14, atol=0)
    base, tbase = _pair(rng, (4, 6), device)
    x, tx = base.t(), tbase.t()
    y = F.gelu(x, approximate=approximate)
    ty = torch.nn.functional.gelu(tx, approximate=approximate)
    gx, = gpugrad.autograd.grad(y.sum(), base, create_graph=True)
    tgx, = torch.autograd.grad(ty.sum(), tbase, create_graph=True)
    assert_close(gx, tgx, 1e-12, floor=1.0)
    (gx * gx).sum().backward()
    (tgx * tgx).sum().backward()
    assert_close(base.grad, tbase.grad, 1e-12)


def test_gelu_half_precision(rng, device):
    values = rng.standard_normal((8, 16)).astype(numpy.float32)
    for dtype in (gpugrad.float16, gpugrad.bfloat16):
        out = F.gelu(gpugrad.tensor(values, device=device).to(dtype), approximate="tanh")
        assert out.dtype == dtype
        want = torch.nn.functional.gelu(torch.tensor(values, dtype=torch.float64), approximate="tanh").numpy()
        assert_close(to_numpy(out), want, 1e-2)


OUTPUT_SLOPE_CASES = [((3, 5, 7), False), ((300, 33), True), ((), False), ((0, 4), False)]


@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
@pytest.mark.parametrize("shape, transposed", OUTPUT_SLOPE_CASES)
def test_sigmoid_and_tanh_are_one_launch_each_way(rng, device, name, shape, transposed):
    """sigmoid's forward and the backward of sigmoid and tanh (grad * y (1 - y), grad * (1 - y^2), from
    the forward's output) in one launch each on CUDA (kernels/elementwise.cu), with an upstream gradient
    of its own or sum's broadcast one read in place; values and gradients as torch's in float64, and a
    second derivative through them."""
    base, tbase = _pair(rng, shape[::-1] if transposed else shape, device, 3.0)
    x, tx = (base.t(), tbase.t()) if transposed else (base, tbase)
    out, launches, ops = _count(lambda: getattr(x, name)(), device)
    if launches is not None and x.numel():
        assert (launches, ops) == ((0, 1) if name == "tanh" else (1, 0))     # (tanh's forward: CuPy's own)
    tout = getattr(tx, name)()
    assert_close(out, tout, 1e-15, floor=1.0)
    g = rng.standard_normal(shape)
    _, launches, ops = _count(lambda: out.backward(gpugrad.tensor(g, device=device), retain_graph=True), device)
    if launches is not None and x.numel():
        assert (launches, ops) == (1, int(transposed))     # (x = base.t(): the transpose's backward, a view)
    tout.backward(to_torch(g), retain_graph=True)
    assert_close(base.grad, tbase.grad, 1e-14, floor=1.0)
    base.grad = tbase.grad = None
    total = out.sum()
    _, launches, _ = _count(lambda: total.backward(), device)              # one upstream value, broadcast
    if launches is not None and x.numel():
        assert launches == 1
    tout.sum().backward()
    assert_close(base.grad, tbase.grad, 1e-14, floor=1.0)
    gx, = gpugrad.autograd.grad(getattr(x, name)().sum(), base, create_graph=True)
    tgx, = torch.autograd.grad(getattr(tx, name)().sum(), tbase, create_graph=True)
    assert_close(gx, tgx, 1e-14, floor=1.0)
    h, = gpugrad.autograd.grad((gx * gx).sum(), base)
    th, = torch.autograd.grad((tgx * tgx).sum(), tbase)
    assert_close(h, th, 1e-13, floor=1.0)


def test_sigmoid_and_tanh_edges_and_half_precision(rng, device):
    values = numpy.array([math.nan, math.inf, -math.inf, 0.0, -0.0, 30.0, -30.0, 100.0, -100.0, 1e-300])
    for name in ("sigmoid", "tanh"):
        x = gpugrad.tensor(values, device=device, requires_grad=True)
        tx = torch.tensor(values, requires_grad=True)
        y, ty = getattr(x, name)(), getattr(tx, name)()
        numpy.testing.assert_array_equal(to_numpy(y), ty.detach().numpy())
        y.backward(gpugrad.tensor(numpy.full_like(values, 0.5), device=device))
        ty.backward(torch.tensor(numpy.full_like(values, 0.5)))
        numpy.testing.assert_array_equal(to_numpy(x.grad), tx.grad.numpy())
    half = rng.standard_normal((8, 16)).astype(numpy.float32)
    for dtype in (gpugrad.float16, gpugrad.bfloat16):
        for name in ("sigmoid", "tanh"):
            x = gpugrad.tensor(half, device=device).to(dtype).requires_grad_()
            out = getattr(x, name)()
            assert out.dtype == dtype
            want = getattr(torch.tensor(half, dtype=torch.float64), name)().numpy()
            assert_close(to_numpy(out), want, 1e-2)
            out.sum().backward()
            assert x.grad.dtype == dtype
            t = torch.tensor(half, dtype=torch.float64, requires_grad=True)
            getattr(t, name)().sum().backward()
            assert_close(to_numpy(x.grad), t.grad.numpy(), 2e-2)


LINEAR_GELU_CASES = [((4, 7, 12), 17), ((300, 12), 17), ((3, 12), 300), ((12,), 5), ((0, 12), 6)]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape, features", LINEAR_GELU_CASES)
def test_linear_gelu_bias_gradient_from_the_gelu_kernel(rng, device, approximate, shape, features):
    """gelu(linear(x, w, b)): on CUDA the GELU's backward kernel sums dx over
    the rows as well, and that is the bias's gradient (no reduction of the
    Linear's own); values and every gradient as torch's in float64."""
    x, tx = _pair(rng, shape, device)
    w, tw = _pair(rng, (features, shape[-1]), device, 0.3)
    b, tb = _pair(rng, (features,), device)
    out = F.gelu(F.linear(x, w, b), approximate=approximate)
    tout = torch.nn.functional.gelu(torch.nn.functional.linear(tx, tw, tb), approximate=approximate)
    assert_close(out, tout, 1e-13, floor=1.0)
    g = gpugrad.tensor(rng.standard_normal(tuple(tout.shape)), device=device)
    _, launches, ops = _count(lambda: out.backward(g), device)
    tout.backward(to_torch(g, "cpu"))
    for ours, theirs in ((x, tx), (w, tw), (b, tb)):
        assert ours.grad.shape == ours.shape
        assert_close(ours.grad, theirs.grad, 1e-12, floor=1.0)
    if launches is not None and x.numel():
        # the same backward with a bias that needs no gradient: as many launches and operations
        x.grad = w.grad = None
        again = F.gelu(F.linear(x, w, b.detach()), approximate=approximate)
        _, launches_without, ops_without = _count(lambda: again.backward(g), device)
        assert (launches, ops) == (launches_without, ops_without), "the bias's gradient took launches of its own"


def test_linear_gelu_bias_gradient_with_other_consumers_hooks_and_create_graph(rng, device):
    """The GELU's sums are the bias's gradient only when they are the sums of
    the Linear output's whole gradient: a second consumer, a hook that replaces
    or changes the gradient in place, a broadcast bias of one element, a second
    pass over a retained graph, and create_graph all give torch's gradients."""
    x, tx = _pair(rng, (6, 5), device)
    w, tw = _pair(rng, (7, 5), device, 0.3)
    b, tb = _pair(rng, (7,), device)
    b1, tb1 = _pair(rng, (1,), device)
    cases = [
        ("second consumer", lambda h, gelu: (gelu(h) * 1.5).sum() + (h * h).sum()),
        ("replacing hook", lambda h, gelu: (h.register_hook(lambda grad: grad * 3), gelu(h).sum())[1]),
        ("in-place hook", lambda h, gelu: (h.register_hook(lambda grad: grad.mul_(-2)), gelu(h).sum())[1]),
        ("gelu twice", lambda h, gelu: (gelu(h) * gelu(h)).sum()),
    ]
    for name, loss_of in cases:
        for bias, tbias in ((b, tb), (b1, tb1)):
            for leaf in (x, w, bias, tx, tw, tbias):
                leaf.grad = None
            loss_of(F.linear(x, w, bias), F.gelu).backward()
            loss_of(torch.nn.functional.linear(tx, tw, tbias), torch.nn.functional.gelu).backward()
            for ours, theirs in ((x, tx), (w, tw), (bias, tbias)):
                err = relative_error(ours.grad, theirs.grad, 1.0)
                assert err <= 1e-12, f"{name}, bias of shape {tuple(bias.shape)}: relative error {err:.3e}"
    # a retained graph's second pass accumulates the same gradient again
    b.grad, tb.grad = None, None
    out = F.gelu(F.linear(x, w, b), approximate="tanh").sum()
    tout = torch.nn.functional.gelu(torch.nn.functional.linear(tx, tw, tb), approximate="tanh").sum()
    out.backward(retain_graph=True)
    out.backward()
    tout.backward(retain_graph=True)
    tout.backward()
    assert_close(b.grad, tb.grad, 1e-12, floor=1.0)
    # create_graph: the differentiable backward, then a second derivative equal to torch's
    gb, = gpugrad.autograd.grad(F.gelu(F.linear(x, w, b)).pow(2).sum(), b, create_graph=True)
    tgb, = torch.autograd.grad(torch.nn.functional.gelu(torch.nn.functional.linear(tx, tw, tb)).pow(2).sum(), tb,
                               create_graph=True)
    assert_close(gb, tgb, 1e-12, floor=1.0)
    w.grad, tw.grad = None, None
    (gb * gb).sum().backward()
    (tgb * tgb).sum().backward()
    assert_close(w.grad, tw.grad, 1e-10, floor=1.0)


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("bfloat16", 2e-2), ("float16", 4e-3)])
def test_linear_gelu_bias_gradient_low_precision(rng, device, dtype, tol):
    """The sums of the rounded dx, summed in float32 and rounded once (torch's sum
    of a half tensor), against torch in float64 on the same rounded inputs;
    also under bfloat16 autocast (the bias a cached cast of a float32 leaf)."""
    x64, w64, b64 = rng.standard_normal((40, 24)), rng.standard_normal((33, 24)) * 0.3, rng.standard_normal(33)
    low = getattr(gpugrad, dtype)
    leaves = [gpugrad.tensor(a, device=device).to(low).requires_grad_() for a in (x64, w64, b64)]
    tleaves = [torch.tensor(to_numpy(t.detach().double()), requires_grad=True) for t in leaves]
    out = F.gelu(F.linear(*leaves), approximate="tanh")
    tout = torch.nn.functional.gelu(torch.nn.functional.linear(*tleaves), approximate="tanh")
    g = rng.standard_normal((40, 33))
    out.backward(gpugrad.tensor(g, device=device).to(low))
    tout.backward(torch.tensor(to_numpy(gpugrad.tensor(g).to(low).double())))
    for ours, theirs in zip(leaves, tleaves):
        assert ours.grad.dtype == low
        assert_close(to_numpy(ours.grad.double()), theirs.grad, tol, floor=1.0)
    model = gpugrad.nn.Sequential(gpugrad.nn.Linear(24, 33), gpugrad.nn.GELU()).to(device)
    tmodel = torch.nn.Sequential(torch.nn.Linear(24, 33), torch.nn.GELU()).double()
    with torch.no_grad():
        for p, tp in zip(model.parameters(), tmodel.parameters()):
            tp.copy_(torch.tensor(to_numpy(p.detach().to(gpugrad.bfloat16).double())))
    x = gpugrad.tensor(x64, device=device, dtype=gpugrad.float32)
    with gpugrad.autocast(device, dtype=gpugrad.bfloat16):
        out = model(x)
    assert out.dtype == gpugrad.bfloat16
    out.float().sum().backward()
    tmodel(torch.tensor(to_numpy(x.to(gpugrad.bfloat16).double()))).sum().backward()
    for p, tp in zip(model.parameters(), tmodel.parameters()):
        assert p.grad.dtype == gpugrad.float32
        assert_close(p.grad, tp.grad, 3e-2, floor=1.0)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_scale_and_gradient(rng, device, p):
    """Each element is x / (1 - p) or 0, the gradient holds the same mask (the
    kernel reruns the generator in the backward), the kept fraction is
    1 - p within 5 standard deviations; torch's dropout gives the same form."""
    x, tx = _pair(rng, (64, 129), device)
    out, launches, ops = _count(lambda: F.dropout(x, p), device)
    if launches is not None:
        assert (launches, ops) == (1, 0), "dropout is one kernel, no stored mask"
    values = to_numpy(out)
    kept = values != 0
    scale = 1 / (1 - p)
    numpy.testing.assert_allclose(values[kept], to_numpy(x)[kept] * scale, rtol=1e-15)
    n = kept.size
    assert abs(kept.mean() - (1 - p)) <= 5 * math.sqrt(p * (1 - p) / n)
    g = rng.standard_normal((64, 129))
    out.backward(gpugrad.tensor(g, device=device))
    numpy.testing.assert_allclose(to_numpy(x.grad), g * kept * scale, rtol=1e-15)
    # torch's dropout on the same input: values x / (1 - p) or 0, gradient g on the same mask
    tout = torch.nn.functional.dropout(tx, p)
    tkept = tout.detach().numpy() != 0
    tout.backward(torch.tensor(g))
    numpy.testing.assert_allclose(tx.grad.numpy(), g * tkept * scale, rtol=1e-15)


def test_dropout_replays_under_manual_seed_and_differs_between_calls(rng, device):
    x = gpugrad.tensor(rng.standard_normal((33, 17)), device=device)
    gpugrad.manual_seed(1234)
    first, second = to_numpy(F.dropout(x, 0.5)) != 0, to_numpy(F.dropout(x, 0.5)) != 0
    gpugrad.manual_seed(1234)
    again = to_numpy(F.dropout(x, 0.5)) != 0
    numpy.testing.assert_array_equal(first, again)
    assert (first != second).any()
    generator = gpugrad.Generator(device).manual_seed(7)
    one = to_numpy(F.dropout(x, 0.5, generator=generator)) != 0
    generator.manual_seed(7)
    numpy.testing.assert_array_equal(one, to_numpy(F.dropout(x, 0.5, generator=generator)) != 0)


def test_dropout_edges(rng, device):
    x, _ = _pair(rng, (3, 4), device)
    assert F.dropout(x, 0.0) is x
    assert F.dropout(x, 0.3, training=False) is x
    numpy.testing.assert_array_equal(to_numpy(F.dropout(x, 1.0)), numpy.zeros((3, 4)))
    empty = gpugrad.zeros((0, 5), device=device)
    assert F.dropout(empty, 0.5).shape == (0, 5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.dropout(x, 1.5)
    # non-contiguous input and a second derivative through the mask
    base, _ = _pair(rng, (5, 6), device)
    y = F.dropout(base.t(), 0.4)
    kept = to_numpy(y) != 0
    gx, = gpugrad.autograd.grad((y * y).sum(), base, create_graph=True)
    numpy.testing.assert_allclose(to_numpy(gx).T, 2 * to_numpy(base).T * kept / 0.6 ** 2, rtol=1e-14)
    gx.sum().backward()
    numpy.testing.assert_allclose(to_numpy(base.grad).T, 2 * kept / 0.6 ** 2, rtol=1e-14)


@pytest.mark.cuda
def test_layer_kernels_do_not_read_back(rng):
    if not EMULATED:
        pytest.skip("host syncs are counted by the emulator")
    import fakecupy
    reads = []
    original = fakecupy.ndarray.get
    fakecupy.ndarray.get = lambda self, *a, **k: reads.append(1) or original(self, *a, **k)
    try:
        x = gpugrad.randn(8, 32, device="cuda", requires_grad=True)
        w = gpugrad.ones(32, device="cuda", requires_grad=True)
        y = F.dropout(F.gelu(F.layer_norm(x, (32,), w), approximate="tanh"), 0.2)
        y.sum().backward()
        fakecupy._flush()
    finally:
        fakecupy.ndarray.get = original
    assert not reads
    assert w.grad is not None


def _operation_names(fn):
    """The CuPy operations fn runs on the emulated device, by name (kernel launches apart)."""
    import fakecupy
    names, original = [], fakecupy._call

    def counted(function, name, *args, **kwargs):
        names.append(name)
        return original(function, name, *args, **kwargs)
    fakecupy._call = counted
    try:
        fn()
    finally:
        fakecupy._call = original
    return names


@pytest.mark.cuda
def test_implicit_seed_is_kept_and_never_handed_out(rng):
    """loss.backward() seeds with a kept 1 on CUDA (no `ones` per backward); a
    leaf root gets a copy of it, so writing into that .grad leaves the next
    backward's seed at 1."""
    if not EMULATED:
        pytest.skip("operations are counted by the emulator")
    x = gpugrad.tensor(rng.standard_normal((3, 4)), device="cuda", requires_grad=True)
    (x * 2).sum().backward()
    names = _operation_names(lambda: (x * 2).sum().backward())
    assert "ones" not in names and "full" not in names, names
    numpy.testing.assert_array_equal(to_numpy(x.grad), numpy.full((3, 4), 4.0))
    for _ in range(2):
        leaf = gpugrad.tensor(3.0, device="cuda", requires_grad=True)
        leaf.backward()
        assert to_numpy(leaf.grad) == 1.0
        leaf.grad.add_(5)               # writes the leaf's own copy, never the kept seed
    y = gpugrad.tensor(2.0, device="cuda", requires_grad=True)
    z = y * 1
    z.retain_grad()
    z.backward()
    z.grad.mul_(7)
    assert to_numpy(y.grad) == 1.0
    w = gpugrad.tensor(2.0, device="cuda", requires_grad=True)
    (w * 3).backward()
    assert to_numpy(w.grad) == 3.0


@pytest.mark.cuda
def test_zero_grad_to_none_launches_nothing(rng):
    if not EMULATED:
        pytest.skip("launches are counted by the emulator")
    model = gpugrad.nn.Linear(8, 4).to("cuda")
    optimizer = gpugrad.optim.AdamW(model.parameters())
    model(gpugrad.randn(5, 8, device="cuda")).sum().backward()
    stop = launch_counter()
    optimizer.zero_grad()
    model.zero_grad()
    assert stop() == (0, 0)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_causal_attention_across_sizes(rng, device, dtype):
    """The causal mask, top-left aligned as torch's is_causal, for every (L, S) in turn
    (from the indices in the kernel: nothing kept between calls)."""
    for length, source in ((6, 5), (3, 7), (6, 5), (9, 9), (1, 4), (4, 1), (0, 3)):
        q, tq = _pair(rng, (2, length, 4), device)
        k, tk = _pair(rng, (2, source, 4), device)
        v, tv = _pair(rng, (2, source, 3), device)
        q, k, v = (t.to(getattr(gpugrad, dtype)).detach().requires_grad_() for t in (q, k, v))
        tq, tk, tv = (t.to(getattr(torch, dtype)).detach().requires_grad_() for t in (tq, tk, tv))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
        tol = 1e-12 if dtype == "float64" else 1e-5
        finite = ~torch.isnan(tout)          # torch: a row with nothing to attend to is nan on the math path
        numpy.testing.assert_array_equal(numpy.isnan(to_numpy(out)), ~finite.numpy())
        assert_close(to_numpy(out)[finite.numpy()], tout.detach()[finite].numpy(), tol)
        if length and source and bool(finite.all()):
            out.sum().backward()
            tout.sum().backward()
            for ours, theirs in ((q, tq), (k, tk), (v, tv)):
                assert_close(ours.grad, theirs.grad, tol)


# scaled_dot_product_attention's softmax (kernels/attention.cu): query shape, key shape, options; the mask
# as ("bool" | "float", its shape), its row 1 closed (bool) or -inf (float) where it has a query dim
ATTENTION_CASES = [
    ("causal L > S, default scale", (2, 3, 7, 8), (2, 3, 5, 8), {"is_causal": True}),
    ("causal L < S, explicit scale", (2, 2, 3, 8), (2, 2, 9, 8), {"is_causal": True, "scale": 0.7}),
    ("causal, long rows (a block per row)", (1, 1, 3, 4), (1, 1, 700, 4), {"is_causal": True}),
    ("bool mask (L, S)", (2, 3, 4, 6), (2, 3, 5, 6), {"mask": ("bool", (4, 5))}),
    ("bool mask (B, 1, L, S)", (2, 3, 4, 6), (2, 3, 5, 6), {"mask": ("bool", (2, 1, 4, 5))}),
    ("bool key padding (B, 1, 1, S)", (2, 3, 4, 6), (2, 3, 5, 6), {"mask": ("bool", (2, 1, 1, 5)), "scale": 2.0}),
    ("float mask (H, L, S) under a batch", (2, 3, 4, 6), (2, 3, 5, 6), {"mask": ("float", (3, 4, 5))}),
    ("float mask (B, H, L, S), 5-d", (2, 2, 2, 4, 6), (2, 2, 2, 5, 6), {"mask": ("float", (2, 2, 1, 4, 5))}),
    ("float mask with -inf, 2-d", (4, 6), (5, 6), {"mask": ("float", (4, 5))}),
    ("grouped query heads, causal", (2, 4, 5, 6), (2, 2, 5, 6), {"enable_gqa": True, "is_causal": True}),
]


def _attention_inputs(rng, case, dtype, device, transposed=False):
    """(gpugrad q, k, v, mask, kwargs) and torch's float64 twins (of the same, rounded, values)."""
    _, q_shape, k_shape, options = case
    kwargs = dict(options)
    mask_kind, mask_shape = kwargs.pop("mask", (None, None))
    shapes = (q_shape, k_shape, k_shape[:-1] + (7,))
    ours, theirs = [], []
    for shape in shapes:
        values = rng.standard_normal(shape)
        if transposed:              # non-contiguous: the last two dims of a transposed array
            base = gpugrad.tensor(numpy.ascontiguousarray(numpy.swapaxes(values, -1, -2)), device=device)
            t = base.to(getattr(gpugrad, dtype)).transpose(-1, -2).detach().requires_grad_()
            assert not t.is_contiguous()
        else:
            t = gpugrad.tensor(values, device=device).to(getattr(gpugrad, dtype)).detach().requires_grad_()
        ours.append(t)
        theirs.append(torch.tensor(to_numpy(t), requires_grad=True))
    tkwargs = dict(kwargs)
    if mask_kind == "bool":
        allowed = rng.random(mask_shape) > 0.4
        if len(mask_shape) >= 2 and mask_shape[-2] > 1:
            allowed[..., 1, :] = False                     # a query that may attend to nothing
        kwargs["attn_mask"], tkwargs["attn_mask"] = gpugrad.tensor(allowed, device=device), torch.tensor(allowed)
    elif mask_kind == "float":
        bias = rng.standard_normal(mask_shape)
        bias[..., 0, 2] = -numpy.inf
        bias[..., 1, :] = -numpy.inf
        mask = gpugrad.tensor(bias, device=device).to(getattr(gpugrad, dtype))
        kwargs["attn_mask"], tkwargs["attn_mask"] = mask, torch.tensor(to_numpy(mask))
    return ours, theirs, kwargs, tkwargs


ATTENTION_TOLERANCE = {"float64": 1e-10, "float32": 2e-5, "bfloat16": 3e-2}


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16"])
@pytest.mark.parametrize("case", ATTENTION_CASES, ids=[c[0] for c in ATTENTION_CASES])
def test_attention_softmax_matches_torch(rng, device, dtype, case):
    """scale, mask (bool, float with -inf, broadcast), causal (L != S) and the softmax in one launch each
    way on CUDA, against torch's float64 SDPA on the same (rounded) values; rows every score closes: 0."""
    if device == "cpu" and dtype != "float64":
        pytest.skip("float64 on the CPU (the NumPy twin); float32 and bfloat16 on the cuda device")
    transposed = dtype == "float32" or "scale" in case[3]          # non-contiguous q, k, v
    (q, k, v), (tq, tk, tv), kwargs, tkwargs = _attention_inputs(rng, case, dtype, device, transposed)
    out, launches, ops = _count(lambda: F.scaled_dot_product_attention(q, k, v, **kwargs), device)
    if launches is not None:
        assert launches == 1, "scale, mask and softmax: one kernel"
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, **tkwargs)
    tol = ATTENTION_TOLERANCE[dtype]
    assert out.dtype == q.dtype and tuple(out.shape) == tuple(tout.shape)
    if "attn_mask" in kwargs and kwargs["attn_mask"].shape[-2] > 1:
        assert (to_numpy(out)[..., 1, :] == 0).all()
    assert_close(out, tout, tol)
    g = rng.standard_normal(out.shape)
    _, launches, ops = _count(lambda: out.backward(gpugrad.tensor(g, device=device).to(out.dtype)), device)
    if launches is not None:
        assert launches == 1, "the softmax's and the scale's gradient: one kernel"
    tout.backward(torch.tensor(to_numpy(gpugrad.tensor(g).to(out.dtype))))
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        assert ours.grad.dtype == ours.dtype and tuple(ours.grad.shape) == tuple(ours.shape)
        assert_close(ours.grad, theirs.grad, tol, floor=1.0)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
def test_attention_dropout_is_fused_with_f_dropouts_mask(rng, dtype):
    """On CUDA the dropout of the probabilities is the same launch, with the mask F.dropout draws from the
    same generator state (Philox at the flat index): the same values and gradients as the ops composed,
    one kernel each way, no mask stored; a second derivative goes through (the kept probabilities)."""
    from gpugrad.ops.fused.attention import attention_softmax
    q, k, v = (gpugrad.tensor(rng.standard_normal((2, 3, 6, 8)), device="cuda").to(getattr(gpugrad, dtype))
               .requires_grad_() for _ in range(3))
    g = gpugrad.tensor(rng.standard_normal((2, 3, 6, 8)), device="cuda").to(q.dtype)
    gpugrad.manual_seed(7)
    out, launches, ops = _count(lambda: F.scaled_dot_product_attention(q, k, v, dropout_p=0.3, is_causal=True), "cuda")
    if launches is not None:
        assert launches == 1
    _, launches, _ = _count(lambda: out.backward(g), "cuda")
    if launches is not None:
        assert launches == 1
    grads = [t.grad for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    gpugrad.manual_seed(7)
    weights = attention_softmax(q @ k.mT, None, 1 / math.sqrt(8), True)
    dropped = F.dropout(weights, 0.3)
    composed = dropped @ v
    composed.backward(g)
    assert ((to_numpy(weights) != 0) & (to_numpy(dropped) == 0)).any()
    tol = {"float32": 1e-6, "bfloat16": 1e-2, "float64": 1e-12}[dtype]
    assert_close(out, composed, tol)
    for ours, theirs in zip(grads, (q.grad, k.grad, v.grad)):
        assert_close(ours, theirs, tol, floor=1.0)
    if dtype == "float64":        # the second derivative, with the same mask at every call
        def attention(a, b, c):
            gpugrad.manual_seed(3)
            return F.scaled_dot_product_attention(a, b, c, dropout_p=0.4)
        small = [t.detach()[:1, :1, :3, :2].requires_grad_() for t in (q, k, v)]
        assert gradgradcheck(attention, small)


def test_attention_mask_that_takes_a_gradient_and_mask_dtypes(rng, device):
    """A float mask that requires grad gets torch's gradient (the ops composed); a float mask of another
    dtype than the query is torch's RuntimeError."""
    (q, k, v), (tq, tk, tv), _, _ = _attention_inputs(rng, ATTENTION_CASES[3], "float64", device)
    bias, tbias = _pair(rng, (3, 4, 5), device)
    with gpugrad.no_grad(), torch.no_grad():
        bias[:, 2, 1] = tbias[:, 2, 1] = -math.inf
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    tout = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=tbias)
    assert_close(out, tout, 1e-10)
    g = rng.standard_normal(out.shape)
    out.backward(gpugrad.tensor(g, device=device))
    tout.backward(torch.tensor(g))
    for ours, theirs in ((q, tq), (k, tk), (v, tv), (bias, tbias)):
        assert_close(ours.grad, theirs.grad, 1e-10)
    with pytest.raises(RuntimeError, match="attn_mask dtype to be bool or float or to match query dtype"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=bias.float())
