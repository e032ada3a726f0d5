"""Launchers of the fused kernels (kernels/*.cu) on CuPy arrays.

An op reduces its input ``x`` along one dim: :func:`row_layout` describes x
as R = outer * inner rows of C elements with element strides (so, si, sc),
without copying (strided kernels; a copy only where the outer or inner dims
cannot be merged).  Outputs of x's shape are written contiguous; per-row
results come in row order (the shape of x without the reduced dim).

Launch shape (:func:`launch_shape`): contiguous rows get G lanes each (a
slice of a warp for short rows, several rows per warp; a warp; or a block of
128-512 threads for long rows), strided rows a thread each; the grid strides
over row groups (at most ``blocks_per_sm`` x SMs blocks), and few long rows
are split over grid.y.  A row group whose rows fit in shared memory is read
from global memory once.

The ``logsumexp_forward`` ... ``check_targets`` functions at the end keep the
2-D (N, C) interface the CPU emulator's kernel matrix drives
(``../shared/tools/cuemu/run.py``).
"""

import collections
import math

import numpy

from gpugrad import dtypes
from gpugrad.backend import cupy_module
from gpugrad.cuda import errors, kernels

MAX_THREADS = 512            # the kernels' __launch_bounds__
CACHE_BYTES = 32 * 1024      # dynamic shared memory a block may use to keep its rows
BLOCKS_PER_SM = 8
SPLIT_MIN_COLS = 16384       # rows at least this long are split when there are too few of them
# cross-entropy writes its gradient in the forward under 'mean' from this many classes on: each block
# then reads the N targets once more for the denominator, cheap next to N * C logits
GRAD_IN_FORWARD_MIN_COLS = 4096

RowLayout = collections.namedtuple("RowLayout", "shape dim rows cols inner so si sc")
LaunchShape = collections.namedtuple("LaunchShape", "grid block lanes rows_per_block")

_sm_counts = {}
_scratch = {}                # (device, stream, kind) -> cached zeroed counters


def accumulate_dtype(dtype):
    return numpy.dtype(numpy.float64) if dtype == numpy.float64 else numpy.dtype(numpy.float32)


def _type(dtype):
    return kernels.FLOAT_TYPES[dtypes.dtype_name(numpy.dtype(dtype))]


def _index_type(dtype):
    return kernels.INDEX_TYPES[numpy.dtype(dtype).name]


def _merged_stride(shape, strides):
    """The one element stride that walks the flattened dims (0 if they hold
    at most one element), or None when they cannot be walked with one stride."""
    stride = None
    for n, s in zip(reversed(shape), reversed(strides)):
        if n == 1:
            continue
        if stride is None:
            stride, span = s, s * n
        elif s != span:
            return None
        else:
            span = s * n
    return 0 if stride is None else stride


def row_layout(x, dim):
    """x reduced along ``dim`` as rows (RowLayout), or None when its outer or
    inner dims cannot be merged without a copy."""
    shape = x.shape
    strides = [s // x.itemsize for s in x.strides]
    if any(s * x.itemsize != b for s, b in zip(strides, x.strides)):
        return None
    so = _merged_stride(shape[:dim], strides[:dim])
    si = _merged_stride(shape[dim + 1:], strides[dim + 1:])
    if so is None or si is None:
        return None
    outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1:])
    return RowLayout(shape, dim, outer * inner, shape[dim], inner, so, si, strides[dim])


def contiguous_layout(shape, dim):
    """The RowLayout of a C-contiguous array of ``shape`` reduced along ``dim``."""
    cols, inner = shape[dim], math.prod(shape[dim + 1:])
    return RowLayout(tuple(shape), dim, math.prod(shape[:dim]) * inner, cols, inner, cols * inner, 1, inner)


def layout_of(x, dim):
    """(x, its RowLayout): x itself when its layout allows, else a C-contiguous copy."""
    layout = row_layout(x, dim)
    if layout is None:
        cp = cupy_module()
        x = cp.ascontiguousarray(x)
        layout = contiguous_layout(x.shape, dim)
    return x, layout


def _sm_count(cp, device_id):
    count = _sm_counts.get(device_id)
    if count is None:
        try:
            count = int(cp.cuda.Device(device_id).attributes["MultiProcessorCount"])
        except (AttributeError, KeyError, TypeError):   # a stand-in without device attributes
            count = 132
        _sm_counts[device_id] = count
    return count


def launch_shape(layout, itemsize, sm_count, split_long_rows=False):
    """(grid, block) and the lanes per row for a row kernel."""
    rows, cols = layout.rows, layout.cols
    contiguous = layout.sc == 1
    splits = 1
    if not contiguous:
        lanes, per_block = 1, 256
    else:
        vector = 16 // itemsize
        vectors = max(1, -(-cols // vector))
        if vectors <= 16:                            # short rows: several rows per warp
            lanes = 1 << (vectors - 1).bit_length()
            per_block = 256 // lanes
        elif vectors <= 256:                         # a warp per row
            lanes, per_block = 32, 8
        else:                                        # a block per row
            lanes = 128 if vectors <= 2048 else 256 if vectors <= 8192 else MAX_THREADS
            per_block = 1
            if split_long_rows and cols >= SPLIT_MIN_COLS and rows < 2 * sm_count:
                splits = max(1, min(-(-2 * sm_count // max(rows, 1)), cols // 4096, 65535))
    blocks = max(1, min(-(-rows // per_block), BLOCKS_PER_SM * sm_count * max(1, 256 // (lanes * per_block))))
    return LaunchShape((blocks, splits), (lanes, per_block), lanes, per_block)


def _room(cols, itemsize):
    vector = 16 // itemsize
    return -(-(cols + vector) // vector) * vector * itemsize


def _cache_bytes(shape, layout, itemsize, arrays=1):
    """Dynamic shared memory to keep a block's rows (0: do not cache)."""
    if layout.sc != 1:
        return 0
    need = shape.rows_per_block * arrays * _room(layout.cols, itemsize)
    return need if need <= CACHE_BYTES else 0


def _stream_key(cp):
    # counters are per stream, so concurrent launches on two streams do not share one
    get_stream = getattr(cp.cuda, "get_current_stream", None)
    return get_stream().ptr if get_stream is not None else 0


def _counters(cp, device_id, count):
    """At least ``count`` zeroed uint32 counters for last-block reductions on
    this device and stream (the kernels leave them at zero)."""
    key = (device_id, _stream_key(cp))
    buffer = _scratch.get(key)
    if buffer is None or buffer.size < count:
        buffer = cp.zeros(max(count, 1024), dtype=numpy.uint32)
        _scratch[key] = buffer
    return buffer


def _launch(filename, name, device_id, shape, args, shared_mem=0):
    function = kernels.get_function(filename, name, device_id)
    if shared_mem:
        function(shape.grid, shape.block, args, shared_mem=shared_mem)
    else:
        function(shape.grid, shape.block, args)


def _i64(value):
    return numpy.int64(value)


def _strides(layout):
    return _i64(layout.inner), _i64(layout.so), _i64(layout.si), _i64(layout.sc)


def _out_strides(layout):
    """so, si, sc of the contiguous output of x's shape."""
    return _i64(layout.cols * layout.inner), _i64(1), _i64(layout.inner)


def _address(x):
    pointer = getattr(getattr(x, "data", None), "ptr", None)         # cupy.ndarray
    if pointer is None:
        pointer = getattr(x, "__array_interface__", {"data": (0,)})["data"][0]   # a NumPy-backed stand-in
    return int(pointer)


def _output_like(cp, x, layout):
    """(an array of x's shape for a kernel to write, its so, si, sc).  Rows of
    x that do not start on a 16-byte boundary (a view such as
    logits[:, :50257] of a wider array, or x[:, 1:]) get output rows with the
    same 16-byte phase, so the kernel stores whole vectors; otherwise the
    output is contiguous."""
    vector = 16 // x.itemsize
    phase = _address(x) % 16
    rows, cols, so = layout.rows, layout.cols, layout.so
    if layout.inner == 1 and layout.sc == 1 and (so != cols or phase) and cols <= so <= cols + cols // 8 + vector \
            and phase % x.itemsize == 0:
        offset = phase // x.itemsize
        flat = cp.empty(rows * so + vector, dtype=x.dtype)
        out = flat[offset:offset + rows * so].reshape(rows, so)[:, :cols]
        return out.reshape(layout.shape), _i64(so), _i64(0), _i64(1)
    return cp.empty(layout.shape, dtype=x.dtype), *_out_strides(layout)


# ---------------------------------------------------------------------------
# Log-sum-exp, softmax, log_softmax.

def lse_rows(x, layout, want_result=True):
    """(m, ls, lse): per-row statistics in the accumulation dtype, and the
    log-sum-exp in x's dtype (None unless ``want_result``).  One launch."""
    cp = cupy_module()
    device_id = x.device.id
    acc = accumulate_dtype(x.dtype)
    with cp.cuda.Device(device_id):
        shape = launch_shape(layout, x.itemsize, _sm_count(cp, device_id), split_long_rows=True)
        rows = layout.rows
        m, ls = cp.empty(rows, dtype=acc), cp.empty(rows, dtype=acc)
        out = cp.empty(rows, dtype=x.dtype) if want_result else None
        splits = shape.grid[1]
        if splits > 1:
            partial_m, partial_s = cp.empty(rows * splits, dtype=acc), cp.empty(rows * splits, dtype=acc)
            counters = _counters(cp, device_id, rows)
        else:
            partial_m = partial_s = counters = None
        _launch("logsumexp.cu", f"logsumexp_forward<{_type(x.dtype)}>", device_id, shape,
                (x, *_strides(layout), _i64(rows), numpy.int32(layout.cols), m, ls, out, partial_m, partial_s,
                 counters))
    return m, ls, out


def apply_row_stats(x, layout, m, ls, mode, grad=None, grad_stride=0):
    """x's shape, contiguous: g * exp((x - m) - ls) ('lse_grad'), softmax or
    log_softmax of rows whose statistics (m, ls) are known.  One launch."""
    cp = cupy_module()
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        shape = launch_shape(layout, x.itemsize, _sm_count(cp, device_id), split_long_rows=True)
        out, *out_strides = _output_like(cp, x, layout)
        name = f"apply_stats<{_type(x.dtype)}, {kernels.APPLY_MODES[mode]}>"
        _launch("logsumexp.cu", name, device_id, shape,
                (x, *_strides(layout), _i64(layout.rows), numpy.int32(layout.cols), m, ls, grad,
                 _i64(grad_stride), out, *out_strides))
    return out


def softmax_rows(x, layout, log):
    """softmax (or log_softmax) of x along the layout's dim, in x's shape:
    one launch (two for few rows long enough to split)."""
    cp = cupy_module()
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        shape = launch_shape(layout, x.itemsize, _sm_count(cp, device_id), split_long_rows=True)
        if shape.grid[1] > 1:
            m, ls, _ = lse_rows(x, layout, want_result=False)
            return apply_row_stats(x, layout, m, ls, "log_softmax" if log else "softmax")
        out, *out_strides = _output_like(cp, x, layout)
        cache = _cache_bytes(shape, layout, x.itemsize)
        name = f"softmax_forward<{_type(x.dtype)}, {'true' if log else 'false'}>"
        _launch("softmax.cu", name, device_id, shape,
                (x, *_strides(layout), _i64(layout.rows), numpy.int32(layout.cols), out, *out_strides,
                 numpy.int32(1 if cache else 0)), shared_mem=cache)
    return out


def softmax_rows_backward(y, y_layout, grad, grad_layout, log):
    """The gradient of softmax (log_softmax) from its output y and the upstream
    gradient, in y's shape, contiguous.  One launch."""
    cp = cupy_module()
    device_id = y.device.id
    with cp.cuda.Device(device_id):
        shape = launch_shape(y_layout if grad_layout.sc == 1 else grad_layout, y.itemsize, _sm_count(cp, device_id))
        out, *out_strides = _output_like(cp, y, y_layout)
        cache = _cache_bytes(shape, y_layout, y.itemsize, arrays=2) if grad_layout.sc == 1 else 0
        name = f"softmax_backward<{_type(y.dtype)}, {'true' if log else 'false'}>"
        _launch("softmax.cu", name, device_id, shape,
                (y, _i64(y_layout.so), _i64(y_layout.si), _i64(y_layout.sc),
                 grad, _i64(grad_layout.so), _i64(grad_layout.si), _i64(grad_layout.sc),
                 _i64(y_layout.inner), _i64(y_layout.rows), numpy.int32(y_layout.cols),
                 out, *out_strides, numpy.int32(1 if cache else 0)), shared_mem=cache)
    return out


# ---------------------------------------------------------------------------
# Cross-entropy.

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}


def cross_entropy_rows(x, layout, target, weight, weight_sum, ignore_index, smoothing, reduction,
                       save_stats=True, with_grad=False, loss_in_acc=False, row_weight=False):
    """The fused forward.  target: contiguous int32/int64 class indices in row
    order; weight / weight_sum: class weights and their sum in the
    accumulation dtype (or None).  Returns a dict: 'loss' (per row, or a
    0-d array for 'sum' and 'mean'), 'm' and 'ls' (per-row statistics, when
    save_stats), 'dx' (the gradient for an upstream gradient of 1, when
    with_grad and the rows are not split: None otherwise), 'denominator' (a 1-element array: the mean's sum of w_t), and
    'row_weight' (w_t per row, when asked).  One launch (few long rows are
    split over blocks).  A bad target is recorded in the error word."""
    cp = cupy_module()
    device_id = x.device.id
    acc = accumulate_dtype(x.dtype)
    rows, cols = layout.rows, layout.cols
    code = REDUCTIONS[reduction]
    index_type = _index_type(target.dtype)
    with cp.cuda.Device(device_id):
        shape = launch_shape(layout, x.itemsize, _sm_count(cp, device_id), split_long_rows=True)
        splits = shape.grid[1]
        if splits > 1:
            # few long rows: every SM gets a chunk; the gradient is then left to the backward kernel
            with_grad = False
        loss_dtype = acc if loss_in_acc else x.dtype
        loss = cp.empty(rows if code == 0 else (), dtype=loss_dtype)
        m = cp.empty(rows, dtype=acc) if save_stats else None
        ls = cp.empty(rows, dtype=acc) if save_stats else None
        weights = cp.empty(rows, dtype=acc) if row_weight else None
        dx, *dx_strides = _output_like(cp, x, layout) if with_grad else (None, _i64(0), _i64(0), _i64(0))
        denominator = cp.empty(1, dtype=acc) if code == 2 else None
        partials = cp.empty(2 * shape.grid[0] * splits, dtype=acc) if code else None
        counters = _counters(cp, device_id, 1 + (rows if splits > 1 else 0))
        if splits > 1:
            partial_m, partial_s, partial_x = (cp.empty(rows * splits, dtype=acc) for _ in range(3))
            row_counters = counters[1:]
        else:
            partial_m = partial_s = partial_x = row_counters = None
        cache = _cache_bytes(shape, layout, x.itemsize) if with_grad else 0
        _launch("cross_entropy.cu", f"cross_entropy_forward<{_type(x.dtype)}, {index_type}>", device_id, shape,
                (x, *_strides(layout), _i64(rows), numpy.int32(cols), target, weight, weight_sum,
                 _i64(ignore_index), acc.type(smoothing), numpy.int32(code), loss, numpy.int32(int(loss_in_acc)),
                 m, ls, weights, dx, *dx_strides, denominator, partials, counters if code else None,
                 errors.argument(device_id), numpy.int32(1 if cache else 0), partial_m, partial_s, partial_x,
                 row_counters), shared_mem=cache)
    errors.launched(device_id)
    return {"loss": loss, "m": m, "ls": ls, "dx": dx, "denominator": denominator, "row_weight": weights}


def cross_entropy_rows_backward(x, layout, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad,
                                grad_stride, denominator):
    """The gradient w.r.t. x (x's shape, contiguous): ``grad`` holds the
    upstream gradient in x's dtype, one per row (grad_stride 1) or one for all
    (0); ``denominator`` (the forward's, or None) divides it.  One launch."""
    cp = cupy_module()
    device_id = x.device.id
    acc = accumulate_dtype(x.dtype)
    with cp.cuda.Device(device_id):
        shape = launch_shape(layout, x.itemsize, _sm_count(cp, device_id), split_long_rows=True)
        dx, *dx_strides = _output_like(cp, x, layout)
        name = f"cross_entropy_backward<{_type(x.dtype)}, {_index_type(target.dtype)}>"
        _launch("cross_entropy.cu", name, device_id, shape,
                (x, *_strides(layout), _i64(layout.rows), numpy.int32(layout.cols), target, weight, weight_sum,
                 _i64(ignore_index), acc.type(smoothing), m, ls, grad, _i64(grad_stride), denominator, dx,
                 *dx_strides))
    return dx


def check_index_range(index, low, high, kind, bound, ignore_index=None):
    """Record in the error word any index outside [low, high) (other than
    ignore_index); raised at the next synchronising read.  One launch."""
    cp = cupy_module()
    device_id = index.device.id
    count = index.size
    if count == 0:
        return
    with cp.cuda.Device(device_id):
        index = cp.ascontiguousarray(index).reshape(-1)
        blocks = max(1, min(-(-count // 256), 4096))
        shape = LaunchShape((blocks, 1), (256, 1), 256, 1)
        _launch("cross_entropy.cu", f"check_indices<{_index_type(index.dtype)}>", device_id, shape,
                (index, _i64(count), _i64(low), _i64(high), _i64(0 if ignore_index is None else ignore_index),
                 numpy.int32(ignore_index is not None), _i64(kind), _i64(bound), errors.argument(device_id)))
    errors.launched(device_id)


# ---------------------------------------------------------------------------
# The 2-D interface: x is (N, C) with unit stride along its rows.

def _rows_2d(x):
    if x.ndim != 2 or x.strides[1] != x.itemsize or x.strides[0] % x.itemsize:
        raise ValueError(f"fused kernels take rows with unit stride; got strides {x.strides}")
    return row_layout(x, 1)


def logsumexp_forward(x):
    """(m, ls) per row of a 2-D array, lse = m + ls."""
    m, ls, _ = lse_rows(x, _rows_2d(x), want_result=False)
    return m, ls


def logsumexp_backward(x, m, ls, grad):
    """grad[i] * exp((x[i] - m[i]) - ls[i]) for each row i."""
    cp = cupy_module()
    return apply_row_stats(x, _rows_2d(x), cp.ascontiguousarray(m), cp.ascontiguousarray(ls), "lse_grad",
                           cp.ascontiguousarray(grad, dtype=x.dtype), 1)


def softmax_forward(x, log):
    return softmax_rows(x, _rows_2d(x), log)


def softmax_backward(y, grad, log):
    return softmax_rows_backward(y, _rows_2d(y), grad, _rows_2d(grad), log)


def _weights(cp, weight, dtype):
    if weight is None:
        return None, None
    weight = cp.ascontiguousarray(weight, dtype=accumulate_dtype(dtype))
    return weight, weight.sum(keepdims=True)


def cross_entropy_forward(x, target, weight, ignore_index, smoothing):
    """Per row: (loss, weight of the target class (0 if ignored), m, ls), in
    the accumulation dtype."""
    cp = cupy_module()
    weight, weight_sum = _weights(cp, weight, x.dtype)
    out = cross_entropy_rows(x, _rows_2d(x), cp.ascontiguousarray(target), weight, weight_sum, ignore_index,
                             smoothing, "none", loss_in_acc=True, row_weight=True)
    return out["loss"], out["row_weight"], out["m"], out["ls"]


def cross_entropy_backward(x, target, weight, ignore_index, smoothing, m, ls, grad):
    """The gradient w.r.t. x; ``grad`` holds one upstream value per row, or one for all."""
    cp = cupy_module()
    weight, weight_sum = _weights(cp, weight, x.dtype)
    grad = cp.ascontiguousarray(grad, dtype=x.dtype).reshape(-1)
    if grad.size not in (1, x.shape[0]):
        raise ValueError(f"cross_entropy_backward: {grad.size} upstream values for {x.shape[0]} rows")
    return cross_entropy_rows_backward(x, _rows_2d(x), cp.ascontiguousarray(target), weight, weight_sum,
                                       ignore_index, smoothing, cp.ascontiguousarray(m), cp.ascontiguousarray(ls),
                                       grad, 0 if grad.size == 1 else 1, None)


def check_targets(target, cols, ignore_index):
    """Record in the error word any class index outside [0, cols) that is not ignore_index."""
    check_index_range(target, 0, cols, errors.CLASS_INDEX, cols, ignore_index)
