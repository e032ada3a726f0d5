"""Launches over many tensors at once (torch's multi_tensor_apply): the
optimizers' steps (kernels/optimizers.cu) and the _foreach-style operations of
gradient clipping and loss scaling (kernels/foreach.cu).

A launch takes the tensors of one dtype and device, described by a table in
device memory (kernels/multi_tensor.cuh): per tensor, the addresses of its
arrays (parameter, gradient, state...), its size, its first chunk, and its own
numbers (learning rate and the like, so parameter groups share a launch).  The
table is built on the host and copied to the device with one transfer per
launch group; nothing is read back (a GradScaler's ``found_inf`` and the norm
that clips are read on the device).
"""

import collections

import numpy

from gpugrad import backend
from gpugrad.cuda import errors, kernels, launch

CHUNK = 65536          # elements per chunk, as torch's multi_tensor_apply
THREADS = 512
MAX_BLOCKS_PER_SM = 16

NORM_SQUARES, NORM_ABSOLUTE, NORM_MAXIMUM, NORM_MINIMUM, NORM_POWER = range(5)

Table = collections.namedtuple("Table", "words tensors chunks device_id stride")


def _address(array):
    return 0 if array is None else array.data.ptr


def build_table(rows, numbers=None):
    """The device table of ``rows`` (per tensor, a tuple of contiguous arrays of
    one size, or None where absent; the first must be present) with their
    per-tensor ``numbers`` (tuples of floats).  Tensors without elements are
    left out."""
    first = rows[0][0]
    lists = len(rows[0])
    width = len(numbers[0]) if numbers else 0
    words = []
    values = []
    chunk = 0
    kept = 0
    for i, arrays in enumerate(rows):
        size = arrays[0].size
        if size == 0:
            continue
        words.extend(_address(a) for a in arrays)
        words.append(size)
        words.append(chunk)
        chunk += -(-size // CHUNK)
        kept += 1
        if width:
            values.extend(numbers[i])
    stride = lists + 2 + width
    host = numpy.empty((kept, stride), dtype=numpy.int64)
    if kept:
        host[:, :lists + 2] = numpy.array(words, dtype=numpy.uint64).view(numpy.int64).reshape(kept, lists + 2)
        if width:
            host[:, lists + 2:] = numpy.array(values, dtype=numpy.float64).view(numpy.int64).reshape(kept, width)
    device_id = backend.device_key(first)
    with backend.device_guard(backend.device_from_key(device_id)):
        device_words = backend.cupy_module().asarray(host.reshape(-1))
    return Table(device_words, kept, chunk, device_id, stride)


def _grid(table):
    return (max(1, min(table.chunks, MAX_BLOCKS_PER_SM * launch.sm_count(table.device_id))),)


def _run(filename, name, dtype, table, args, grid=None):
    function = kernels.get_function(filename, f"{name}<{launch.float_type(dtype)}>", table.device_id)
    function(grid or _grid(table), (THREADS,), args)


def _pointer(array):
    return numpy.uint64(0) if array is None else array


def group_by_dtype(items, array_of):
    """{dtype: [item, ...]} in first-seen order (a launch per dtype)."""
    groups = {}
    for item in items:
        groups.setdefault(array_of(item).dtype, []).append(item)
    return groups


# -- optimizers -------------------------------------------------------------------------

def optimizer_step(kernel, rows, numbers, found_inf=None, step_list=None):
    """One launch of ``kernel`` (sgd_step, adam_step, rmsprop_step or
    adagrad_step) over ``rows`` (tuples of arrays in the kernel's order, all of
    one dtype, on one device) with their ``numbers``.  ``found_inf``: a 0-d
    float32 device array; the step does nothing where it is not 0.  When
    ``step_list`` is the index of the rows' device step counters (float32), they
    are incremented first (unless found_inf), as the update reads them."""
    table = build_table(rows, numbers)
    if table.tensors == 0:
        return
    found = _pointer(found_inf)
    if step_list is not None:
        function = kernels.get_function("optimizers.cu", "increment_steps", table.device_id)
        function((max(1, -(-table.tensors // THREADS)),), (THREADS,),
                 (table.words, numpy.int32(table.tensors), numpy.int32(table.stride), numpy.int32(step_list), found))
    _run("optimizers.cu", kernel, rows[0][0].dtype, table,
         (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(table.chunks), found))


# -- foreach operations -----------------------------------------------------------------

def norm_kind(norm_type):
    """(kernel kind, p) for a vector norm's order, or None where the kernels have none (0)."""
    if norm_type == 2.0:
        return NORM_SQUARES, 2.0
    if norm_type == 1.0:
        return NORM_ABSOLUTE, 1.0
    if norm_type == float("inf"):
        return NORM_MAXIMUM, norm_type
    if norm_type == float("-inf"):
        return NORM_MINIMUM, norm_type
    if norm_type == 0.0 or norm_type != norm_type:
        return None
    return NORM_POWER, float(norm_type)


def total_norm(arrays, norm_type, max_norm=None, error_if_nonfinite=False):
    """The ``norm_type`` norm of all of ``arrays`` together (contiguous, on one
    device; a 0-d array of the first one's dtype), with a launch per dtype for
    the chunks' partial norms and one that combines them.  With ``max_norm``,
    the arrays are also scaled in place by min(max_norm / (norm + 1e-6), 1)
    (clip_grad_norm_), in that same launch.  A non-finite norm with
    ``error_if_nonfinite`` is recorded in the device's error word (raised at the
    next synchronising call; nothing is scaled)."""
    kind, p = norm_kind(norm_type)
    groups = group_by_dtype(arrays, lambda a: a)
    cp = backend.cupy_module()
    tables = {dtype: build_table([(a,) for a in group]) for dtype, group in groups.items()}
    first = arrays[0]
    device_id = backend.device_key(first)
    count = sum(t.chunks for t in tables.values())
    with backend.device_guard(backend.device_from_key(device_id)):
        partials = cp.empty(max(count, 1), dtype=numpy.float64)
        total = cp.empty((), dtype=first.dtype)
    offset = 0
    for dtype, table in tables.items():
        if table.chunks:
            _run("foreach.cu", "norm_partials", dtype, table,
                 (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(table.chunks),
                  numpy.int32(kind), numpy.float64(p), partials[offset:offset + table.chunks]))
        offset += table.chunks
    scale = max_norm is not None
    # the total is written by the launch of the first array's dtype
    order = [first.dtype] + [d for d in tables if d != first.dtype]
    for dtype in order:
        table = tables[dtype]
        if not scale and dtype != first.dtype:
            continue
        chunks = table.chunks if scale else 0
        grid = _grid(table) if chunks else (1,)
        _run("foreach.cu", "scale_by_norm", dtype, table,
             (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(chunks), partials,
              launch.i64(count), numpy.uint64(0), numpy.int32(kind), numpy.float64(p),
              numpy.float64(max_norm if scale else 0.0), total if dtype == first.dtype else numpy.uint64(0),
              numpy.int32(bool(error_if_nonfinite)), numpy.float64(norm_type), errors.argument(device_id)),
             grid=grid)
    if error_if_nonfinite:
        errors.launched(device_id)
    return total


def scale_by_norm(arrays, max_norm, total):
    """Scale ``arrays`` in place by min(max_norm / (total + 1e-6), 1), ``total``
    a 0-d float64 device array (clip_grads_with_norm_): a launch per dtype."""
    for dtype, group in group_by_dtype(arrays, lambda a: a).items():
        table = build_table([(a,) for a in group])
        if table.chunks:
            _run("foreach.cu", "scale_by_norm", dtype, table,
                 (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(table.chunks),
                  numpy.uint64(0), launch.i64(0), total, numpy.int32(NORM_SQUARES), numpy.float64(2.0),
                  numpy.float64(max_norm), numpy.uint64(0), numpy.int32(0), numpy.float64(2.0),
                  errors.argument(table.device_id)))


def unscale_and_check(arrays, scale, found_inf):
    """arrays *= 1 / scale in place (``scale`` a 0-d float32 device array; the
    reciprocal as torch takes it), setting the 0-d float32 ``found_inf`` to 1
    where an element was inf or nan: a launch per dtype."""
    for dtype, group in group_by_dtype(arrays, lambda a: a).items():
        table = build_table([(a,) for a in group])
        if table.chunks:
            _run("foreach.cu", "unscale_check", dtype, table,
                 (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(table.chunks),
                  scale, found_inf))


def clamp(arrays, low, high):
    """Clamp ``arrays`` into [low, high] in place (nan kept): a launch per dtype."""
    for dtype, group in group_by_dtype(arrays, lambda a: a).items():
        table = build_table([(a,) for a in group])
        if table.chunks:
            _run("foreach.cu", "clamp_values", dtype, table,
                 (table.words, numpy.int32(table.tensors), launch.i64(CHUNK), launch.i64(table.chunks),
                  numpy.float64(low), numpy.float64(high)))
