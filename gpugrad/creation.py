"""Factories: tensor, zeros, ones, arange, randn, ... with torch's signatures."""

import numpy

from gpugrad import backend, dtypes, random
from gpugrad.tensor import Tensor, _shape_arg


def _new(array, requires_grad):
    t = Tensor._make(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _place(dtype, device):
    dev = backend.as_device(device)
    return backend.xp_for(dev), dev, dtypes.as_dtype(dtype)


def _infer_dtype(data):
    """torch.tensor's inference: Python floats -> default float, ints -> int64."""
    array = numpy.asarray(data)
    if array.dtype.kind == "f" and not isinstance(data, (numpy.ndarray, numpy.generic)):
        return dtypes.get_default_dtype()
    if array.dtype.kind in "iu" and not isinstance(data, (numpy.ndarray, numpy.generic)):
        return dtypes.int64
    if array.dtype.kind == "O":
        raise TypeError("could not infer a dtype: nested sequences must hold numbers or tensors "
                        "of equal length")
    return array.dtype


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (numbers, nested sequences,
    NumPy/CuPy arrays or tensors)."""
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in _flat(data)):
        data = [d.tolist() if isinstance(d, Tensor) else d for d in data]
    if backend.is_cupy_array(data):
        source_dtype = data.dtype
        dev = backend.as_device(device) if device is not None else backend.device_of(data)
    else:
        source_dtype = _infer_dtype(data)
        dev = backend.as_device(device)
    dtype = dtypes.as_dtype(dtype or source_dtype)
    with backend.device_guard(dev):
        array = backend.xp_for(dev).array(backend.to_device(data, dev) if backend.is_cupy_array(data)
                                          else numpy.asarray(data), dtype=dtype, copy=True)
    return _new(array, requires_grad)


def _flat(seq):
    for item in seq:
        if isinstance(item, (list, tuple)):
            yield from _flat(item)
        else:
            yield item


def as_tensor(data, dtype=None, device=None):
    """Like tensor(), but shares memory with a NumPy/CuPy array or tensor when
    dtype and device already match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device or dtype) else data
    if isinstance(data, numpy.ndarray) or backend.is_cupy_array(data):
        dev = backend.device_of(data) if device is None else backend.as_device(device)
        array = backend.to_device(data, dev)
        if dtype is not None:
            array = array.astype(dtypes.as_dtype(dtype), copy=False)
        dtypes.as_dtype(array.dtype)
        return Tensor._make(array)
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array):
    """A CPU tensor sharing memory with a NumPy array."""
    if not isinstance(array, numpy.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    dtypes.as_dtype(array.dtype)
    return Tensor._make(array)


def from_dlpack(obj):
    """Zero-copy import of a DLPack-capable tensor (torch, cupy, numpy, jax ...)."""
    if isinstance(obj, Tensor):
        return obj
    device_type, device_id = obj.__dlpack_device__()
    if int(device_type) == 1:          # kDLCPU
        return Tensor._make(numpy.from_dlpack(obj))
    if int(device_type) == 2:          # kDLCUDA
        cp = backend.cupy_module()
        with cp.cuda.Device(int(device_id)):
            return Tensor._make(cp.from_dlpack(obj))
    raise RuntimeError(f"from_dlpack: unsupported device type {device_type}")


def _filled(shape, fill, dtype, device, requires_grad):
    xp, dev, dtype = _place(dtype or dtypes.get_default_dtype(), device)
    with backend.device_guard(dev):
        if fill is None:
            array = xp.empty(shape, dtype=dtype)
        else:
            array = xp.full(shape, fill, dtype=dtype)
    return _new(array, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False):
    return _filled(_shape_arg(size), 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False):
    return _filled(_shape_arg(size), 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False):
    return _filled(_shape_arg(size), None, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = dtypes.result_type(fill_value)
    return _filled(_shape_arg((size,)), fill_value, dtype, device, requires_grad)


def _like(t, dtype, device):
    return (t.dtype if dtype is None else dtype), (t.device if device is None else device)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    return _filled(t.shape, 0, *_like(t, dtype, device), requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    return _filled(t.shape, 1, *_like(t, dtype, device), requires_grad)


def empty_like(t, dtype=None, device=None, requires_grad=False):
    return _filled(t.shape, None, *_like(t, dtype, device), requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    return _filled(t.shape, fill_value, *_like(t, dtype, device), requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = dtypes.result_type(start, end, step)
    xp, dev, dtype = _place(dtype, device)
    with backend.device_guard(dev):
        array = xp.arange(start, end, step, dtype=numpy.float64 if dtype.kind == "f" else dtype)
    return _new(array.astype(dtype, copy=False), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    xp, dev, dtype = _place(dtype or dtypes.get_default_dtype(), device)
    with backend.device_guard(dev):
        array = xp.linspace(start, end, steps, dtype=numpy.float64).astype(dtype, copy=False)
    return _new(array, requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    xp, dev, dtype = _place(dtype or dtypes.get_default_dtype(), device)
    with backend.device_guard(dev):
        array = xp.eye(n, n if m is None else m, dtype=dtype)
    return _new(array, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1)."""
    xp, dev, dtype = _place(dtype or dtypes.get_default_dtype(), device)
    with backend.device_guard(dev):
        array = random.uniform_array(xp, _shape_arg(size), 0.0, 1.0, dtype)
    return _new(array, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False):
    """Standard normal samples."""
    xp, dev, dtype = _place(dtype or dtypes.get_default_dtype(), device)
    with backend.device_guard(dev):
        array = random.normal_array(xp, _shape_arg(size), 0.0, 1.0, dtype)
    return _new(array, requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None):
    """Integers in [low, high): ``randint(high, size)`` or ``randint(low, high, size)``."""
    if size is None:
        low, high, size = 0, low, high
    xp, dev, dtype = _place(dtype or dtypes.int64, device)
    with backend.device_guard(dev):
        array = random.randint_array(xp, low, high, tuple(size), dtype)
    return Tensor._make(array)


def randperm(n, dtype=None, device=None):
    xp, dev, dtype = _place(dtype or dtypes.int64, device)
    with backend.device_guard(dev):
        return Tensor._make(random.permutation_array(xp, n).astype(dtype, copy=False))


def rand_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return rand(*t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return randn(*t.shape, dtype=dtype, device=device, requires_grad=requires_grad)
