"""bfloat16 (ml_dtypes on NumPy, CuPy 14 on the GPU) against torch's bfloat16:
factories, casts, promotion, each op's value and gradient within bfloat16
rounding, the fused losses, printing, save/load and DLPack's limits."""

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import EMULATED, TORCH_CUDA, to_torch

import gpugrad
import gpugrad.nn.functional as F

BF = gpugrad.bfloat16


def _pair(rng, shape, low=-3, high=3, requires_grad=True):
    values = rng.uniform(low, high, shape)
    ours = gpugrad.tensor(values, dtype=BF, requires_grad=requires_grad)
    theirs = torch.tensor(values, dtype=torch.bfloat16, requires_grad=requires_grad)
    return ours, theirs


def _as_float(t):
    if isinstance(t, gpugrad.Tensor):
        return t.detach().float().cpu().numpy().astype(numpy.float64)
    return t.detach().float().cpu().numpy().astype(numpy.float64)


def _ulps_apart(ours, theirs, ulps=2):
    """Equal within ``ulps`` bfloat16 units of the larger magnitude (an op may
    round once more or less than torch's)."""
    a, b = _as_float(ours), _as_float(theirs)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert numpy.array_equal(numpy.isnan(a), numpy.isnan(b))
    finite = numpy.isfinite(b)
    scale = numpy.maximum(numpy.abs(a[finite]), numpy.abs(b[finite])) + 1e-30
    worst = (numpy.abs(a[finite] - b[finite]) / scale).max(initial=0.0)
    assert worst <= ulps * 2.0 ** -7, f"{worst / 2.0 ** -7:.1f} bfloat16 ulps apart\n{a}\n{b}"


def test_factories_casts_and_printing():
    assert gpugrad.zeros(2, 3, dtype=BF).dtype == BF and gpugrad.ones(2, dtype="bfloat16").dtype == BF
    assert gpugrad.arange(4, dtype=BF).tolist() == [0.0, 1.0, 2.0, 3.0]
    x = gpugrad.tensor([1.0, 2.5, -1e30, 3.14159])
    y = x.to(BF)
    assert y.dtype == BF and y.bfloat16().dtype == BF and x.bfloat16().dtype == BF
    assert y.tolist() == torch.tensor([1.0, 2.5, -1e30, 3.14159]).bfloat16().tolist()
    assert y.float().dtype == gpugrad.float32 and y.is_floating_point()
    t = torch.tensor([1.0, 2.5, -3.0]).bfloat16()
    assert repr(gpugrad.tensor([1.0, 2.5, -3.0], dtype=BF)).replace("gpugrad", "torch") == repr(t)
    assert gpugrad.finfo(BF).eps == torch.finfo(torch.bfloat16).eps
    assert gpugrad.finfo(BF).max == torch.finfo(torch.bfloat16).max


def test_promotion_as_torch():
    cases = [("float16", "bfloat16"), ("bfloat16", "float32"), ("bfloat16", "int64"), ("bfloat16", "bool"),
             ("bfloat16", "float64"), ("int32", "bfloat16")]
    for a, b in cases:
        ours = (gpugrad.ones(2, dtype=a) + gpugrad.ones(2, dtype=b)).dtype
        theirs = (torch.ones(2, dtype=getattr(torch, a)) + torch.ones(2, dtype=getattr(torch, b))).dtype
        assert gpugrad.dtypes.dtype_name(ours) == str(theirs).split(".")[1], (a, b)
    x = gpugrad.ones(2, dtype=BF)
    assert (x * 2.5).dtype == BF and (x + 1).dtype == BF and (2 - x).dtype == BF     # Python numbers stay weak
    assert (x * gpugrad.tensor(2.5)).dtype == BF                                        # and 0-d tensors of a category
    assert gpugrad.promote_types(BF, gpugrad.float16) == gpugrad.float32


UNARY = ["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "neg", "abs", "sin", "reciprocal", "square", "rsqrt"]


def _close_gradients(ours, *references):
    """bfloat16 gradients are the rounded forward's outputs put through the
    backward formula: they can move by a few ulps of the largest gradient."""
    a = _as_float(ours)
    for reference in references:
        b = _as_float(reference)
        numpy.testing.assert_allclose(a, b, rtol=2 ** -6, atol=2 ** -6 * numpy.abs(b).max())


def _float64_twin(tx):
    """torch's float64 leaf with the same (bfloat16) values."""
    return tx.detach().double().requires_grad_()


@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_match_torch(rng, name):
    low = 0.1 if name in ("log", "sqrt", "rsqrt", "reciprocal") else -3
    x, tx = _pair(rng, (5, 7), low)
    x64 = _float64_twin(tx)
    out, tout, out64 = getattr(x, name)(), getattr(tx, name)(), getattr(x64, name)()
    assert out.dtype == BF
    _ulps_apart(out, out64, ulps=1)                 # the exact result, rounded once
    _ulps_apart(out, tout)
    g = rng.uniform(-1, 1, (5, 7))
    out.backward(gpugrad.tensor(g, dtype=BF))
    tout.backward(torch.tensor(g, dtype=torch.bfloat16))
    out64.backward(torch.tensor(g, dtype=torch.bfloat16).double())
    assert x.grad.dtype == BF
    _close_gradients(x.grad, tx.grad, x64.grad)


def test_binary_ops_reductions_and_matmul_match_torch(rng):
    x, tx = _pair(rng, (6, 8))
    y, ty = _pair(rng, (6, 8), 0.5, 2)
    w, tw = _pair(rng, (8, 5))
    results = [
        (x + y, tx + ty), (x - 2.5 * y, tx - 2.5 * ty), (x * y, tx * ty), (x / y, tx / ty),
        (x ** 2, tx ** 2), (x.sum(1), tx.sum(1)), (x.mean(0), tx.mean(0)), (x.amax(1), tx.amax(1)),
        (x @ w, tx @ tw), (F.linear(x, w.T), TF.linear(tx, tw.T)), (F.gelu(x), TF.gelu(tx)),
        (F.layer_norm(x, (8,)), TF.layer_norm(tx, (8,))),
    ]
    total, ttotal = 0, 0
    for ours, theirs in results:
        assert ours.dtype == BF
        _ulps_apart(ours, theirs, ulps=4)
        total = total + ours.float().sum()
        ttotal = ttotal + theirs.float().sum()
    total.backward()
    ttotal.backward()
    for ours, theirs in [(x, tx), (y, ty), (w, tw)]:
        assert ours.grad.dtype == BF
        _close_gradients(ours.grad, theirs.grad)


@pytest.mark.parametrize("op", ["cross_entropy", "logsumexp", "softmax", "log_softmax"])
def test_fused_losses_on_bfloat16_logits_match_torch(rng, op):
    """The NumPy twin accumulates in float32 and rounds once: the forward is
    the exact result rounded (torch's bfloat16 kernels are within 2 ulps of
    it), the gradient within bfloat16 rounding of torch's and of float64's."""
    x, tx = _pair(rng, (9, 33), -6, 6)
    x64 = _float64_twin(tx)
    target = rng.integers(0, 33, 9)
    outputs = []
    for lib, functional, a in ((gpugrad, F, x), (torch, TF, tx), (torch, TF, x64)):
        if op == "cross_entropy":
            t = gpugrad.tensor(target) if lib is gpugrad else torch.tensor(target)
            outputs.append(functional.cross_entropy(a, t, label_smoothing=0.1))
        else:
            outputs.append(getattr(lib, op)(a, 1))
    out, tout, out64 = outputs
    assert out.dtype == BF
    _ulps_apart(out, out64, ulps=1)
    _ulps_apart(out, tout, ulps=2)
    g = rng.uniform(-1, 1, tuple(out.shape))
    out.backward(gpugrad.tensor(g, dtype=BF))
    tout.backward(torch.tensor(g, dtype=torch.bfloat16))
    out64.backward(torch.tensor(g, dtype=torch.bfloat16).double())
    _close_gradients(x.grad, tx.grad, x64.grad)


def test_save_load_and_dlpack(tmp_path):
    x = gpugrad.tensor([1.5, -2.25, 1e-3], dtype=BF)
    gpugrad.save({"x": x}, tmp_path / "bf.pt")
    back = gpugrad.load(tmp_path / "bf.pt")["x"]
    assert back.dtype == BF and back.tolist() == x.tolist()
    with pytest.raises(BufferError, match="bfloat16 tensor on the CPU cannot be exported through DLPack"):
        torch.from_dlpack(x)
    with pytest.raises(RuntimeError, match="On the CPU bfloat16 has no DLPack exchange"):
        gpugrad.from_dlpack(torch.ones(2, dtype=torch.bfloat16))
    assert to_torch(x.float()).dtype == torch.float32


@pytest.mark.cuda
def test_bfloat16_on_the_gpu_matches_torch_cuda(rng):
    values = rng.uniform(-6, 6, (64, 1000))
    x = gpugrad.tensor(values, dtype=BF, device="cuda", requires_grad=True)
    tx = torch.tensor(values, dtype=torch.bfloat16, device=TORCH_CUDA, requires_grad=True)
    target = rng.integers(0, 1000, 64)
    out = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"))
    tout = TF.cross_entropy(tx, torch.tensor(target, device=TORCH_CUDA))
    _ulps_apart(out, tout)
    out.backward()
    tout.backward()
    numpy.testing.assert_allclose(_as_float(x.grad), _as_float(tx.grad), rtol=2 ** -6, atol=2 ** -12)
    if not EMULATED:                                      # (the emulator's arrays carry no DLPack capsule)
        assert torch.from_dlpack(x.detach()).dtype == torch.bfloat16    # CuPy's DLPack carries bfloat16
