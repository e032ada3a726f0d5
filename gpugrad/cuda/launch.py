"""The launch machinery the fused ops' CUDA launchers share (plain CuPy).

An op reduces its input ``x`` along one dim: :func:`row_layout` describes x
as R = outer * inner rows of C elements with element strides (so, si, sc),
without copying (strided kernels; a copy only where the outer or inner dims
cannot be merged, :func:`layout_of`).  Outputs of x's shape are written
contiguous (:func:`output_like`); per-row results come in row order (the
shape of x without the reduced dim).

Launch shape (:func:`launch_shape`): contiguous rows get G lanes each (a
slice of a warp for short rows, several rows per warp; a warp; or a block of
128-512 threads for long rows), strided rows a thread each; the grid strides
over row groups (at most ``BLOCKS_PER_SM`` x SMs blocks), and few long rows
are split over grid.y; :func:`warp_rows` sets the rows per block of a
warp-per-row launch (``WARP_ROWS`` there).  A row group whose rows fit in shared memory is read
from global memory once (:func:`cache_bytes`): up to the device's opt-in
limit per block (227 KiB on sm_90, 163 KiB on sm_80), which :func:`launch`
asks for when a launch needs more than the default 48 KiB.

:func:`launch` looks the kernel up in the loader (``gpugrad/cuda/kernels.py``,
compiled once per device) and launches it.
"""

import collections
import math

import numpy

from gpugrad import backend, dtypes
from gpugrad.cuda import kernels

MAX_THREADS = 512            # the kernels' __launch_bounds__
CLUSTER_THREADS = 1024       # the row cluster forwards of log-sum-exp and cross-entropy (common.cuh)
UNROLL = 4                   # vectors in flight per lane (common.cuh, traverse)
DEFAULT_DYNAMIC_SHARED_BYTES = 48 * 1024   # static + dynamic shared memory a block gets without opting in
STATIC_SHARED_BYTES = 8 * 1024   # room left for a kernel's static shared memory (at most ~4.9 KB now)
BLOCKS_PER_SM = 8
WARP_ROWS = 8                # rows (warps) per block of a warp-per-row launch (launch_shape)
SPLIT_MIN_COLS = 16384       # rows at least this long are split when there are too few of them
SPAN_MAX_COLS = 63           # rows up to this long, one after another, go by spans (span_rows)
SPAN_BYTES = 16 * 1024       # the most shared memory one span of rows takes
CHECK_BLOCKS_PER_SM = 2      # blocks of a backward that mostly returns at once (check_shape)

RowLayout = collections.namedtuple("RowLayout", "shape dim rows cols inner so si sc")
LaunchShape = collections.namedtuple("LaunchShape", "grid block lanes rows_per_block")

_sm_counts = {}
_capabilities = {}
_shared_optin = {}
_dynamic_shared = {}         # (filename, name, device) -> the dynamic shared memory the kernel may use
_scratch = {}                # (device, stream) -> cached zeroed counters


def float_type(dtype):
    """The kernels' template argument for a floating dtype (``float``, ``__half``, ...)."""
    return kernels.FLOAT_TYPES[dtypes.dtype_name(numpy.dtype(dtype))]


def index_type(dtype):
    """The kernels' template argument for an index dtype (``int``, ``long long``)."""
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
        x = backend.cupy_module().ascontiguousarray(x)
        layout = contiguous_layout(x.shape, dim)
    return x, layout


def sm_count(device_id):
    """The device's multiprocessor count (cached)."""
    count = _sm_counts.get(device_id)
    if count is None:
        device = backend.cupy_module().cuda.Device(device_id)
        count = _sm_counts[device_id] = int(device.attributes["MultiProcessorCount"])
    return count


def compute_capability(device_id):
    """The device's compute capability as a number (90 for sm_90; cached)."""
    capability = _capabilities.get(device_id)
    if capability is None:
        capability = _capabilities[device_id] = int(backend.cupy_module().cuda.Device(device_id).compute_capability)
    return capability


def shared_memory_limit(device_id):
    """The dynamic shared memory a block may keep rows in on this device: the
    opt-in maximum per block, less room for the kernels' static shared memory
    (cached)."""
    limit = _shared_optin.get(device_id)
    if limit is None:
        attributes = backend.cupy_module().cuda.Device(device_id).attributes
        limit = _shared_optin[device_id] = int(attributes["MaxSharedMemoryPerBlockOptin"]) - STATIC_SHARED_BYTES
    return limit


def launch_shape(layout, itemsize, device_id, split_long_rows=False):
    """(grid, block) and the lanes per row for a row kernel on a device."""
    rows, cols = layout.rows, layout.cols
    sms = sm_count(device_id)
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
            lanes, per_block = 32, WARP_ROWS
        else:                                        # a block per row
            lanes = 128 if vectors <= 2048 else 256 if vectors <= 8192 else MAX_THREADS
            per_block = 1
            if split_long_rows and cols >= SPLIT_MIN_COLS and rows < 2 * sms:
                splits = max(1, min(-(-2 * sms // max(rows, 1)), cols // 4096, 65535))
    blocks = max(1, min(-(-rows // per_block), BLOCKS_PER_SM * sms * max(1, 256 // (lanes * per_block))))
    return LaunchShape((blocks, splits), (lanes, per_block), lanes, per_block)


def warp_rows(shape, layout, per_block, device_id):
    """A warp-per-row ``shape`` (launch_shape's) with ``per_block`` rows per
    block, the grid over the row groups as launch_shape's; other shapes as
    they are."""
    if shape.lanes != 32:
        return shape
    blocks = max(1, min(-(-layout.rows // per_block), BLOCKS_PER_SM * sm_count(device_id) *
                        max(1, 256 // (32 * per_block))))
    return LaunchShape((blocks, shape.grid[1]), (32, per_block), 32, per_block)


def span_rows(layout, itemsize):
    """Rows per span for short rows that lie one after another (row r at r *
    C, any 16-byte phase): a block of that many threads reads them as one span
    of 16-byte vectors into shared memory and works on a row per thread
    (common.cuh, SpanLoad); 0 where the span kernels do not apply (rows
    longer than SPAN_MAX_COLS, strided rows, gaps between rows)."""
    if layout.cols > SPAN_MAX_COLS or (layout.sc != 1 and layout.cols > 1) or not (
            layout.rows == 1 or (layout.inner == 1 and layout.so == layout.cols)):
        return 0
    return max(32, min(256, SPAN_BYTES // (layout.cols * itemsize) // 32 * 32))


def span_shape(layout, per_span, device_id):
    """The launch of a span kernel: ``per_span`` threads (rows) per block, the
    blocks striding over the spans, at most a full SM's threads per SM."""
    blocks = max(1, min(-(-layout.rows // per_span), 2048 // per_span * sm_count(device_id)))
    return LaunchShape((blocks, 1), (per_span, 1), per_span, 1)


def span_bytes(per_span, cols, itemsize, arrays=1):
    """Dynamic shared memory of a span kernel (common.cuh, span_room)."""
    vector = 16 // itemsize
    return arrays * (-(-(per_span * cols + vector) // vector)) * vector * itemsize


def _room(cols, itemsize):
    vector = 16 // itemsize
    return -(-(cols + vector) // vector) * vector * itemsize


def chunk_length(cols, splits, itemsize):
    """Elements per chunk of a row split over ``splits`` blocks (common.cuh's
    chunk_length: whole 16-byte vectors)."""
    if splits == 1:
        return cols
    vector = 16 // itemsize
    return -(-(-(-cols // splits)) // vector) * vector


def cache_bytes(shape, layout, itemsize, device_id, arrays=1):
    """Dynamic shared memory to keep a block's rows, or its chunks of rows
    split over grid.y (0: do not cache)."""
    if layout.sc != 1:
        return 0
    need = shape.rows_per_block * arrays * _room(chunk_length(layout.cols, shape.grid[1], itemsize), itemsize)
    return need if need <= shared_memory_limit(device_id) else 0


def row_cluster(layout, itemsize, device_id, arrays=1):
    """Blocks per row cluster (kernels.CLUSTER_SIZES) for contiguous rows a
    block cannot keep in shared memory, or few long rows, on sm_90 (0 below
    sm_90 and for other rows): the fewest blocks whose chunks fit, else the
    most (rows longer than a cluster's shared memory: each block reads its
    chunk twice, the second time mostly from L2)."""
    if layout.sc != 1 or compute_capability(device_id) < 90:
        return 0
    limit, cols = shared_memory_limit(device_id), layout.cols
    long_rows = arrays * _room(cols, itemsize) > limit
    few_rows = cols >= SPLIT_MIN_COLS and layout.rows < 2 * sm_count(device_id)
    if not (long_rows or few_rows):
        return 0
    for size in kernels.CLUSTER_SIZES:
        if arrays * _room(chunk_length(cols, size, itemsize), itemsize) <= limit:
            return size
    return kernels.CLUSTER_SIZES[-1]


def check_shape(shape, device_id):
    """The launch of a backward that checks, on the device, whether the
    gradient its forward wrote is the one wanted, and mostly returns at once:
    ``shape`` with at most CHECK_BLOCKS_PER_SM blocks per SM along grid.x (the
    rows, when the gradient must be computed again, strided over them)."""
    return shape._replace(grid=(min(shape.grid[0], CHECK_BLOCKS_PER_SM * sm_count(device_id)), shape.grid[1]))


def cluster_threads(layout, size, itemsize, device_id):
    """Threads per block of a row cluster forward that may take up to
    CLUSTER_THREADS (log-sum-exp's and cross-entropy's): CLUSTER_THREADS for
    few long rows whose chunks hold more than UNROLL vectors per thread of a
    MAX_THREADS block (a row's time is then its rounds of dependent loads:
    twice the threads on each of the cluster's SMs, half the rounds), else
    MAX_THREADS."""
    few_rows = layout.cols >= SPLIT_MIN_COLS and layout.rows < 2 * sm_count(device_id)
    vectors = -(-chunk_length(layout.cols, size, itemsize) * itemsize // 16)
    return CLUSTER_THREADS if few_rows and vectors > UNROLL * MAX_THREADS else MAX_THREADS


def cluster_shape(layout, size, device_id, threads=MAX_THREADS):
    """The launch of a row cluster kernel: a block of ``threads`` per chunk,
    ``size`` chunks per row along grid.y (the cluster), the clusters striding
    over the rows."""
    blocks = max(1, min(layout.rows, BLOCKS_PER_SM * sm_count(device_id) // size))
    return LaunchShape((blocks, size), (threads, 1), threads, 1)


def counters(device_id, count):
    """At least ``count`` zeroed uint32 counters for last-block reductions on
    this device and the current stream (the kernels leave them at zero; per
    stream, so concurrent launches on two streams do not share one)."""
    cp = backend.cupy_module()
    key = (device_id, cp.cuda.get_current_stream().ptr)
    buffer = _scratch.get(key)
    if buffer is None or buffer.size < count:
        buffer = cp.zeros(max(count, 1024), dtype=numpy.uint32)
        _scratch[key] = buffer
    return buffer


_exchanges = {}              # (device, stream) -> [words, generation of the next launch]
EXCHANGE_HEAD = 3            # cross_entropy.cu's SpanExchange: two arrival words and the tickets, then per
EXCHANGE_VALUES = 3          # slot a word for its claim and two for each of three tagged values


def exchange(device_id, slots):
    """(words, generation) for one launch of a kernel whose blocks exchange
    values through tagged slots (cross_entropy.cu's SpanExchange): a uint64
    buffer per device and stream, zeroed when made, and the number of this
    launch on it (1, 2, ...).  Call :func:`exchanged` once the launch is
    queued.  A new buffer (generation 1) when ``slots`` outgrows it and before
    the 32-bit tags would wrap."""
    cp = backend.cupy_module()
    key = (device_id, cp.cuda.get_current_stream().ptr)
    state = _exchanges.get(key)
    size = EXCHANGE_HEAD + (1 + 2 * EXCHANGE_VALUES) * slots
    if state is None or state[0].size < size or state[1] >= 2**32 - 1:
        state = _exchanges[key] = [cp.zeros(max(size, 4096), dtype=numpy.uint64), 1]
    return state[0], numpy.uint32(state[1])


def exchanged(device_id):
    """The launch given the last :func:`exchange` of this device and stream is queued: the next gets the
    next generation (the kernel takes the one before as its last)."""
    _exchanges[(device_id, backend.cupy_module().cuda.get_current_stream().ptr)][1] += 1


def launch(filename, name, device_id, shape, args, shared_mem=0):
    """Launch the kernel ``name`` of ``filename`` with a LaunchShape."""
    function = kernels.get_function(filename, name, device_id)
    if shared_mem:
        key = (filename, name, device_id)
        if shared_mem > _dynamic_shared.get(key, DEFAULT_DYNAMIC_SHARED_BYTES - function.shared_size_bytes):
            # beyond the default 48 KiB a kernel must opt in (cudaFuncAttributeMaxDynamicSharedMemorySize)
            function.max_dynamic_shared_size_bytes = shared_mem
            _dynamic_shared[key] = shared_mem
        function(shape.grid, shape.block, args, shared_mem=shared_mem)
    else:
        function(shape.grid, shape.block, args)


def i64(value):
    """A 64-bit integer kernel argument."""
    return numpy.int64(value)


def strides(layout):
    """inner, so, si, sc of a layout as kernel arguments."""
    return i64(layout.inner), i64(layout.so), i64(layout.si), i64(layout.sc)


def output_like(x, layout):
    """(an array of x's shape for a kernel to write, its so, si, sc).  Rows of
    x that do not start on a 16-byte boundary (a view such as
    logits[:, :50257] of a wider array, or x[:, 1:]) get output rows with the
    same 16-byte phase, so the kernel stores whole vectors; otherwise the
    output is contiguous."""
    cp = backend.cupy_module()
    vector = 16 // x.itemsize
    phase = x.data.ptr % 16
    rows, cols, so = layout.rows, layout.cols, layout.so
    if layout.inner == 1 and layout.sc == 1 and (so != cols or phase) and cols <= so <= cols + cols // 8 + vector \
            and phase % x.itemsize == 0:
        offset = phase // x.itemsize
        flat = cp.empty(rows * so + vector, dtype=x.dtype)
        out = flat[offset:offset + rows * so].reshape(rows, so)[:, :cols]
        return out.reshape(layout.shape), i64(so), i64(0), i64(1)
    return cp.empty(layout.shape, dtype=x.dtype), i64(layout.cols * layout.inner), i64(1), i64(layout.inner)


def per_row(grad, shape, dtype):
    """An upstream gradient as one value per row, in ``dtype``, and its element
    stride: a 1-D view (stride 0 for one value broadcast to every row), copied
    only when it must be."""
    g = backend.cupy_module().broadcast_to(grad, shape).reshape(-1)
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g, 0 if g.size == 1 else g.strides[0] // g.itemsize
