"""Factories: tensor, zeros, ones, full, arange, linspace, eye, ... with
torch's signatures (a size as ``zeros(2, 3)``, ``zeros((2, 3))`` or
``zeros(size=(2, 3))``; ``dtype``, ``device`` and ``requires_grad`` keywords).
Random factories live in ``gpugrad/random.py``."""

import math

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.dims import size_arg
from gpugrad.tensor import Tensor


def _new(array, requires_grad):
    t = Tensor._make(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _infer_dtype(data):
    """torch.tensor's inference: Python floats -> default float, ints -> int64, bools -> bool."""
    if isinstance(data, (numpy.ndarray, numpy.generic)):
        return data.dtype
    array = numpy.asarray(data)
    if array.dtype.kind == "O":
        raise TypeError("could not infer a dtype: nested sequences must hold numbers or tensors "
                        "of equal length")
    if array.dtype.kind == "f":
        return dtypes.get_default_dtype()
    if array.dtype.kind in "iu":
        return dtypes.int64
    if array.dtype.kind == "b":
        return dtypes.bool_
    if array.dtype.kind == "c":
        raise TypeError("gpugrad has no complex dtypes")
    return array.dtype


def _flatten_tensors(data):
    """Nested sequences holding tensors, with the tensors as nested lists."""
    if isinstance(data, Tensor):
        return data.tolist()
    if isinstance(data, (list, tuple)):
        return [_flatten_tensors(d) for d in data]
    return data


def _has_tensor(data):
    if isinstance(data, Tensor):
        return True
    return isinstance(data, (list, tuple)) and any(_has_tensor(d) for d in data)


def tensor(data, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor holding a copy of ``data`` (numbers, nested sequences,
    NumPy/CuPy arrays or tensors).  Python floats give the default float
    dtype, ints int64, bools bool."""
    if isinstance(data, Tensor):
        source = data.array
        source_dtype = source.dtype
        dev = backend.as_device(device) if device is not None else data.device
    elif backend.is_cupy_array(data):
        source, source_dtype = data, data.dtype
        dev = backend.as_device(device) if device is not None else backend.device_of(data)
    else:
        if _has_tensor(data):
            data = _flatten_tensors(data)
        source_dtype = _infer_dtype(data)
        source = data
        dev = backend.as_device(device)
    dtype = dtypes.as_dtype(dtype) or dtypes.as_dtype(source_dtype)
    _check_conversion(source, dtype)
    with backend.device_guard(dev):
        if backend.is_array(source):
            array = backend.to_device(source, dev).astype(dtype, copy=True)
        else:
            array = backend.to_device(numpy.asarray(source).astype(dtype), dev)
    return _new(array, requires_grad)


def _check_conversion(source, dtype):
    """Floats into an integer dtype: torch refuses nan, inf and values past the type's range."""
    if dtypes.is_floating_point(dtype) or dtype == dtypes.bool_ or backend.is_cupy_array(source):
        return
    values = numpy.asarray(source.array if isinstance(source, Tensor) else source)
    if values.dtype.kind == "f" and values.size:
        info = numpy.iinfo(dtype)
        if not (numpy.isfinite(values).all() and values.min() >= info.min and values.max() <= info.max):
            raise RuntimeError(f"value cannot be converted to type {dtypes.dtype_name(dtype)} without overflow")


def as_tensor(data, dtype=None, device=None):
    """Like tensor(), but shares memory with a NumPy/CuPy array or a tensor
    when dtype and device already match."""
    if isinstance(data, Tensor):
        return data.to(device=device, dtype=dtype) if (device is not None or dtype is not None) else data
    if backend.is_array(data):
        dev = backend.device_of(data) if device is None else backend.as_device(device)
        array = backend.to_device(data, dev)
        if dtype is not None:
            array = array.astype(dtypes.as_dtype(dtype), copy=False)
        dtypes.as_dtype(array.dtype)
        return Tensor._make(array)
    return tensor(data, dtype=dtype, device=device)


asarray = as_tensor


def from_numpy(ndarray):
    """A CPU tensor sharing memory with a NumPy array."""
    if not isinstance(ndarray, numpy.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    dtypes.as_dtype(ndarray.dtype)
    return Tensor._make(ndarray)


def from_dlpack(ext_tensor):
    """Zero-copy import of a DLPack-capable tensor (torch, cupy, numpy, jax ...)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor
    device_type, device_id = ext_tensor.__dlpack_device__()
    if int(device_type) == 1:          # kDLCPU
        try:
            return Tensor._make(numpy.from_dlpack(ext_tensor))
        except (BufferError, TypeError, RuntimeError) as error:
            raise RuntimeError(f"from_dlpack: NumPy cannot import this tensor ({error}). On the CPU bfloat16 "
                               "has no DLPack exchange (NumPy's DLPack has no bfloat16): convert it to float32 "
                               "first, or go through the GPU, where CuPy's has") from None
    if int(device_type) == 2:          # kDLCUDA
        cp = backend.cupy_module()
        with cp.cuda.Device(int(device_id)):
            return Tensor._make(cp.from_dlpack(ext_tensor))
    raise RuntimeError(f"from_dlpack: unsupported device type {device_type}")


def _filled(shape, fill, dtype, device, requires_grad, default=None):
    dev = backend.as_device(device)
    dtype = dtypes.as_dtype(dtype) or default or dtypes.get_default_dtype()
    xp = backend.xp_for_device(dev)
    with backend.device_guard(dev):
        array = xp.empty(shape, dtype=dtype) if fill is None else xp.full(shape, fill, dtype=dtype)
    return _new(array, requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None, **kwargs):
    """A tensor of zeros of the given size."""
    return _filled(size_arg(size, kwargs.pop("size", None), "zeros"), 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, out=None, **kwargs):
    """A tensor of ones of the given size."""
    return _filled(size_arg(size, kwargs.pop("size", None), "ones"), 1, dtype, device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False, out=None, memory_format=None, pin_memory=False,
          **kwargs):
    """An uninitialised tensor of the given size."""
    return _filled(size_arg(size, kwargs.pop("size", None), "empty"), None, dtype, device, requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    """A tensor of the given size filled with ``fill_value`` (its dtype by
    default: bool, int64 or the default float)."""
    default = dtypes.result_type(fill_value) if not isinstance(fill_value, Tensor) else fill_value.dtype
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    fill_value = validation.number_for(dtypes.as_dtype(dtype) or default, fill_value)
    return _filled(size_arg((size,)), fill_value, dtype, device, requires_grad, default)


def _like(t, dtype, device):
    return (t.dtype if dtype is None else dtype), (t.device if device is None else device)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    """Zeros of input's shape (and dtype and device, unless given)."""
    return _filled(input.shape, 0, *_like(input, dtype, device), requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    """Ones of input's shape (and dtype and device, unless given)."""
    return _filled(input.shape, 1, *_like(input, dtype, device), requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    """An uninitialised tensor of input's shape (and dtype and device, unless given)."""
    return _filled(input.shape, None, *_like(input, dtype, device), requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    """``fill_value`` in input's shape (and dtype and device, unless given)."""
    dtype, device = _like(input, dtype, device)
    fill_value = validation.number_for(dtypes.as_dtype(dtype), fill_value)
    return _filled(input.shape, fill_value, dtype, device, requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """Values from start (0) up to, not including, end by step: int64 for
    integer arguments, the default float otherwise."""
    if end is None:
        start, end = 0, start
    dtype = dtypes.as_dtype(dtype) or dtypes.result_type(start, end, step)
    if dtype == dtypes.bool_:
        raise validation.not_implemented("arange_cpu", dtype)
    if not (step > 0 or step < 0):
        raise RuntimeError("step must be nonzero")
    if not (math.isfinite(start) and math.isfinite(end)):
        raise RuntimeError(f"unsupported range: {start} -> {end}")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if not dtypes.is_floating_point(dtype) and not math.isfinite(step):   # torch converts it to int64 first
        raise RuntimeError("value cannot be converted to type int64_t without overflow")
    dev = backend.as_device(device)
    xp = backend.xp_for_device(dev)
    with backend.device_guard(dev):
        if dtype == dtypes.int64:       # torch computes int64 ranges from the arguments converted to int64
            start, end, step = int(start), int(end), int(step)
            if step == 0:
                raise ValueError("step must be nonzero")
        count = max(0, int(numpy.ceil((end - start) / step)))
        if dtypes.is_floating_point(dtype):
            array = (xp.arange(count, dtype=numpy.float64) * step + start).astype(dtype)
        else:      # other integer dtypes: the count from the arguments, start and step converted
            array = (xp.arange(count, dtype=numpy.int64) * int(step) + int(start)).astype(dtype)
    return _new(array, requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from start to end, both included."""
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    dev = backend.as_device(device)
    dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if not dtypes.is_floating_point(dtype):       # torch converts the ends to the dtype first
        start, end = int(start), int(end)
    xp = backend.xp_for_device(dev)
    with backend.device_guard(dev):
        compute = dtype if dtype in (dtypes.float32, dtypes.float64) else numpy.float64
        array = linspace_array(xp, start, end, steps, compute).astype(dtype, copy=False)
    return _new(array, requires_grad)


def linspace_array(xp, start, end, steps, dtype=numpy.float64):
    """torch's linspace (its scalar loop, in ``dtype``): start + i * step for the first half,
    end - (steps - 1 - i) * step for the rest (NumPy's start + i * step rounds differently: the
    edges of histogram bins, for one).  torch's vectorised loop, over whole SIMD widths of a long
    range, can differ from it in the last bit."""
    kind = numpy.dtype(dtype).type
    i = xp.arange(steps, dtype=dtype)
    start, end = kind(start), kind(end)
    if steps <= 1:
        return i + start
    step = (end - start) / kind(steps - 1)
    return xp.where(i < steps // 2, start + step * i, end - step * (kind(steps - 1) - i))


def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False):
    """``steps`` values from base**start to base**end, evenly spaced in the exponent."""
    dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if not dtypes.is_floating_point(dtype) and steps != 1:   # torch converts the ends to the dtype first
        start, end = int(start), int(end)                     # (one step: base ** start, start as given)
    line = linspace(start, end, steps, dtype=dtypes.float64, device=device)
    return _new((base ** line.array).astype(dtype), requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    """The n x m identity matrix."""
    dev = backend.as_device(device)
    dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
    if n < 0:
        raise RuntimeError(f"n must be greater or equal to 0, got {n}")
    if m is not None and m < 0:
        raise RuntimeError(f"m must be greater or equal to 0, got {m}")
    with backend.device_guard(dev):
        array = backend.xp_for_device(dev).eye(n, n if m is None else m, dtype=dtype)
    return _new(array, requires_grad)


def new_tensor(self, data, *, dtype=None, device=None, requires_grad=False):
    """A new tensor of ``data`` with self's dtype and device by default."""
    return tensor(data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def new_zeros(self, *size, dtype=None, device=None, requires_grad=False):
    size_arg(size, None, "new_zeros")
    return zeros(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def new_ones(self, *size, dtype=None, device=None, requires_grad=False):
    size_arg(size, None, "new_ones")
    return ones(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def new_empty(self, *size, dtype=None, device=None, requires_grad=False):
    size_arg(size, None, "new_empty")
    return empty(*size, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad)


def new_full(self, size, fill_value, *, dtype=None, device=None, requires_grad=False):
    return full(size, fill_value, dtype=dtype or self.dtype, device=device or self.device,
                requires_grad=requires_grad)
