"""The array-module switch: which array library holds a tensor's data.

Everything device-specific is asked here (Chainer's ``get_array_module``): op
code calls :func:`xp_for` on an array (or a Tensor's ``xp``) and writes the
same NumPy API against whichever module comes back.  Nothing outside this
module and ``gpugrad/cuda/`` imports CuPy; the fused kernels are the one place
where code branches on the device, and they live in ``gpugrad/cuda/``.

Floating-point edge cases: inf and nan come out as in torch, silently.  NumPy
reports them as RuntimeWarnings attributed to the calling module, so one filter
silences those that gpugrad's own modules raise (user code keeps NumPy's
behaviour) at no cost per op; an op that meets ``numpy.seterr(all="raise")``
runs again under ``numpy.errstate(all="ignore")`` (``Function.apply``).
"""

import contextlib
import functools
import os
import warnings

import ml_dtypes
import numpy

from gpugrad import gemm

warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"gpugrad(\.|$)")

_cupy = None          # the cupy module once probed and usable, else False


def _probe_cupy():
    global _cupy
    if _cupy is None:
        try:
            # Imported on first use, not at module top: CuPy is optional, and
            # importing it costs a second where no GPU is used.
            import cupy
            usable = bool(cupy.is_available())
        except Exception:  # not installed, no driver, broken CUDA install
            usable = False
        _cupy = cupy if usable else False
        if usable:
            _track_peak_memory(cupy)
    return _cupy


_peak_bytes = {}      # CUDA ordinal -> the most bytes in use in CuPy's default pool, since the last reset


def _track_peak_memory(cp):
    """Route CuPy's allocations through its default memory pool, noting the
    pool's use after each (torch.cuda.max_memory_allocated): a Python call per
    allocation.  An allocator the user set before gpugrad's first CUDA use is
    left alone, and then no peak is noted."""
    pool = cp.get_default_memory_pool()
    get_allocator = getattr(cp.cuda, "get_allocator", None)
    if get_allocator is None or get_allocator() != pool.malloc:
        return
    current_device = cp.cuda.runtime.getDevice

    def malloc(size):
        memory = pool.malloc(size)
        used = pool.used_bytes()
        device = current_device()
        if used > _peak_bytes.get(device, 0):
            _peak_bytes[device] = used
        return memory

    cp.cuda.set_allocator(malloc)


def memory_in_use(index):
    """Bytes in use in CuPy's default memory pool on CUDA device ``index``."""
    cp = cupy_module()
    with cp.cuda.Device(index):
        return cp.get_default_memory_pool().used_bytes()


def peak_memory_in_use(index):
    """The most bytes in use in CuPy's pool on device ``index`` since the start or the
    last :func:`reset_peak_memory` (at least the bytes in use now)."""
    return max(_peak_bytes.get(index, 0), memory_in_use(index))


def reset_peak_memory(index):
    _peak_bytes[index] = memory_in_use(index)


def cuda_available():
    """True when CuPy is installed and sees at least one usable GPU."""
    return bool(_probe_cupy())


def cupy_module():
    """The cupy module; raises a clear error where CUDA is not usable."""
    cp = _probe_cupy()
    if not cp:
        raise RuntimeError(
            "CUDA is not available: gpugrad needs CuPy and a GPU for cuda tensors "
            "(pip install 'gpugrad[cuda13]' or 'gpugrad[cuda12]'); "
            "use device='cpu' or leave the device unset")
    return cp


class device:
    """A device, torch-style: ``device('cpu')``, ``device('cuda')``, ``device('cuda:1')``,
    ``device('cuda', 1)``.  Compares equal to its string (``device('cpu') == 'cpu'``)."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        elif isinstance(type, int) and not isinstance(type, bool):
            type, index = "cuda", type
        elif isinstance(type, str):
            if ":" in type:
                if index is not None:
                    raise ValueError(f"device string {type!r} already names an index")
                type, _, idx = type.partition(":")
                if not idx.isdigit():
                    raise ValueError(f"invalid device index in {type}:{idx!r}")
                index = int(idx)
        else:
            raise TypeError(f"device() expects a string, an int or a device, got {type!r}")
        if type not in ("cpu", "cuda"):
            raise ValueError(f"unknown device type {type!r}: expected 'cpu' or 'cuda' (e.g. 'cuda:0')")
        if type == "cpu" and index not in (None, 0):
            raise ValueError(f"cpu device has no index {index}")
        if index is not None and index < 0:
            raise ValueError(f"device index must be >= 0, got {index}")
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "index", None if type == "cpu" else index)

    def __setattr__(self, name, value):
        raise AttributeError("device is immutable")

    def __eq__(self, other):
        if isinstance(other, str):
            other = device(other)
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        if self.index is None:
            return f"device(type={self.type!r})"
        return f"device(type={self.type!r}, index={self.index})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


CPU = device("cpu")
_default_device = None


def as_device(dev):
    """Parse ``dev`` (str, int, device or None) into a concrete device;
    'cuda' alone means the current CUDA device."""
    if dev is None:
        return get_default_device()
    dev = dev if isinstance(dev, device) else device(dev)
    if dev.type == "cuda":
        cp = cupy_module()
        index = cp.cuda.runtime.getDevice() if dev.index is None else dev.index
        count = cp.cuda.runtime.getDeviceCount()
        if index >= count:
            raise RuntimeError(f"CUDA device {index} does not exist: {count} device(s) visible")
        if dev.index is None:
            dev = device("cuda", index)
    return dev


def get_default_device():
    """The device factories use when none is given: 'cpu', unless the
    environment variable GPUGRAD_DEVICE or :func:`set_default_device` says
    otherwise (``GPUGRAD_DEVICE=cuda`` puts new tensors on the GPU)."""
    global _default_device
    if _default_device is None:
        _default_device = as_device(os.environ.get("GPUGRAD_DEVICE", "cpu") or "cpu")
    return _default_device


def set_default_device(dev):
    """Make ``dev`` the device of new tensors (None: back to GPUGRAD_DEVICE or 'cpu')."""
    global _default_device
    _default_device = None if dev is None else as_device(dev)


def is_cupy_array(array):
    cp = _cupy
    return bool(cp) and isinstance(array, cp.ndarray)


def is_array(value):
    """True for a numpy.ndarray or a cupy.ndarray."""
    return type(value) is numpy.ndarray or isinstance(value, numpy.ndarray) or is_cupy_array(value)


def keep_array(value):
    """``value`` as an array: NumPy's ufuncs and reductions give a scalar
    (``numpy.float64``, ``numpy.bool_``) for a 0-d result, where CuPy keeps a
    0-d array; the one place that turns such a scalar back into a 0-d array
    (what a Tensor holds, and what a later ``out=`` can write into)."""
    return numpy.asarray(value) if isinstance(value, numpy.generic) else value


def writable_alias(array):
    """A writable NumPy array over the same memory as ``array``, a read-only
    view such as ``broadcast_to`` makes of writable memory (for ``fill_`` on
    an expanded tensor, which torch allows: every element gets one value)."""
    owner = array
    while owner.base is not None and isinstance(owner.base, numpy.ndarray):
        owner = owner.base
    if not owner.flags.writeable:
        raise ValueError("assignment destination is read-only")
    offset = array.__array_interface__["data"][0] - owner.__array_interface__["data"][0]
    return numpy.ndarray(array.shape, array.dtype, buffer=owner, offset=offset, strides=array.strides)


def xp_for(array):
    """The array module (numpy or cupy) that holds ``array`` (an ndarray)."""
    if type(array) is numpy.ndarray or not _cupy:
        return numpy
    return _cupy if isinstance(array, _cupy.ndarray) else numpy


def xp_for_device(dev):
    """The array module of a device: numpy for the CPU, cupy for CUDA."""
    return numpy if dev.type == "cpu" else cupy_module()


def device_of(array):
    """The device an ndarray lives on."""
    if is_cupy_array(array):
        return device("cuda", array.device.id)
    return CPU


def device_key(array):
    """-1 for a NumPy array, the CUDA ordinal for a CuPy array (cheap to compare)."""
    if type(array) is numpy.ndarray or not is_cupy_array(array):
        return -1
    return array.device.id


def device_from_key(key):
    return CPU if key == -1 else device("cuda", key)


def to_device(array, dev):
    """``array`` on device ``dev`` (a no-op, not a copy, when it is there already)."""
    if dev.type == "cpu":
        return _cupy.asnumpy(array) if is_cupy_array(array) else numpy.asarray(array)
    cp = cupy_module()
    if is_cupy_array(array) and array.device.id == dev.index:
        return array
    with cp.cuda.Device(dev.index):
        return cp.asarray(array)


def pinned(array):
    """A copy of the host ``array`` in page-locked memory, from which copies
    to the GPU are faster and asynchronous (DataLoader's pin_memory)."""
    cp = cupy_module()
    memory = cp.cuda.alloc_pinned_memory(max(array.nbytes, 1))
    out = numpy.frombuffer(memory, array.dtype, array.size).reshape(array.shape)
    out[...] = array
    return out


def device_guard(dev):
    """A context manager making ``dev`` the current CUDA device (a no-op for the CPU)."""
    if dev.type == "cuda":
        return _cupy.cuda.Device(dev.index)
    return contextlib.nullcontext()


def may_share_memory(a, b):
    return bool(xp_for(a).may_share_memory(a, b))


# ---------------------------------------------------------------------------
# The few functions NumPy and CuPy spell differently.

def scatter_add(array, key, values):
    """``array[key] += values`` with repeated indices accumulated (NumPy's
    ``add.at``, CuPy's ``scatter_add``); in place."""
    if is_cupy_array(array):
        _cupyx().scatter_add(array, key, values)
    else:
        numpy.add.at(array, key, values)


def scatter_reduce(array, key, values, reduce):
    """``array[key] op= values`` with repeated indices reduced, op one of 'sum',
    'prod', 'amax', 'amin' (NumPy's ufunc.at; CuPy's scatter_add/max/min, and
    for a product, which CuPy lacks, NumPy's on a host copy); in place."""
    if reduce == "sum":
        scatter_add(array, key, values)
    elif is_cupy_array(array) and hasattr(_cupyx(), "scatter_max") and reduce in ("amax", "amin"):
        (_cupyx().scatter_max if reduce == "amax" else _cupyx().scatter_min)(array, key, values)
    elif is_cupy_array(array):
        host = array.get()
        ufunc = {"prod": numpy.multiply, "amax": numpy.maximum, "amin": numpy.minimum}[reduce]
        ufunc.at(host, tuple(k.get() if is_cupy_array(k) else k for k in key), values.get())
        array[...] = to_device(host, device_of(array))
    else:
        {"prod": numpy.multiply, "amax": numpy.maximum, "amin": numpy.minimum}[reduce].at(array, key, values)


@functools.lru_cache(maxsize=None)
def _cupyx():
    import cupyx  # with CuPy, on first use (as cupy itself)
    import cupyx.scipy.special  # noqa: F401  (erf)
    return cupyx


def erf(array):
    """The error function, elementwise (scipy.special / cupyx.scipy.special),
    of a float32 or float64 array."""
    if is_cupy_array(array):
        return _cupyx().scipy.special.erf(array)
    return _scipy_erf()(array)


@functools.lru_cache(maxsize=None)
def _scipy_erf():
    try:
        # scipy is optional: looked up once, on the first erf
        from scipy.special import erf as scipy_erf
    except ImportError:
        import math  # exact but slow fallback
        return numpy.vectorize(math.erf, otypes=[numpy.float64])
    return scipy_erf


def expit(array):
    """1 / (1 + exp(-array)) of a float32 or float64 NumPy array, in that order (exp(-x) = inf
    gives 0 exactly, as torch's sigmoid): scipy.special.expit, one pass and one call where
    NumPy's ufuncs take four (a graph node's forward on small tensors costs what it calls)."""
    if _expit is None:
        _load_expit()
    return _expit(array)


_expit = None


def _load_expit():
    global _expit
    try:
        # scipy is optional (as for erf): looked up once, on the first sigmoid
        from scipy.special import expit as scipy_expit
    except ImportError:
        def scipy_expit(array):
            y = keep_array(numpy.negative(array))
            numpy.exp(y, out=y)
            y += 1
            return numpy.reciprocal(y, out=y)
    _expit = scipy_expit


def array_sum(x, axis=None, dtype=None, keepdims=False):
    """``x.sum(...)`` of a NumPy or CuPy array.  On NumPy through ``add.reduce``
    directly: NumPy's Python layer would claim the inf/nan warnings of the sum
    as its own, past gpugrad's filter (and costs a microsecond)."""
    if type(x) is numpy.ndarray:
        return numpy.add.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)
    return x.sum(axis=axis, dtype=dtype, keepdims=keepdims)


def array_prod(x, axis=None, dtype=None, keepdims=False):
    """``x.prod(...)``, as :func:`array_sum`."""
    if type(x) is numpy.ndarray:
        return numpy.multiply.reduce(x, axis=axis, dtype=dtype, keepdims=keepdims)
    return x.prod(axis=axis, dtype=dtype, keepdims=keepdims)


# Matrix products of this many floating-point operations run on one BLAS thread on
# the CPU.  OpenBLAS threads them, which on an idle 2-core machine makes them up to
# 1.8x faster (tens of microseconds), but when the cores are busy (data-loading
# processes, another job, a second thread pool in the process) its spinning
# threads wait for a scheduler tick: 16 ms for a 37 us product, measured.  Below
# the band OpenBLAS uses one thread anyway; above it, the default count.
SMALL_MATMUL_FLOPS = (1 << 17, 1 << 26)
_BFLOAT16 = numpy.dtype(ml_dtypes.bfloat16)
_HALF_TYPES = (numpy.dtype(numpy.float16), _BFLOAT16)


@functools.lru_cache(maxsize=None)
def _blas_controller():
    """threadpoolctl's handle on NumPy's BLAS, or None (not installed, several BLAS)."""
    try:
        import threadpoolctl  # on the first matrix product in the band: its import scans the loaded libraries
        controllers = [c for c in threadpoolctl.ThreadpoolController().lib_controllers if c.user_api == "blas"]
    except Exception:  # threadpoolctl missing or unable to inspect this process
        return None
    return controllers[0] if len(controllers) == 1 else None


def matmul(a, b):
    """``a @ b`` of NumPy or CuPy arrays of two or more dims; on the CPU, a
    product in the SMALL_MATMUL_FLOPS band runs on one BLAS thread (the
    thread count is restored after).  CuPy's bfloat16 products go to cuBLAS
    (gpugrad/gemm.py): CuPy's matmul takes bfloat16 for an integer type."""
    if type(a) is not numpy.ndarray:
        if a.dtype == _BFLOAT16 and b.dtype == _BFLOAT16:
            out = gemm.matmul(_probe_cupy(), a, b)
            if out is not None:         # None: a CuPy without cuBLAS (the emulator's stand-in)
                return out
        out = a @ b
        # the operands' dtype, as torch: a bfloat16 product that some array library widens
        # to float32 (NumPy does, through ml_dtypes) would route float32 gradients into it
        return out if out.dtype == a.dtype else out.astype(a.dtype)
    if a.dtype in _HALF_TYPES:
        # NumPy has no BLAS for half types: float32 products, rounded once (torch's CPU rule)
        return matmul(a.astype(numpy.float32), b.astype(numpy.float32)).astype(a.dtype)
    flops = 2 * max(a.size * b.shape[-1], b.size * a.shape[-2])
    if SMALL_MATMUL_FLOPS[0] <= flops < SMALL_MATMUL_FLOPS[1]:
        blas = _blas_controller()
        threads = blas.get_num_threads() if blas is not None else 1
        if threads and threads > 1:
            blas.set_num_threads(1)
            try:
                return numpy.matmul(a, b)
            finally:
                blas.set_num_threads(threads)
    return numpy.matmul(a, b)


def keep_where(keep, values):
    """``values`` where the bool array ``keep`` holds, else 0 (``where(keep,
    values, 0)``).  NumPy's where branches per element: on a random mask it
    is some 15x slower than a multiply, so the CPU multiplies, and takes
    where only when the product is not all finite (0 * inf is nan, where the
    answer is 0)."""
    zero = values.dtype.type(0)
    if type(values) is numpy.ndarray:
        out = numpy.multiply(values, keep, dtype=values.dtype)
        if numpy.isfinite(out).all():
            return out
        return numpy.where(keep, values, zero)
    return cupy_module().where(keep, values, zero)


def einsum(subscripts, *arrays):
    """``einsum`` of NumPy or CuPy arrays of one dtype; half types on the CPU
    and bfloat16 on CuPy are summed in float32 and rounded once (NumPy has no
    fast half loops; CuPy's einsum contracts through its matmul, which takes
    bfloat16 for an integer type).
    An expanded operand (a zero stride over a dim of 2 or more) is copied
    first: NumPy's loop for a zero stride takes y * sum(g) for sum(g * y),
    +-inf where torch's product, term by term, gives nan (inf times a 0 or
    terms of both signs).  A size-1 dim broadcast by einsum itself is summed
    first by torch too, and is left so."""
    arrays = [a if all(s or n < 2 for s, n in zip(a.strides, a.shape)) else a.copy() for a in arrays]
    first = arrays[0]
    if type(first) is numpy.ndarray:
        if first.dtype in _HALF_TYPES:
            return numpy.einsum(subscripts, *[a.astype(numpy.float32) for a in arrays],
                                optimize=len(arrays) > 2).astype(first.dtype)
        return numpy.einsum(subscripts, *arrays, optimize=len(arrays) > 2)
    if first.dtype == _BFLOAT16:
        return _probe_cupy().einsum(subscripts, *[a.astype(numpy.float32) for a in arrays]).astype(first.dtype)
    return _probe_cupy().einsum(subscripts, *arrays)
