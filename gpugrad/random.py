"""Random number generation on both devices, seeded together by manual_seed."""

import numpy

from gpugrad import backend, dtypes

_cpu_generator = numpy.random.default_rng()


def manual_seed(seed):
    """Seed the CPU (NumPy) and, where CUDA is usable, the CuPy generators."""
    global _cpu_generator
    seed = int(seed)
    _cpu_generator = numpy.random.default_rng(seed)
    if backend.cuda_available():
        cp = backend.cupy_module()
        for device_id in range(cp.cuda.runtime.getDeviceCount()):
            with cp.cuda.Device(device_id):
                cp.random.seed(seed)
    return seed


seed = manual_seed


def _generator(xp):
    return _cpu_generator if xp is numpy else xp.random


def _float_dtype(dtype):
    return dtypes.float32 if dtype == dtypes.float16 else dtype


def uniform_array(xp, shape, low, high, dtype):
    """Uniform samples in [low, high) of ``dtype`` (drawn in float32 for half)."""
    gen = _generator(xp)
    if xp is numpy:
        out = gen.random(shape, dtype=_float_dtype(dtype))
    else:
        out = gen.random_sample(shape, dtype=_float_dtype(dtype))
    if low != 0 or high != 1:
        out = out * (high - low) + low
    return out.astype(dtype, copy=False)


def normal_array(xp, shape, mean, std, dtype):
    gen = _generator(xp)
    out = gen.standard_normal(shape, dtype=_float_dtype(dtype))
    if mean != 0 or std != 1:
        out = out * std + mean
    return out.astype(dtype, copy=False)


def randint_array(xp, low, high, shape, dtype):
    gen = _generator(xp)
    if xp is numpy:
        return gen.integers(low, high, size=shape, dtype=dtype)
    return gen.randint(low, high, size=shape, dtype=dtype)


def permutation_array(xp, n):
    return _generator(xp).permutation(n).astype(dtypes.int64, copy=False)
