"""gpugrad/nn/utils: gradient clipping against torch (on the GPU: the
multi-tensor kernels of kernels/foreach.cu, a launch for the partial norms and
one that combines them and scales, no host sync)."""

import math

import numpy
import pytest
import torch
from conftest import EMULATED, assert_close, launch_counter, to_torch

import gpugrad

SHAPES = [(70000,), (3, 5), (7,), (40, 30)]


def _params(rng, device, dtype="float64", shapes=SHAPES, scale=1.0):
    """Parameters with random gradients, gpugrad's on ``device`` and torch's twins."""
    ours, theirs = [], []
    for shape in shapes:
        p = gpugrad.zeros(shape, dtype=getattr(gpugrad, dtype), device=device, requires_grad=True)
        tp = torch.zeros(shape, dtype=getattr(torch, dtype), requires_grad=True)
        grad = (rng.standard_normal(shape) * scale).astype(dtype)
        p.grad, tp.grad = gpugrad.tensor(grad, device=device), torch.tensor(grad)
        ours.append(p)
        theirs.append(tp)
    return ours, theirs


@pytest.mark.parametrize("norm_type", [2.0, 1, math.inf, -math.inf, 3.0, 0.5, 0], ids=str)
@pytest.mark.parametrize("max_norm", [0.5, 1e6], ids=["clips", "within"])
def test_clip_grad_norm_matches_torch(rng, device, norm_type, max_norm):
    ours, theirs = _params(rng, device)
    stop = launch_counter() if device == "cuda" else None
    total = gpugrad.nn.utils.clip_grad_norm_(ours, max_norm, norm_type)
    if stop is not None and norm_type != 0:
        assert stop() == (2, 0), "the partial norms, then the total and the scaling: two launches"
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type)
    assert total.dtype == gpugrad.float64 and total.shape == ()
    assert_close(total, ttotal, 1e-12)
    for p, tp in zip(ours, theirs):
        assert_close(p.grad, tp.grad, 1e-12, floor=1e-300)


def test_clip_grad_norm_in_float32_and_mixed_dtypes(rng, device):
    """float32 gradients (the kernel accumulates in float) and a float64 one beside them (a launch
    per dtype): torch's total (in the first gradient's dtype) and scaled gradients."""
    ours, theirs = _params(rng, device, "float32")
    more, tmore = _params(rng, device, "float64", shapes=[(9, 2)])
    total = gpugrad.nn.utils.clip_grad_norm_(ours + more, 2.0)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs + tmore, 2.0)
    assert total.dtype == gpugrad.float32
    assert_close(total, ttotal, 1e-5)
    for p, tp in zip(ours + more, theirs + tmore):
        assert_close(p.grad, tp.grad, 1e-5)


def test_get_total_norm_and_clip_grads_with_norm_match_torch(rng, device):
    ours, theirs = _params(rng, device)
    total = gpugrad.nn.utils.get_total_norm([p.grad for p in ours], 2.0)
    ttotal = torch.nn.utils.get_total_norm([p.grad for p in theirs], 2.0)
    assert_close(total, ttotal, 1e-12)
    assert all(p.grad.abs().sum().item() > 0 for p in ours)          # get_total_norm changes nothing
    gpugrad.nn.utils.clip_grads_with_norm_(ours, 1.5, total)
    torch.nn.utils.clip_grads_with_norm_(theirs, 1.5, ttotal)
    for p, tp in zip(ours, theirs):
        assert_close(p.grad, tp.grad, 1e-12)
    assert gpugrad.nn.utils.get_total_norm([]).item() == 0.0


def test_nan_and_inf_gradients_as_torch(rng, device):
    """A nan gradient makes the total nan and every gradient nan; an inf one makes it inf and the
    scale 0 (inf * 0 = nan where the inf was), as torch's."""
    for bad in (math.nan, math.inf):
        ours, theirs = _params(rng, device, shapes=[(5,), (4, 3)])
        for p in (ours[1].grad, theirs[1].grad):
            p[1, 2] = bad
        total = gpugrad.nn.utils.clip_grad_norm_(ours, 1.0)
        ttotal = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        assert_close(total, ttotal, 0)
        for p, tp in zip(ours, theirs):
            assert_close(p.grad, tp.grad, 0)


def test_error_if_nonfinite(rng, device):
    """On the CPU the RuntimeError comes at once; on the GPU it is recorded by the kernel and raised
    at the next synchronising call (here item()), with torch's message; nothing is scaled."""
    ours, theirs = _params(rng, device, shapes=[(5,), (4,)])
    ours[1].grad[2] = math.inf
    theirs[1].grad[2] = math.inf
    before = [p.grad.cpu().numpy().copy() for p in ours]
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        torch.nn.utils.clip_grad_norm_(theirs, 1.0, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="The total norm of order 2.0 for gradients from `parameters` is non-finite"):
        total = gpugrad.nn.utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=True)
        assert device == "cuda"                  # the GPU raises at the next sync
        total.item()
    for p, b in zip(ours, before):
        numpy.testing.assert_array_equal(p.grad.cpu().numpy(), b)
    assert gpugrad.nn.utils.clip_grad_norm_(ours, 1.0, error_if_nonfinite=False).item() == math.inf


def test_clip_grad_value_matches_torch(rng, device):
    ours, theirs = _params(rng, device, scale=3.0)
    for p in (ours[1].grad, theirs[1].grad):
        p[0, 0], p[0, 1], p[1, 0] = math.nan, math.inf, -math.inf
    stop = launch_counter() if device == "cuda" else None
    gpugrad.nn.utils.clip_grad_value_(ours, 1.25)
    if stop is not None:
        assert stop() == (1, 0)
    torch.nn.utils.clip_grad_value_(theirs, 1.25)
    for p, tp in zip(ours, theirs):
        assert_close(p.grad, tp.grad, 0)


def test_foreach_flags_and_an_empty_generator(rng, device):
    for foreach in (True, False):
        ours, theirs = _params(rng, device, shapes=[(3,), (2, 2)])
        total = gpugrad.nn.utils.clip_grad_norm_(ours, 1.0, foreach=foreach)
        assert_close(total, torch.nn.utils.clip_grad_norm_(theirs, 1.0, foreach=foreach), 1e-12)
        gpugrad.nn.utils.clip_grad_value_(ours, 0.1, foreach=foreach)
        torch.nn.utils.clip_grad_value_(theirs, 0.1, foreach=foreach)
        for p, tp in zip(ours, theirs):
            assert_close(p.grad, tp.grad, 1e-12)
    with pytest.warns(UserWarning, match="empty generator"):
        assert gpugrad.nn.utils.clip_grad_norm_((p for p in []), 1.0).item() == 0.0


@pytest.mark.cuda
def test_clip_grad_norm_reads_nothing_back(rng):
    """No host sync in the GPU's clip_grad_norm_ (counted under the emulator)."""
    if not EMULATED:
        pytest.skip("host syncs are counted by the emulator")
    import fakecupy
    ours, _ = _params(rng, "cuda")
    reads = []
    original = fakecupy.ndarray.get
    fakecupy.ndarray.get = lambda self, *a, **k: reads.append(1) or original(self, *a, **k)
    try:
        total = gpugrad.nn.utils.clip_grad_norm_(ours, 1.0)
        fakecupy.flush_launches() if hasattr(fakecupy, "flush_launches") else fakecupy._flush()
    finally:
        fakecupy.ndarray.get = original
    assert not reads
    assert to_torch(total).item() > 0
