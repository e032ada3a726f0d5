"""Launchers of the fused kernels (kernels/*.cu) on CuPy arrays.

Each takes rows as a 2-D array with unit stride along the row (any row
stride), and returns new arrays; per-row results are in the accumulation
dtype (float32 for half input).  Launch shape: a warp per row and 8 rows per
block for rows of up to 1024 elements; otherwise one row per block with 128,
256 or 512 threads by row length.
"""

import numpy

from gpugrad.backend import cupy_module
from gpugrad.cuda import errors, kernels

WARP_ROW_LIMIT = 1024
ROWS_PER_WARP_BLOCK = 8


def accumulate_dtype(dtype):
    return numpy.dtype(numpy.float64) if dtype == numpy.float64 else numpy.dtype(numpy.float32)


def launch_shape(rows, cols, itemsize):
    """(grid, block) for a row kernel."""
    if cols <= WARP_ROW_LIMIT:
        threads, per_block = 32, ROWS_PER_WARP_BLOCK
    else:
        vectors = -(-cols * itemsize // 16)
        threads = 128 if vectors <= 2048 else 256 if vectors <= 8192 else 512
        per_block = 1
    blocks = max(1, min(-(-rows // per_block), 2**31 - 1))
    return (blocks,), (threads, per_block)


def _row_stride(array):
    if array.ndim != 2 or array.strides[1] != array.itemsize or array.strides[0] % array.itemsize:
        raise ValueError(f"fused kernels take rows with unit stride; got strides {array.strides}")
    return numpy.int64(array.strides[0] // array.itemsize)


def _type(dtype):
    return kernels.FLOAT_TYPES[numpy.dtype(dtype).name]


def _run(filename, name, rows, cols, itemsize, device_id, args):
    grid, block = launch_shape(rows, cols, itemsize)
    kernels.get_function(filename, name, device_id)(grid, block, args)


def logsumexp_forward(x):
    """(m, ls) per row, lse = m + ls."""
    cp = cupy_module()
    rows, cols = x.shape
    acc = accumulate_dtype(x.dtype)
    with cp.cuda.Device(x.device.id):
        m = cp.empty(rows, dtype=acc)
        ls = cp.empty(rows, dtype=acc)
        _run("logsumexp.cu", f"logsumexp_forward<{_type(x.dtype)}>", rows, cols, x.itemsize, x.device.id,
             (x, _row_stride(x), numpy.int64(rows), numpy.int32(cols), m, ls))
    return m, ls


def logsumexp_backward(x, m, ls, grad):
    """grad[i] * exp((x[i] - m[i]) - ls[i]) for each row i."""
    cp = cupy_module()
    rows, cols = x.shape
    with cp.cuda.Device(x.device.id):
        out = cp.empty((rows, cols), dtype=x.dtype)
        _run("logsumexp.cu", f"logsumexp_backward<{_type(x.dtype)}>", rows, cols, x.itemsize, x.device.id,
             (x, _row_stride(x), numpy.int64(rows), numpy.int32(cols), cp.ascontiguousarray(m),
              cp.ascontiguousarray(ls), cp.ascontiguousarray(grad), out, numpy.int64(cols)))
    return out


def softmax_forward(x, log):
    cp = cupy_module()
    rows, cols = x.shape
    with cp.cuda.Device(x.device.id):
        y = cp.empty((rows, cols), dtype=x.dtype)
        name = f"softmax_forward<{_type(x.dtype)}, {'true' if log else 'false'}>"
        _run("softmax.cu", name, rows, cols, x.itemsize, x.device.id,
             (x, _row_stride(x), numpy.int64(rows), numpy.int32(cols), y, numpy.int64(cols)))
    return y


def softmax_backward(y, grad, log):
    cp = cupy_module()
    rows, cols = y.shape
    with cp.cuda.Device(y.device.id):
        out = cp.empty((rows, cols), dtype=y.dtype)
        name = f"softmax_backward<{_type(y.dtype)}, {'true' if log else 'false'}>"
        _run("softmax.cu", name, rows, cols, y.itemsize, y.device.id,
             (y, _row_stride(y), grad, _row_stride(grad), numpy.int64(rows), numpy.int32(cols), out,
              numpy.int64(cols)))
    return out


def _class_weights(cp, weight, acc):
    """(weights, has_weight, their sum as a device scalar): a dummy when there are none."""
    if weight is None:
        dummy = cp.zeros(1, dtype=acc)
        return dummy, numpy.int32(0), dummy
    weight = cp.ascontiguousarray(weight, dtype=acc)
    return weight, numpy.int32(1), weight.sum(keepdims=True)


def cross_entropy_forward(x, target, weight, ignore_index, smoothing):
    """Per row: (loss, weight of the target class (0 if ignored), m, ls)."""
    cp = cupy_module()
    rows, cols = x.shape
    acc = accumulate_dtype(x.dtype)
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        target = cp.ascontiguousarray(target)
        weights, has_weight, weight_sum = _class_weights(cp, weight, acc)
        loss, row_weight, m, ls = (cp.empty(rows, dtype=acc) for _ in range(4))
        name = f"cross_entropy_forward<{_type(x.dtype)}, {kernels.INDEX_TYPES[target.dtype.name]}>"
        _run("cross_entropy.cu", name, rows, cols, x.itemsize, device_id,
             (x, _row_stride(x), numpy.int64(rows), numpy.int32(cols), target, weights, has_weight,
              weight_sum, numpy.int64(ignore_index), acc.type(smoothing), loss, row_weight, m, ls,
              errors.buffer(device_id)))
    errors.launched(device_id)
    return loss, row_weight, m, ls


def cross_entropy_backward(x, target, weight, ignore_index, smoothing, m, ls, grad):
    """The gradient w.r.t. x; ``grad`` holds one upstream value per row, or one for all."""
    cp = cupy_module()
    rows, cols = x.shape
    acc = accumulate_dtype(x.dtype)
    with cp.cuda.Device(x.device.id):
        target = cp.ascontiguousarray(target)
        weights, has_weight, weight_sum = _class_weights(cp, weight, acc)
        grad = cp.ascontiguousarray(grad, dtype=acc).reshape(-1)
        if grad.size not in (1, rows):
            raise ValueError(f"cross_entropy_backward: {grad.size} upstream values for {rows} rows")
        grad_stride = numpy.int64(0 if grad.size == 1 else 1)
        out = cp.empty((rows, cols), dtype=x.dtype)
        name = f"cross_entropy_backward<{_type(x.dtype)}, {kernels.INDEX_TYPES[target.dtype.name]}>"
        _run("cross_entropy.cu", name, rows, cols, x.itemsize, x.device.id,
             (x, _row_stride(x), numpy.int64(rows), numpy.int32(cols), target, weights, has_weight,
              weight_sum, numpy.int64(ignore_index), acc.type(smoothing), cp.ascontiguousarray(m),
              cp.ascontiguousarray(ls), grad, grad_stride, out, numpy.int64(cols)))
    return out


def check_targets(target, cols, ignore_index):
    """Record in the error word any class index outside [0, cols) that is not ignore_index."""
    cp = cupy_module()
    device_id = target.device.id
    with cp.cuda.Device(device_id):
        target = cp.ascontiguousarray(target).reshape(-1)
        count = target.size
        if count == 0:
            return
        name = f"check_targets<{kernels.INDEX_TYPES[target.dtype.name]}>"
        blocks = max(1, min(-(-count // 256), 4096))
        kernels.get_function("cross_entropy.cu", name, device_id)(
            (blocks,), (256,), (target, numpy.int64(count), numpy.int32(cols), numpy.int64(ignore_index),
                                errors.buffer(device_id)))
    errors.launched(device_id)
