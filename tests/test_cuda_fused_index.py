"""gpugrad/cuda/fused.py, the kernel-level index of the fused launchers: the
names and signatures that code driving the kernels directly relies on (the
emulator's run.py and memtraffic_gpugrad.py among it), and, on a (simulated)
GPU, each entry point against float64 NumPy; and a slice of the emulator's
kernel matrix through scripts/dev_cuemu_run.py, which runs the emulator's
run.py on this checkout."""

import inspect
import os
import pathlib
import re
import shutil
import subprocess
import sys

import emulator
import numpy
import pytest
from conftest import assert_close

from gpugrad import backend
from gpugrad.cuda import errors, fused, launch
from gpugrad.ops.fused import cross_entropy, indices, logsumexp

SIGNATURES = {
    "row_layout": "x dim",
    "layout_of": "x dim",
    "contiguous_layout": "shape dim",
    "launch_shape": "layout itemsize device_id split_long_rows",
    "lse_rows": "x layout want_result",
    "apply_row_stats": "x layout m ls mode grad grad_stride",
    "softmax_rows": "x layout log",
    "softmax_rows_backward": "y y_layout grad grad_layout log",
    "cross_entropy_rows": "x layout target weight weight_sum ignore_index smoothing reduction save_stats with_grad "
                          "loss_in_acc",
    "cross_entropy_rows_backward": "x layout target weight weight_sum ignore_index smoothing m ls grad grad_stride "
                                   "denominator",
    "check_index_range": "index bound kind ignore_index low",
    "logsumexp_forward": "x",
    "logsumexp_backward": "x m ls grad",
    "softmax_forward": "x log",
    "softmax_backward": "y grad log",
    "cross_entropy_forward": "x target weight ignore_index smoothing",
    "cross_entropy_backward": "x target weight ignore_index smoothing m ls grad",
    "check_targets": "target cols ignore_index",
}


def test_each_name_of_the_index_is_there_with_its_signature():
    for name, parameters in SIGNATURES.items():
        function = getattr(fused, name)
        assert callable(function), name
        assert list(inspect.signature(function).parameters) == parameters.split(), (
            f"fused.{name}{inspect.signature(function)}")
    assert fused.GRAD_IN_FORWARD_MIN_COLS == cross_entropy.GRAD_IN_FORWARD_MIN_COLS > 1
    assert fused.REDUCTIONS == {"none": 0, "sum": 1, "mean": 2}
    assert fused.RowLayout is launch.RowLayout and fused.LaunchShape is launch.LaunchShape


def test_the_index_holds_the_launchers_themselves():
    assert fused.lse_rows is logsumexp.launch_statistics
    assert fused.apply_row_stats is logsumexp.launch_apply
    assert fused.check_index_range is indices.check_cuda
    assert fused.row_layout is launch.row_layout and fused.layout_of is launch.layout_of


def _lse(x):
    m = x.max(axis=1, keepdims=True)
    return (m + numpy.log(numpy.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 7), (3, 1025)])
def test_each_entry_point_on_the_gpu(rng, dtype, shape):
    cp = backend.cupy_module()
    tol = 1e-5 if dtype == "float32" else 1e-10
    n, c = shape
    host = rng.uniform(-4, 4, shape)
    x = cp.asarray(host.astype(dtype))
    g_rows = rng.standard_normal(n)
    g_full = rng.standard_normal(shape)
    lse = _lse(host)
    p = numpy.exp(host - lse[:, None])

    m, ls = fused.logsumexp_forward(x)
    assert_close(cp.asnumpy(m + ls), lse, tol)
    layout = fused.row_layout(x, 1)
    m2, ls2, out = fused.lse_rows(x, layout)
    assert_close(cp.asnumpy(out), lse, tol)
    expected = g_rows[:, None] * p
    assert_close(cp.asnumpy(fused.logsumexp_backward(x, m, ls, cp.asarray(g_rows.astype(dtype)))), expected, tol)
    assert_close(cp.asnumpy(fused.apply_row_stats(x, layout, m2, ls2, "lse_grad", cp.asarray(g_rows.astype(dtype)),
                                                  1)), expected, tol)

    for log in (False, True):
        y_ref = numpy.log(p) if log else p
        y = fused.softmax_forward(x, log)
        assert_close(cp.asnumpy(y), y_ref, tol)
        assert_close(cp.asnumpy(fused.softmax_rows(x, layout, log)), y_ref, tol)
        g = cp.asarray(g_full.astype(dtype))
        yh = cp.asnumpy(y).astype("float64")
        grad_ref = (g_full - numpy.exp(yh) * g_full.sum(1, keepdims=True) if log
                    else yh * (g_full - (g_full * yh).sum(1, keepdims=True)))
        assert_close(cp.asnumpy(fused.softmax_backward(y, g, log)), grad_ref, tol)
        assert_close(cp.asnumpy(fused.softmax_rows_backward(y, fused.row_layout(y, 1), g, fused.row_layout(g, 1),
                                                            log)), grad_ref, tol)

    target = rng.integers(0, c, n)
    target[0] = -100
    weight = rng.uniform(0.5, 2.0, c)
    used = target != -100
    w_t = numpy.where(used, weight[numpy.where(used, target, 0)], 0.0)
    loss_ref = w_t * (lse - host[numpy.arange(n), numpy.where(used, target, 0)])
    one_hot = numpy.zeros(shape)
    one_hot[numpy.arange(n)[used], target[used]] = 1
    grad_ref = w_t[:, None] * (p - one_hot) * g_rows[:, None]
    t = cp.asarray(target)
    w = cp.asarray(weight.astype(dtype))
    loss, row_weight, m, ls = fused.cross_entropy_forward(x, t, w, -100, 0.0)
    assert_close(cp.asnumpy(loss), loss_ref, tol)
    assert_close(cp.asnumpy(row_weight), w_t, tol)
    out = fused.cross_entropy_backward(x, t, w, -100, 0.0, m, ls, cp.asarray(g_rows.astype(dtype)))
    assert_close(cp.asnumpy(out), grad_ref, tol)
    result = fused.cross_entropy_rows(x, layout, t, w, w.sum(keepdims=True), -100, 0.0, "sum", with_grad=True)
    assert_close(float(cp.asnumpy(result["loss"])), loss_ref.sum(), tol)
    dx = fused.cross_entropy_rows_backward(x, layout, t, w, w.sum(keepdims=True), -100, 0.0, result["m"],
                                           result["ls"], cp.asarray(g_rows.astype(dtype)), 1, None)
    assert_close(cp.asnumpy(dx), grad_ref, tol)

    fused.check_targets(cp.asarray(numpy.array([0, c, -100])), c, -100)
    cp.cuda.Device(0).synchronize()
    with pytest.raises(IndexError, match=f"Target {c} is out of bounds"):
        errors.raise_recorded(0)

    # positions of x[index] along a dim of size c: [-c, c)
    fused.check_index_range(cp.asarray(numpy.array([-c, c - 1])), c, errors.POSITION, None, -c)
    cp.cuda.Device(0).synchronize()
    errors.raise_recorded(0)
    fused.check_index_range(cp.asarray(numpy.array([0, -c - 1, 1])), c, errors.POSITION, None, -c)
    cp.cuda.Device(0).synchronize()
    with pytest.raises(IndexError, match=f"index {-c - 1} is out of bounds for a dimension of size {c}"):
        errors.raise_recorded(0)


# one case or more of each kind of the matrix: every kernel, both index dtypes, an error word
MATRIX_SLICE = (r"^(lse_fwd|lse_bwd|softmax_fwd|softmax_bwd|ce) float32 N=3 C=(33|4097) .*(values=normal|glayout)"
                r"|^check_targets int(32|64) N=17 C=33 |^ce_bad_target float32 N=17 C=1000 ")


def test_the_emulators_kernel_matrix_runs_on_the_index():
    """scripts/dev_cuemu_run.py (``make kernels-emulated``): the emulator's own
    cases, launched through this index, pass (56 of its 7,354 here)."""
    if not (emulator.CUEMU / "run.py").is_file() or shutil.which("g++") is None:
        pytest.skip(f"the CUDA emulator ({emulator.CUEMU}; GPUGRAD_CUEMU) or g++ is not available")
    tool = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "dev_cuemu_run.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}   # not under `make test-emulated`'s stand-in
    run = subprocess.run([sys.executable, str(tool), "--quick", "--jobs", "1", "--filter", MATRIX_SLICE],
                         capture_output=True, text=True, timeout=600, env=env)
    summary = re.search(r"(\d+) passed, (\d+) failed", run.stdout)
    assert summary and run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert summary.groups() == ("56", "0"), run.stdout[-4000:]
