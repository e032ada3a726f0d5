"""Shared fixtures: devices (cuda auto-skipped without a GPU), fresh random
inputs each run (the seed is printed on failure; GPUGRAD_TEST_SEED replays
it) and comparison with torch.

Under the CUDA emulator (its ``autoinstall`` folder on PYTHONPATH, ``make
test-emulated``; tests/emulator.py says where the emulator is) gpugrad's "cuda" device is simulated on the CPU with
the real kernels, and the torch references the tests build on "cuda" are
built on the CPU instead (``torch_device``)."""

import os
import sys
import zlib

import numpy
import pytest

import gpugrad

torch = pytest.importorskip("torch")

EMULATED = bool(getattr(sys.modules.get("cupy"), "__cuemu__", False))
CUDA = gpugrad.cuda.is_available() and (torch.cuda.is_available() or EMULATED)
needs_torch_cuda = pytest.mark.skipif(EMULATED, reason="the reference needs torch's own CUDA (emulated run)")


def torch_device(device):
    """Where a test's torch reference lives for a gpugrad tensor on ``device``."""
    return "cpu" if EMULATED and str(device).startswith("cuda") else device


TORCH_CUDA = torch_device("cuda")
if EMULATED:
    import cupy

    class _RandomState(cupy.random.RandomState):
        """The emulator's RandomState takes NumPy's 32-bit seeds; CuPy's takes 64-bit ones."""

        def __init__(self, seed=None):
            super().__init__(None if seed is None else int(seed) % 2**32)

    def _as_strided(x, shape=None, strides=None):
        """cupy.lib.stride_tricks.as_strided returns a device array; the emulator's gave a host one."""
        return numpy.lib.stride_tricks.as_strided(x, shape, strides, subok=True)

    cupy.random.RandomState = _RandomState
    cupy.lib = type(sys)("cupy.lib")
    cupy.lib.stride_tricks = type(sys)("cupy.lib.stride_tricks")
    cupy.lib.stride_tricks.as_strided = _as_strided
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
FLOAT_TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


def pytest_collection_modifyitems(config, items):
    if CUDA:
        return
    skip = pytest.mark.skip(reason="no usable CUDA GPU (needs cupy, a GPU and torch with CUDA)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


_SEED = int(os.environ.get("GPUGRAD_TEST_SEED", int.from_bytes(os.urandom(4), "little")))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed again under a failing run (`pytest -q` prints no header)."""
    if exitstatus != 0:
        terminalreporter.write_line(f"gpugrad test seed: {_SEED} (replay with GPUGRAD_TEST_SEED={_SEED})")


def pytest_report_header(config):
    return (f"gpugrad test seed: {_SEED} (replay with GPUGRAD_TEST_SEED={_SEED}); cuda: {CUDA}"
            + (" (emulated on the CPU; torch's references on the CPU)" if EMULATED else ""))


@pytest.fixture
def rng(request):
    """A NumPy generator seeded afresh for each test (the seed is in the header)."""
    seed = (_SEED + zlib.crc32(request.node.nodeid.encode())) % 2**32
    gpugrad.manual_seed(seed)
    return numpy.random.default_rng(seed)


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def to_torch(t, device=None, requires_grad=None):
    """A torch copy of a gpugrad tensor (or an array) on the matching device."""
    data = t.detach().to("cpu").array if isinstance(t, gpugrad.Tensor) else numpy.asarray(t)
    out = torch.from_numpy(numpy.array(data, copy=True))
    if device is None and isinstance(t, gpugrad.Tensor):
        device = t.device.type
    if torch_device(device) == "cuda":
        out = out.cuda()
    if requires_grad:
        out.requires_grad_(True)
    return out


def launch_counter():
    """Under the emulator, a function giving (kernel launches, CuPy array
    operations) since this call (copies to the device, cupy.asarray, are not
    counted); None on a GPU or the CPU."""
    if not EMULATED:
        return None
    import fakecupy  # only under the emulator (its folder is on sys.path there)
    calls = {"n": 0}
    original, launches = fakecupy._call, fakecupy.STATS["launches"]

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)
    fakecupy._call = counted

    def stop():
        fakecupy._call = original
        return fakecupy.STATS["launches"] - launches, calls["n"]
    return stop


def to_numpy(value):
    if isinstance(value, gpugrad.Tensor):
        return value.detach().to("cpu").array.astype(numpy.float64)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy(force=True)
    return numpy.asarray(value, dtype=numpy.float64)


def relative_error(actual, expected, floor=0.0):
    """||actual - expected|| / max(||expected||, floor) over finite entries;
    inf and nan must sit in the same places."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"shape {a.shape} != {e.shape}"
    same_nonfinite = (numpy.isnan(a) == numpy.isnan(e)).all() and (
        a[numpy.isinf(a)] == e[numpy.isinf(a)]).all() and (numpy.isinf(a) == numpy.isinf(e)).all()
    assert same_nonfinite, f"non-finite values differ:\n{a}\n{e}"
    finite = numpy.isfinite(e)
    denom = max(numpy.linalg.norm(e[finite]), floor)
    diff = numpy.linalg.norm(a[finite] - e[finite])
    return diff / denom if denom > 0 else diff


def assert_close(actual, expected, tol, floor=0.0):
    err = relative_error(actual, expected, floor)
    assert err <= tol, f"relative error {err:.3e} > {tol:.1e}"


def make_pair(rng, shape, dtype="float64", device="cpu", low=-2.0, high=2.0, requires_grad=True):
    """The same random values as a gpugrad tensor and a torch tensor, both leaves."""
    values = rng.uniform(low, high, size=shape).astype(dtype)
    ours = gpugrad.tensor(values, device=device, requires_grad=requires_grad)
    theirs = to_torch(ours, requires_grad=requires_grad)
    return ours, theirs


def assert_forward_backward(rng, out, tout, pairs, tol):
    """The forward and backward check shared by the op tests: ``out`` (gpugrad)
    equals ``tout`` (torch) within ``tol``, then both are back-propagated with
    the same random upstream gradient, and each (gpugrad leaf, torch leaf) in
    ``pairs`` gets the same gradient, of its own shape and dtype."""
    assert tuple(out.shape) == tuple(tout.shape), f"shape {out.shape} != {tuple(tout.shape)}"
    assert_close(out, tout, tol)
    upstream = rng.standard_normal(out.shape).astype(out.dtype)
    out.backward(gpugrad.tensor(upstream, device=out.device))
    tout.backward(to_torch(upstream, device=out.device.type))
    # a gradient summed over broadcast dims may cancel: measure the error against
    # the size of the terms summed (about |upstream| * |other operand| ~ 1 here, so
    # their norm is about sqrt(size); 1e-3 of it let float32 rounding of a sum of 6
    # terms that nearly cancel fail the 1e-5 tolerance)
    floor = numpy.sqrt(upstream.size)
    for ours, theirs in pairs:
        assert ours.grad is not None and ours.grad.shape == ours.shape and ours.grad.dtype == ours.dtype
        assert_close(ours.grad, theirs.grad, tol, floor)


def module_pair(name, device, *args, **kwargs):
    """gpugrad's nn.<name>(*args, **kwargs) and torch's, in float64, torch's holding
    gpugrad's parameters (the state dicts' names must be the same)."""
    ours = getattr(gpugrad.nn, name)(*args, **kwargs).double().to(device)
    theirs = getattr(torch.nn, name)(*args, **kwargs).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: to_torch(v, "cpu") for k, v in ours.state_dict().items()})
    return ours, theirs.to(torch_device(device))


def _outputs(value):
    values = value if isinstance(value, (tuple, list)) else (value,)
    return [v for v in values if hasattr(v, "dtype") and getattr(v, "dtype", None) is not None]


def compare_with_torch(rng, ours, theirs, arrays, device="cpu", tol=1e-10, double=True, grad_tol=None):
    """``ours(*gpugrad tensors)`` against ``theirs(*torch tensors)`` made of the
    same ``arrays``: the outputs' values, then, for the floating inputs, the
    gradients of a random weighting of the floating outputs, and (``double``)
    the second derivatives of a random weighting of those gradients.
    Returns the gpugrad and torch results."""
    grad_tol = tol if grad_tol is None else grad_tol
    g_inputs, t_inputs = [], []
    for a in arrays:
        a = numpy.asarray(a)
        floating = a.dtype.kind == "f"
        g_inputs.append(gpugrad.tensor(a, device=device, requires_grad=floating))
        t_inputs.append(to_torch(g_inputs[-1], requires_grad=floating))
    out, tout = ours(*g_inputs), theirs(*t_inputs)
    g_outs, t_outs = _outputs(out), _outputs(tout)
    assert len(g_outs) == len(t_outs)
    for a, b in zip(g_outs, t_outs):
        assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} != {tuple(b.shape)}"
        assert str(a.dtype).split(".")[-1] == str(b.dtype).split(".")[-1], f"dtype {a.dtype} != {b.dtype}"
        if a.dtype.kind == "f":
            assert_close(a, b, tol, floor=1e-300)
        else:
            assert numpy.array_equal(to_numpy(a), to_numpy(b)), f"{to_numpy(a)} != {to_numpy(b)}"
    pairs = [(g, t) for g, t in zip(g_outs, t_outs) if g.dtype.kind == "f" and g.requires_grad]
    leaves = [(g, t) for g, t in zip(g_inputs, t_inputs) if g.requires_grad]
    if not pairs or not leaves:
        return out, tout
    weights = [rng.standard_normal(tuple(g.shape)) for g, _ in pairs]
    loss = sum((g * gpugrad.tensor(w, device=device)).sum() for (g, _), w in zip(pairs, weights))
    tloss = sum((t * to_torch(w, device=device)).sum() for (_, t), w in zip(pairs, weights))
    grads = gpugrad.autograd.grad(loss, [g for g, _ in leaves], create_graph=double, allow_unused=True)
    tgrads = torch.autograd.grad(tloss, [t for _, t in leaves], create_graph=double, allow_unused=True)
    for a, b in zip(grads, tgrads):
        assert (a is None) == (b is None) or (a is not None and not to_numpy(a).any()) or (
            b is not None and not to_numpy(b).any())
        if a is not None and b is not None:
            assert_close(a, b, grad_tol, floor=1e-300)
    if not double:
        return out, tout
    used = [(a, b) for a, b in zip(grads, tgrads) if a is not None and b is not None and b.requires_grad]
    if not used:
        return out, tout
    vs = [rng.standard_normal(tuple(a.shape)) for a, _ in used]
    tsecond = torch.autograd.grad(sum((b * to_torch(v, device=device)).sum() for (_, b), v in zip(used, vs)),
                                  [t for _, t in leaves], allow_unused=True)
    # a gradient that does not depend on the inputs (gpugrad records no graph for it) has a zero derivative
    live = [(a, v) for (a, _), v in zip(used, vs) if a.requires_grad]
    second = gpugrad.autograd.grad(sum((a * gpugrad.tensor(v, device=device)).sum() for a, v in live),
                                   [g for g, _ in leaves], allow_unused=True) if live else [None] * len(leaves)
    for a, b in zip(second, tsecond):
        if a is not None and b is not None:
            assert_close(a, b, grad_tol * 10, floor=1e-300)
        else:
            assert (a is None or not to_numpy(a).any()) and (b is None or not to_numpy(b).any())
    return out, tout
