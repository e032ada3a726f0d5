"""gpugrad/backend.py: devices, the default device, the array-module switch."""

import os
import subprocess
import sys

import numpy
import pytest

import gpugrad


def test_devices():
    assert gpugrad.device("cuda:1") == gpugrad.device("cuda", 1)
    assert str(gpugrad.device("cuda", 2)) == "cuda:2" and repr(gpugrad.device("cpu")) == "device(type='cpu')"
    with pytest.raises(ValueError, match="unknown device type"):
        gpugrad.device("tpu")
    if not gpugrad.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            gpugrad.zeros(2, device="cuda")
        assert gpugrad.cuda.device_count() == 0


def test_default_device_from_environment():
    code = "import gpugrad; print(gpugrad.zeros(1).device)"
    env = dict(os.environ, GPUGRAD_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "cpu"
    env["GPUGRAD_DEVICE"] = "cuda"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if gpugrad.cuda.is_available():
        assert out.stdout.strip() == "cuda:0"
    else:
        assert "CUDA is not available" in out.stderr


def test_xp_for_asks_the_array_itself():
    # a CuPy array's .data is its memory pointer: xp_for must never look there
    x = gpugrad.ones(3)
    assert gpugrad.backend.xp_for(x.array) is numpy and x.xp is numpy
    assert gpugrad.backend.xp_for_device(gpugrad.device("cpu")) is numpy
    assert gpugrad.backend.is_array(x.array) and not gpugrad.backend.is_array(x)


def test_device_errors_name_the_problem():
    with pytest.raises(ValueError, match="invalid device index"):
        gpugrad.device("cuda:x")
    with pytest.raises(ValueError, match="cpu device has no index 1"):
        gpugrad.device("cpu", 1)
    with pytest.raises(TypeError, match="expects a string, an int or a device"):
        gpugrad.device(1.5)
    assert gpugrad.device("cpu") == "cpu" and hash(gpugrad.device("cpu")) == hash(gpugrad.device("cpu"))


def test_small_matmuls_run_on_one_blas_thread_and_restore_the_count(monkeypatch):
    """A product in the SMALL_MATMUL_FLOPS band runs with OpenBLAS on one
    thread; the count the process had is restored after, also on error."""
    from gpugrad import backend
    blas = backend._blas_controller()
    if blas is None:
        pytest.skip("threadpoolctl cannot see NumPy's BLAS here")
    seen = []
    original = numpy.matmul

    def spy(a, b):
        seen.append(blas.get_num_threads())
        return original(a, b)
    before = blas.get_num_threads()
    monkeypatch.setattr(backend.numpy, "matmul", spy)
    rng = numpy.random.default_rng(0)
    small = rng.standard_normal((64, 256)), rng.standard_normal((256, 256))       # 8.4 M flops: in the band
    large = rng.standard_normal((512, 512)), rng.standard_normal((512, 512))      # 268 M flops: above it
    assert numpy.allclose(backend.matmul(*small), small[0] @ small[1])
    backend.matmul(*large)
    assert seen == [1, before]
    assert blas.get_num_threads() == before
    with pytest.raises(ValueError):
        backend.matmul(numpy.ones((64, 256)), numpy.ones((255, 256)))
    assert blas.get_num_threads() == before
