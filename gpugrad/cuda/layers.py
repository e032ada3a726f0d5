"""Launchers of the transformer layers' kernels: layer normalisation
(kernels/layer_norm.cu), GELU and dropout (kernels/elementwise.cu), one
launch per call.  Inputs are CuPy arrays on one device; what is not
contiguous is copied first."""

import math

import numpy

from gpugrad import backend, dtypes
from gpugrad.cuda import kernels, launch

THREADS = 256
WARPS = 8                  # rows per block of the layer-norm kernels: a warp each
BLOCKS_PER_SM = 16


def _contiguous(array):
    cp = backend.cupy_module()
    return array if array.flags.c_contiguous else cp.ascontiguousarray(array)


def _elementwise_grid(count, device_id):
    return (max(1, min(-(-count // THREADS), BLOCKS_PER_SM * launch.sm_count(device_id))),)


def _function(filename, name, device_id):
    return kernels.get_function(filename, name, device_id)


def _pointer(array):
    """An array argument (contiguous: the kernels read weight[c] and bias[c] at c, so an expanded or strided one
    is copied) or a null pointer for None."""
    return numpy.uint64(0) if array is None else _contiguous(array)


def supports(*arrays):
    """True when the kernels take these arrays: CuPy arrays (None allowed) of one floating dtype."""
    dtype = None
    for a in arrays:
        if a is None:
            continue
        if not backend.is_cupy_array(a) or (dtype is not None and a.dtype != dtype):
            return False
        dtype = a.dtype
    return dtype is not None and dtypes.dtype_name(dtype) in kernels.FLOAT_TYPES


# -- layer normalisation ---------------------------------------------------------------

def layer_norm_forward(x, weight, bias, ndims, eps, acc):
    """(y, mean, rstd) over the trailing ``ndims`` dims of x; mean and rstd in
    ``acc``, shaped as x with those dims kept as 1 (``keepdims``)."""
    cp = backend.cupy_module()
    x = _contiguous(x)
    cols = math.prod(x.shape[x.ndim - ndims:])
    rows = x.size // cols if cols else 0
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        out = cp.empty(x.shape, dtype=x.dtype)
        mean = cp.empty(x.shape[:x.ndim - ndims] + (1,) * ndims, dtype=acc)
        rstd = cp.empty(mean.shape, dtype=acc)
        if rows:
            grid = (max(1, min(-(-rows // WARPS), BLOCKS_PER_SM * launch.sm_count(device_id))),)
            _function("layer_norm.cu", f"layer_norm_forward<{launch.float_type(x.dtype)}>", device_id)(
                grid, (32, WARPS), (x, _pointer(weight), _pointer(bias), out, mean, rstd, launch.i64(rows),
                                    launch.i64(cols), numpy.float64(1 / cols), numpy.float64(eps)))
    return out, mean, rstd


def layer_norm_backward(grad, x, weight, mean, rstd, ndims, need_x, need_weight, need_bias):
    """(dx, dweight, dbias) of layer_norm_forward, each None where not needed, in one launch."""
    cp = backend.cupy_module()
    grad, x = _contiguous(grad), _contiguous(x)
    cols = math.prod(x.shape[x.ndim - ndims:])
    rows = x.size // cols if cols else 0
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        dx = cp.empty(x.shape, dtype=x.dtype) if need_x else None
        shape = x.shape[x.ndim - ndims:]
        dweight = cp.empty(shape, dtype=x.dtype) if need_weight else None
        dbias = cp.empty(shape, dtype=x.dtype) if need_bias else None
        if not rows:
            for a in (dweight, dbias):
                if a is not None:
                    a.fill(0)
            return dx, dweight, dbias
        blocks = max(1, min(-(-rows // WARPS), 2 * launch.sm_count(device_id)))
        per_block = -(-rows // blocks)
        blocks = -(-rows // per_block)
        partials = cp.empty(2 * blocks * cols if (need_weight or need_bias) else 1, dtype=mean.dtype)
        _function("layer_norm.cu", f"layer_norm_backward<{launch.float_type(x.dtype)}>", device_id)(
            (blocks,), (32, WARPS),
            (grad, x, _pointer(weight), mean, rstd, _pointer(dx), _pointer(dweight), _pointer(dbias), partials,
             launch.counters(device_id, 1), launch.i64(rows), launch.i64(cols), numpy.float64(1 / cols),
             launch.i64(per_block)))
    return dx, dweight, dbias


# -- GELU and dropout ------------------------------------------------------------------------

def _elementwise(name, x, inputs, *numbers, units=None):
    """One launch of kernels/elementwise.cu's ``name`` over the elements of x
    (contiguous): arguments (*inputs, out, n, *numbers), out new, of x's shape
    and dtype; ``units``: the threads' work items (n by default)."""
    cp = backend.cupy_module()
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        out = cp.empty(x.shape, dtype=x.dtype)
        if x.size:
            _function("elementwise.cu", name, device_id)(_elementwise_grid(units or x.size, device_id), (THREADS,),
                                                         (*inputs, out, launch.i64(x.size), *numbers))
    return out


def _gelu_name(step, dtype, tanh):
    return f"gelu_{step}<{launch.float_type(dtype)}, {'true' if tanh else 'false'}>"


def gelu_forward(x, tanh):
    x = _contiguous(x)
    return _elementwise(_gelu_name("forward", x.dtype, tanh), x, (x,))


def gelu_backward(grad, x, tanh):
    x = _contiguous(x)
    grad = _contiguous(backend.cupy_module().broadcast_to(grad, x.shape))
    return _elementwise(_gelu_name("backward", x.dtype, tanh), x, (grad, x))


def sigmoid_forward(x):
    x = _contiguous(x)
    return _elementwise(f"sigmoid_forward<{launch.float_type(x.dtype)}>", x, (x,))


def output_backward(kind, grad, y):
    """grad * f'(x) from the forward's output y (kind "sigmoid": y (1 - y); "tanh": 1 - y^2) in one
    launch; a grad of one value (sum's broadcast) is read in place, another is broadcast to y's shape."""
    y = _contiguous(y)
    if y.size and (grad.size == 1 or not any(grad.strides)):      # one value, perhaps broadcast
        grad, step = grad[(0,) * grad.ndim].reshape(1), 0             # (a view of that element)
    else:
        if grad.shape != y.shape:
            grad = backend.cupy_module().broadcast_to(grad, y.shape)
        grad, step = _contiguous(grad), 1
    sigmoid = "true" if kind == "sigmoid" else "false"
    return _elementwise(f"output_backward<{launch.float_type(y.dtype)}, {sigmoid}>", y, (grad, y), launch.i64(step))


def gelu_backward_bias(grad, x, tanh):
    """(dx, sums): gelu_backward's dx, and its sums over every dim but the last (of x's dtype,
    summed in the accumulation dtype) in the same launch: the gradient of the bias of the Linear
    whose output x is."""
    x = _contiguous(x)
    grad = _contiguous(backend.cupy_module().broadcast_to(grad, x.shape))
    return _column_sums(_gelu_name("backward_bias", x.dtype, tanh), x, (grad, x), out=True)


def column_sums(x):
    """The sums of x (contiguous) over every dim but the last, in the accumulation dtype, rounded
    once to x's dtype: one launch (a half type's sum needs no cast after it)."""
    return _column_sums(f"column_sums<{launch.float_type(x.dtype)}>", x, (x,))[1]


def _column_sums(name, x, inputs, out=False):
    """One launch of elementwise.cu's ``name`` over x's rows (its last dim the columns):
    arguments (*inputs, [out,] sums, partials, counter, rows, cols, rows per block);
    returns (out or None, sums)."""
    cp = backend.cupy_module()
    cols = x.shape[-1] if x.ndim else 1
    rows = x.size // cols if cols else 0
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        result = cp.empty(x.shape, dtype=x.dtype) if out else None
        sums = cp.empty((cols,), dtype=x.dtype)
        if not rows:
            sums.fill(0)
            return result, sums
        blocks = max(1, min(-(-rows // WARPS), 2 * launch.sm_count(device_id)))
        per_block = -(-rows // blocks)
        blocks = -(-rows // per_block)
        partials = cp.empty(blocks * cols, dtype=dtypes.accumulate_dtype(x.dtype))
        _function("elementwise.cu", name, device_id)(
            (blocks,), (THREADS,), (*inputs, *((result,) if out else ()), sums, partials, launch.counters(device_id, 1),
                                    launch.i64(rows), launch.i64(cols), launch.i64(per_block)))
    return result, sums


def dropout(x, p, seed, offset, scale):
    """x * (keep ? scale : 0), the mask drawn by Philox from (seed, offset)."""
    x = _contiguous(x)
    return _elementwise(f"dropout_apply<{launch.float_type(x.dtype)}>", x, (x,), numpy.uint64(seed),
                        numpy.uint64(offset), numpy.float32(p), numpy.float64(scale), units=philox_groups(x.size))


def philox_groups(count):
    """How many Philox counters a dropout of ``count`` elements uses."""
    return -(-count // 4)
