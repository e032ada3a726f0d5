"""cross_entropy: softmax cross-entropy over (N, C, d...) logits (class dim 1)
and class indices, fused: one pass forward, one backward
(kernels/cross_entropy.cu on CUDA).

The forward keeps the rows' statistics (m, ls) and, under 'mean', the
denominator (the sum of the targets' weights); the backward recomputes the
softmax from them.  When the gradient will be wanted (a reduced loss), the
forward writes it while it holds the row, for the upstream gradient the last
backward of a loss of its kind received (1 at first); the backward returns it
without touching the logits again when that is the gradient that came: with
no launch when the engine knows its value on the host (``loss.backward()``,
``(2 * loss).backward()``, ``loss / k``: ``engine.known_upstream``), else
after a check on the device (a tensor scale: GradScaler).  Class indices out
of range raise IndexError: on the CPU at once, on the GPU at the next
synchronising read (the kernel records them in the error word).
"""

import collections
import math
import weakref

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd import engine
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import errors, kernels, launch
from gpugrad.ops.elementwise import where
from gpugrad.ops.fused import rows
from gpugrad.ops.fused.softmax import softmax
from gpugrad.tensor import Tensor

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}    # (the kernels' codes)
# On CUDA under 'mean' the forward writes the gradient from this many classes on: each block then reads
# the N targets (8 bytes each) for the denominator, so the grid is bounded to keep those reads within the
# logits' bytes counted at 4 bytes an element at least (TARGET_BYTES per row and block; half and bfloat16
# rows as float32's, whose blocks hold as many rows), with at least one block per SM
GRAD_IN_FORWARD_MIN_COLS = 512
TARGET_BYTES = 8
# Rows per block of a warp-per-row forward that writes the gradient (launch.WARP_ROWS otherwise): 512
# threads, so that under 'mean' a block's reads of the N targets take half the dependent rounds, and
# 4096 x 1000 fits one wave of one row group per block (2 blocks of 64 registers per SM)
GRAD_WARP_ROWS = 16

Forward = collections.namedtuple("Forward", "loss m ls grad denominator source")
Forward.__doc__ = """The forward's result: ``loss`` per row in row order ('none') or 0-d, in
x's dtype (the accumulation dtype with ``loss_in_acc``); ``m``, ``ls`` the
rows' statistics; ``grad`` the gradient w.r.t. x for an upstream gradient of 1
(x's shape) when asked for and computed, else None; ``denominator`` under
'mean' (a 1-element array: the sum of the targets' weights), else None;
``source``: x as the implementation read it, what the backward takes."""

_class_weights = {}      # id(weight tensor) -> (weakref to it, its array, its version, {dtype: (w, W)})


def class_weight_arrays(weight, dtype):
    """(w, W): class weights in the accumulation dtype of ``dtype`` and their
    sum as a 1-element array, cached per weight tensor and version (a module's
    weight buffer is converted and summed once, not on every call)."""
    if weight is None:
        return None, None
    acc = dtypes.accumulate_dtype(dtype)
    key = id(weight)
    entry = _class_weights.get(key)
    if entry is None or entry[0]() is not weight or entry[1] is not weight.array or entry[2] != weight._version:
        # (a WeakKeyDictionary would compare tensors with their elementwise ==)
        entry = (weakref.ref(weight, lambda _, key=key: _class_weights.pop(key, None)), weight.array,
                 weight._version, {})
        _class_weights[key] = entry
    cached = entry[3].get(acc)
    if cached is None:
        w = weight.xp.ascontiguousarray(weight.array, dtype=acc)
        cached = entry[3][acc] = (w, w.sum(keepdims=True))
    return cached


# -- the NumPy twin ---------------------------------------------------------------------

def _target_rows(xp, target, weight, ignore_index, classes, acc):
    """(valid, safe target, w_t) per row; bad targets raise on the CPU."""
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise IndexError(f"Target {value} is out of bounds: class indices must lie in [0, {classes}) "
                         f"or equal ignore_index ({ignore_index})")
    safe = xp.where(valid, target, 0)
    w_t = valid.astype(acc) if weight is None else weight[safe] * valid
    return valid, safe, w_t


def _rows_last(xp, x):
    """(N, C, d...) logits as (R, C) rows (a copy on the CPU when d... is not empty)."""
    if x.ndim == 2:
        return x
    return xp.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _rows_back(xp, rows_, shape):
    if len(shape) == 2:
        return rows_
    moved = rows_.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return xp.moveaxis(moved, -1, 1)


def forward_numpy(x, target, weight, weight_sum, ignore_index, smoothing, reduction, with_grad,
                  loss_in_acc=False, overwrite=False, upstream=None, keep_stats=True):
    """The loss of (N, C, d...) logits x and their R = N * d... class indices
    ``target`` (contiguous, row order), with class weights ``weight`` and their
    sum ``weight_sum`` in the accumulation dtype (or None); the gradient too
    when ``with_grad``, for the upstream gradient ``upstream`` (a 1-element
    array of x's dtype, or None for 1).  ``overwrite``: x is the caller's
    scratch, the gradient may take its place.  ``keep_stats``: the CUDA
    launcher may leave m and ls out (None) where it is False and the backward
    recomputes them; here they are always kept.  Returns a Forward."""
    xp = backend.xp_for(x)
    logits = _rows_last(xp, x)
    count, classes = logits.shape
    acc = dtypes.accumulate_dtype(x.dtype)
    valid, safe, w_t = _target_rows(xp, target, weight, ignore_index, classes, acc)
    x_t = logits[xp.arange(count), safe].astype(acc)
    m, ls, e, weighted = rows.row_stats(xp, logits, 1, weight, smoothing=bool(smoothing), overwrite=overwrite)
    m, ls = m[:, 0], ls[:, 0]
    shifted_t = x_t - m                                              # x_t - m
    loss = (1 - smoothing) * w_t * (ls - shifted_t)
    total = classes if weight is None else weight_sum[0]
    if smoothing:
        loss = loss + (smoothing / classes) * (total * ls - weighted[:, 0])
    special = rows.special_rows(xp, ls)
    if special is not None:
        loss = xp.where(special, xp.nan, loss)
    loss = xp.where(valid, loss, 0)
    denominator = backend.array_sum(w_t, keepdims=True) if reduction == "mean" else None   # 1 element, as on the GPU
    if reduction == "none":
        result = loss
    else:
        result = backend.array_sum(loss)
        if reduction == "mean":
            result = result / denominator[0]
    dx = None
    if with_grad:
        g = acc.type(1) if upstream is None else upstream.astype(acc)[0]
        if reduction == "mean":
            g = g / denominator[0]
        scale = g * ((1 - smoothing) * w_t + (smoothing / classes) * total)
        e *= (scale * xp.exp(-ls))[:, None]
        if smoothing:
            spread = xp.ones(classes, dtype=acc) if weight is None else weight
            e -= (g * (smoothing / classes)) * spread[None, :]     # (as backward_numpy: the same bits)
        e[xp.arange(count), safe] -= g * (1 - smoothing) * w_t
        if not bool(valid.all()):
            e[~valid] = 0
        if special is not None:      # torch's: log_softmax's backward makes a row without finite statistics
            e[special] = xp.nan      # nan, ignored or not (0 * exp(nan))
        dx = _rows_back(xp, e.astype(x.dtype, copy=False), x.shape)
    result = xp.asarray(result)
    return Forward(result if loss_in_acc else result.astype(x.dtype, copy=False), m, ls, dx, denominator, x)


def backward_numpy(x, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad, denominator,
                   forward_grad=None, applied=None, next_upstream=None):
    """The gradient w.r.t. x (the forward's source): G * (softmax * S - T), T
    the target distribution, S its total weight per row, G = ``grad`` (R
    values, or one for all rows) divided by ``denominator`` when given;
    ignored rows are 0.  ``forward_grad``: the forward's gradient, written for
    the upstream gradient ``applied`` (a 1-element array of x's dtype; ``grad``
    then holds one value), returned as it is when ``grad`` is that value (None:
    known to differ).
    ``next_upstream``: a 1-element array of x's dtype to copy ``grad`` into."""
    came = grad.astype(x.dtype).reshape(-1)[:1] if next_upstream is not None or forward_grad is not None else None
    if next_upstream is not None:
        next_upstream[...] = came
    if forward_grad is not None and applied is not None and _same_value(came[0], applied[0]):
        return forward_grad
    xp = backend.xp_for(x)
    logits = _rows_last(xp, x)
    count, classes = logits.shape
    acc = dtypes.accumulate_dtype(x.dtype)
    per_row = grad.astype(acc, copy=False).reshape(-1)
    if denominator is not None:
        per_row = per_row / denominator[0]
    valid, safe, w_t = _target_rows(xp, target, weight, ignore_index, classes, acc)
    total = classes if weight is None else weight_sum[0]
    g = xp.where(valid, xp.broadcast_to(per_row, (count,)), 0)
    scale = g * ((1 - smoothing) * w_t + (smoothing / classes) * total)
    out = rows.softmax_times(xp, logits, m[:, None], ls[:, None], scale[:, None])
    if smoothing:
        spread = xp.ones(classes, dtype=acc) if weight is None else weight
        out -= (g * (smoothing / classes))[:, None] * spread[None, :]
    out[xp.arange(count), safe] -= g * (1 - smoothing) * w_t
    special = rows.special_rows(xp, ls)
    if not bool(valid.all()):
        out[~valid] = 0
    if special is not None:      # torch's: nan for a row without finite statistics, ignored or not
        out[special] = xp.nan
    return _rows_back(xp, out.astype(x.dtype, copy=False), x.shape)


# -- the CUDA launcher ------------------------------------------------------------------

def forward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, reduction, with_grad,
                 loss_in_acc=False, overwrite=False, upstream=None, keep_stats=True):
    """forward_numpy's result in one launch (the gradient, when written, for
    the upstream gradient ``upstream``: a 1-element array of x's dtype, or
    None for 1).  Rows too long for one block's
    shared memory, and few long rows, go to a row cluster on sm_90, which
    keeps the gradient in the forward; below sm_90 few long rows are split
    over blocks and the gradient is left to the backward, as it is under
    'mean' for fewer than GRAD_IN_FORWARD_MIN_COLS classes.  A bad target is
    recorded in the error word.  Short rows one after another
    (launch.span_rows) go by spans, the gradient in the forward under 'mean'
    too, and keep no statistics unless ``keep_stats`` (the backward
    recomputes them from the rows it reads).  (The kernel writes a new
    gradient: overwrite has no use here.)"""
    cp = backend.cupy_module()
    x, layout = launch.layout_of(x, 1)
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    count, cols = layout.rows, layout.cols
    code = REDUCTIONS[reduction]
    # (the span forward counts the used targets in 32 bits)
    per_span = launch.span_rows(layout, x.itemsize) if count < 2**32 else 0
    if per_span:
        return _span_forward(x, layout, per_span, target, weight, weight_sum, ignore_index, smoothing, code,
                             with_grad, loss_in_acc, upstream, keep_stats)
    if code == 2 and cols < GRAD_IN_FORWARD_MIN_COLS:
        with_grad = False
    float_type = launch.float_type(x.dtype)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        if with_grad:
            shape = launch.warp_rows(shape, layout, GRAD_WARP_ROWS, device_id)
        cluster = launch.row_cluster(layout, x.itemsize, device_id) if with_grad and \
            float_type in kernels.CLUSTER_TYPES else 0
        if cluster:
            # rows beyond one block's shared memory, or few long rows: a cluster of blocks per row keeps it on
            # chip and writes the gradient (sm_90)
            shape = launch.cluster_shape(layout, cluster, device_id,
                                         launch.cluster_threads(layout, cluster, x.itemsize, device_id))
        if with_grad and code == 2:
            blocks = max(launch.sm_count(device_id), cols * max(x.itemsize, 4) // TARGET_BYTES)
            shape = shape._replace(grid=(min(shape.grid[0], blocks), shape.grid[1]))
        splits = shape.grid[1]
        split_rows = splits > 1 and not cluster     # chunks merged by the row's last block
        if split_rows:
            # few long rows: every SM gets a chunk; the gradient is then left to the backward kernel
            with_grad = False
        loss = cp.empty(count if code == 0 else (), dtype=acc if loss_in_acc else x.dtype)
        m, ls = cp.empty(count, dtype=acc), cp.empty(count, dtype=acc)
        dx, *dx_strides = launch.output_like(x, layout) if with_grad else (None, launch.i64(0), launch.i64(0),
                                                                            launch.i64(0))
        denominator = cp.empty(1, dtype=acc) if code == 2 else None
        partials = cp.empty(2 * shape.grid[0] * splits, dtype=acc) if code else None
        counters = launch.counters(device_id, 1 + (count if split_rows else 0))
        if split_rows:
            partial_m, partial_s, partial_x = (cp.empty(count * splits, dtype=acc) for _ in range(3))
            row_counters = counters[1:]
        else:
            partial_m = partial_s = partial_x = row_counters = None
        cache = launch.cache_bytes(shape, layout, x.itemsize, device_id) if with_grad else 0
        cluster_size = f", {cluster}" if cluster else ""
        name = f"cross_entropy_forward<{float_type}, {launch.index_type(target.dtype)}{cluster_size}>"
        launch.launch("cross_entropy.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(count), numpy.int32(cols), target, weight, weight_sum,
                       launch.i64(ignore_index), acc.type(smoothing), numpy.int32(code), loss,
                       numpy.int32(int(loss_in_acc)), m, ls, None, dx, *dx_strides, denominator, partials,
                       counters if code else None, errors.argument(device_id), numpy.int32(1 if cache else 0),
                       partial_m, partial_s, partial_x, row_counters, upstream if with_grad else None),
                      shared_mem=cache)
    errors.launched(device_id)
    return Forward(loss, m, ls, dx, denominator, x)


def _span_forward(x, layout, per_span, target, weight, weight_sum, ignore_index, smoothing, code, with_grad,
                  loss_in_acc, upstream, keep_stats):
    """forward_cuda for short rows one after another: one launch (common.cuh,
    SpanLoad; the loss and, under 'mean' with the gradient, the denominator
    exchanged between the blocks through launch.exchange's buffer)."""
    cp = backend.cupy_module()
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    count = layout.rows
    with cp.cuda.Device(device_id):
        shape = launch.span_shape(layout, per_span, device_id)
        loss = cp.empty(count if code == 0 else (), dtype=acc if loss_in_acc else x.dtype)
        m, ls = (cp.empty(count, dtype=acc), cp.empty(count, dtype=acc)) if keep_stats else (None, None)
        dx = launch.output_like(x, layout)[0] if with_grad else None
        denominator = cp.empty(1, dtype=acc) if code == 2 else None
        words, generation = launch.exchange(device_id, shape.grid[0]) if code else (None, numpy.uint32(0))
        name = f"cross_entropy_span_forward<{launch.float_type(x.dtype)}, {launch.index_type(target.dtype)}>"
        launch.launch("cross_entropy.cu", name, device_id, shape,
                      (x, launch.i64(count), numpy.int32(layout.cols), target, weight, weight_sum,
                       launch.i64(ignore_index), acc.type(smoothing), numpy.int32(code), loss,
                       numpy.int32(int(loss_in_acc)), m, ls, dx, denominator, words, generation,
                       errors.argument(device_id), upstream if with_grad else None),
                      shared_mem=launch.span_bytes(per_span, layout.cols, x.itemsize))
        if code:
            launch.exchanged(device_id)
    errors.launched(device_id)
    return Forward(loss, m, ls, dx, denominator, x)


def backward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad, denominator,
                  forward_grad=None, applied=None, next_upstream=None):
    """backward_numpy's result (x's shape) in one launch.  ``forward_grad``:
    the forward's gradient, written for the upstream gradient ``applied`` (a
    1-element array of x's dtype; ``grad`` then holds one value): returned as
    it is when ``grad`` equals ``applied`` (compared on the device, no host
    sync), else computed again into it (always, when ``applied`` is None: the
    caller knows they differ).  ``next_upstream``: a 1-element array of x's
    dtype the kernel copies ``grad`` into (the next forward's ``upstream``)."""
    cp = backend.cupy_module()
    x, layout = launch.layout_of(x, 1)
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    g, stride = launch.per_row(grad, grad.shape, x.dtype)
    per_span = launch.span_rows(layout, x.itemsize)
    if per_span:
        # short rows one after another: by spans, the statistics recomputed where the forward kept none
        with cp.cuda.Device(device_id):
            shape = launch.span_shape(layout, per_span, device_id)
            if forward_grad is None:
                dx = launch.output_like(x, layout)[0]
            else:                # mostly a check whose every block returns at once (as below)
                dx = forward_grad
                shape = launch.check_shape(shape, device_id)
            name = f"cross_entropy_span_backward<{launch.float_type(x.dtype)}, {launch.index_type(target.dtype)}>"
            launch.launch("cross_entropy.cu", name, device_id, shape,
                          (x, launch.i64(layout.rows), numpy.int32(layout.cols), target, weight, weight_sum,
                           launch.i64(ignore_index), acc.type(smoothing), m, ls, g, launch.i64(stride), denominator,
                           dx, applied, next_upstream),
                          shared_mem=launch.span_bytes(per_span, layout.cols, x.itemsize))
        return dx
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        if forward_grad is None:
            dx, *dx_strides = launch.output_like(x, layout)
        else:
            dx, dx_strides = forward_grad, launch.strides(launch.row_layout(forward_grad, 1))[1:]
        if applied is not None:
            shape = launch.check_shape(shape, device_id)     # mostly a check whose every block returns at once
        name = f"cross_entropy_backward<{launch.float_type(x.dtype)}, {launch.index_type(target.dtype)}>"
        launch.launch("cross_entropy.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(layout.rows), numpy.int32(layout.cols), target,
                       weight, weight_sum, launch.i64(ignore_index), acc.type(smoothing), m, ls, g,
                       launch.i64(stride), denominator, dx, *dx_strides, applied, next_upstream))
    return dx


# -- the op -----------------------------------------------------------------------------

class CrossEntropy(InternalFunction):
    """Fused softmax cross-entropy over (N, C, d...) logits (class dim 1) with
    class-index targets of shape (N, d...)."""

    takes_known_upstream = True        # engine.known_upstream: the host value of a scaled loss's gradient

    @staticmethod
    def forward(ctx, x, target, weight, weight_sum, ignore_index, reduction, smoothing):
        ctx.options = (ignore_index, reduction, smoothing)
        flat_target = ctx.xp.ascontiguousarray(target.reshape(-1))
        # the gradient in the forward pass (the implementation may decline), for the upstream gradient the
        # last backward of a loss of this kind received: 1 for loss.backward(), 2 for (2 * loss).backward()
        with_grad = ctx.needs_input_grad[0] and reduction != "none" and x.size > 0
        if with_grad:
            ctx.upstream_key = (backend.device_key(x), x.dtype, x.shape, ignore_index, reduction, smoothing)
            ctx.upstream, ctx.upstream_value = _expected(ctx.upstream_key, ctx.xp, x)
        forward = rows.pick(forward_numpy, forward_cuda, x, (1,))
        result = forward(x, flat_target, weight, weight_sum, ignore_index, smoothing, reduction, with_grad,
                         upstream=ctx.upstream if with_grad else None, keep_stats=False)
        ctx.dx = result.grad
        ctx.save_for_backward(x, result.source, flat_target, weight, weight_sum, result.m, result.ls,
                              result.denominator)
        return result.loss.reshape(target.shape) if reduction == "none" else result.loss

    @staticmethod
    def backward(ctx, grad):
        dx, ctx.dx = ctx.dx, None          # the forward's gradient is used once
        if is_grad_enabled():
            return _cross_entropy_double_backward(ctx, grad), None, None, None, None, None, None
        ignore_index, _, smoothing = ctx.options
        _, source, target, weight, weight_sum, m, ls, denominator = [
            None if t is None else t.array for t in ctx.saved_tensors]
        backward = rows.pick(backward_numpy, backward_cuda, source, (1,))
        if dx is None:
            out = backward(source, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad.array,
                           denominator)
            return Tensor._make(out), None, None, None, None, None, None
        # the forward wrote dx for the upstream gradient ctx.upstream (its host value ctx.upstream_value where
        # known): a gradient whose host value the engine knows (loss.backward(), 2 * loss, loss / k) is
        # compared on the host, with no launch; another (a tensor scale) on the device, no host sync.  The
        # gradient that came is kept for the next forward of this kind.
        known = engine.known_upstream(ctx)
        written = ctx.upstream_value
        if known is not None and written is not None and _same_value(known, written):
            return Tensor._make(dx), None, None, None, None, None, None
        following = ctx.xp.empty(1, dtype=source.dtype)
        _remember(ctx.upstream_key, (following, None if known is None else float(known)))
        # known to differ on the host: computed again into dx with no check
        applied = ctx.upstream if known is None or written is None else None
        out = backward(source, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad.array,
                       denominator, forward_grad=dx, applied=applied, next_upstream=following)
        return Tensor._make(out), None, None, None, None, None, None

    def release(self):
        super().release()
        self.dx = self.upstream = None


# The upstream gradient the forward writes its gradient for, by kind of loss (device, dtype, shape, options):
# the one the last backward of such a loss received, as (a 1-element array of x's dtype, its value on the
# host where the engine knew it, else None); 1 at first.  A training loop's (2 * loss).backward(), loss / steps
# and GradScaler.scale(loss) then find the forward's gradient right from the second step; a gradient that
# differs is computed again from the logits.  The EXPECTED_KINDS kinds used last are kept (a program of many
# shapes holds no more).
EXPECTED_KINDS = 8
_expected_upstream = collections.OrderedDict()


def _expected(key, xp, x):
    """(array, host value or None): the upstream gradient a loss of kind
    ``key`` expects, 1 for a kind not seen (or no longer kept)."""
    entry = _expected_upstream.get(key)
    if entry is None:
        return rows.one(xp, x), 1.0
    _expected_upstream.move_to_end(key)
    return entry


def _remember(key, entry):
    _expected_upstream[key] = entry
    _expected_upstream.move_to_end(key)
    while len(_expected_upstream) > EXPECTED_KINDS:
        _expected_upstream.popitem(last=False)


def _same_value(a, b):
    """a == b, telling -0 from +0 (host numbers; nan is never the same)."""
    a, b = float(a), float(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _cross_entropy_double_backward(ctx, grad):
    """The gradient as ordinary differentiable ops: G * (softmax(x) * S - T),
    T the target distribution, S its total weight per row, G the upstream
    gradient per row (divided by the mean's denominator)."""
    x, _, target, weight, weight_sum, m, ls, denominator = ctx.saved_tensors
    ignore_index, reduction, smoothing = ctx.options
    xp = x.xp
    classes = x.shape[1]
    acc = dtypes.accumulate_dtype(x.dtype)
    t = target.array
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    w = xp.ones(classes, dtype=acc) if weight is None else weight.array
    w_t = w[safe] * valid
    total = classes if weight is None else weight_sum.array[0]
    scale = (1 - smoothing) * w_t + (smoothing / classes) * total * valid
    dist = xp.zeros((t.size, classes), dtype=acc)
    dist += (smoothing / classes) * w[None, :] * valid[:, None]
    dist[xp.arange(t.size), safe] += (1 - smoothing) * w_t
    shape = (x.shape[0],) + tuple(x.shape[2:])                    # the target's shape
    column = (x.shape[0], 1) + tuple(x.shape[2:])
    scale = Tensor._make(scale.astype(x.dtype).reshape(column))
    dist = Tensor._make(_rows_back(xp, dist.astype(x.dtype), x.shape))
    g = grad if reduction == "none" else grad.expand(shape)
    if reduction == "mean":
        # an all-ignored batch has a zero denominator; every row's scale and target are 0 then,
        # so dividing by 1 instead changes nothing but keeps inf out of the graph: through
        # where's gradient it met 0 * inf = nan in the second derivative (torch's is 0)
        d = denominator.array
        g = g / Tensor._make(xp.where(d == 0, 1, d).astype(x.dtype))
    probabilities = softmax(x, 1)
    out = g.reshape(column) * (probabilities * scale - dist)
    # an ignored row: 0, nan where its softmax is (torch's log_softmax backward: 0 * exp(nan))
    return where(Tensor._make(valid.reshape(column)), out, probabilities * 0.0)


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    """The fused cross-entropy of (N, C, d...) logits and (N, d...) class
    indices (validated by ``nn.functional.cross_entropy``)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    w, w_sum = class_weight_arrays(weight, input.dtype)
    return CrossEntropy.apply(input, target.detach(), None if w is None else Tensor._make(w),
                              None if w_sum is None else Tensor._make(w_sum), int(ignore_index), reduction,
                              float(label_smoothing))
