"""logsumexp: log(sum(exp(x), dims)), computed stably, with its gradient
exp(x - lse) in one pass (kernels/logsumexp.cu on CUDA).

Both implementations keep the per-row statistics (m, ls), lse = m + ls,
with m the row's max (0 where it is not finite) and ls = log(sum(exp(x -
m))).  When x's gradient will be wanted, the forward also writes it while it
holds the row, g * exp(x - lse) for the upstream gradient g the last backward
of the same kind received (1 at first: ``lse.sum().backward()``), as
cross-entropy's forward does; the backward keeps it where that is the
gradient that came (compared on the device, with no host sync, or on the
host for the engine's own 1, with no launch) and computes the rest again
from x.
"""

import collections

import numpy

from gpugrad import backend, dtypes
from gpugrad.amp import autocast_mode
from gpugrad.autograd import engine
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import kernels, launch
from gpugrad.dims import keepdim_shape, normalize_dims, reduced_shape
from gpugrad.ops.fused import rows
from gpugrad.tensor import Tensor

Statistics = collections.namedtuple("Statistics", "lse m ls grad source")
Statistics.__doc__ = """The forward's result: lse in x's dtype, and the per-row m and ls in the
accumulation dtype, all with the reduced dims kept; ``grad``: the gradient
w.r.t. x for the upstream gradient asked for (x's shape), or None when not
asked for or not written; ``source`` is x as the implementation read it (the
kernels' contiguous copy where x's other dims cannot be merged), what the
backward takes."""


# -- the NumPy twin ---------------------------------------------------------------------

def forward_numpy(x, dims, with_grad=False, upstream=None):
    """log-sum-exp of x over ``dims`` (Statistics); with ``with_grad`` the
    gradient too, for the upstream gradient ``upstream`` (a 1-element array of
    x's dtype for every row, or None for 1)."""
    xp = backend.xp_for(x)
    m, ls, e, _ = rows.row_stats(xp, x, dims)
    grad = None
    if with_grad:
        g = m.dtype.type(1) if upstream is None else upstream.astype(m.dtype)[0]
        grad = rows.softmax_times(xp, x, m, ls, g, e=e).astype(x.dtype, copy=False)
    return Statistics((m + ls).astype(x.dtype, copy=False), m, ls, grad, x)


def backward_numpy(x, dims, m, ls, grad, forward_grad=None, applied=None, next_upstream=None):
    """grad * exp((x - m) - ls), in x's dtype (m, ls, grad with kept dims).
    ``forward_grad``: the forward's gradient, written for the upstream
    gradient ``applied`` (a 1-element array of x's dtype), kept in the rows
    whose ``grad`` is that value (the same bits as computed again), returned
    as it is when they all are.  ``next_upstream``: a 1-element array of x's
    dtype to copy grad's first value into."""
    if next_upstream is not None:
        next_upstream[...] = grad.reshape(-1)[:1].astype(x.dtype)
    keep = None
    if forward_grad is not None:
        keep = rows.same_as(grad.astype(x.dtype), applied)
        if keep.all():
            return forward_grad
    out = rows.softmax_times(backend.xp_for(x), x, m, ls, grad.astype(m.dtype, copy=False)).astype(x.dtype,
                                                                                                    copy=False)
    return out if keep is None or not keep.any() else backend.xp_for(x).where(keep, forward_grad, out)


# -- the CUDA launcher ------------------------------------------------------------------

def forward_cuda(x, dims, with_grad=False, upstream=None):
    """log-sum-exp of x over one dim (Statistics), and with ``with_grad`` the
    gradient for ``upstream`` (as forward_numpy's): one launch.  Rows too long
    for one block's shared memory, and few long rows, go to a row cluster on
    sm_90; below sm_90 few long rows are split over blocks and the gradient is
    left to the backward (``grad`` None).  Short rows one after another
    (launch.span_rows) go by spans."""
    source, layout = launch.layout_of(x, dims[0])
    m, ls, lse, grad = _launch_forward(source, layout, True, with_grad, upstream)
    shape = keepdim_shape(x.shape, dims)
    return Statistics(lse.reshape(shape), m.reshape(shape), ls.reshape(shape), grad, source)


def backward_cuda(x, dims, m, ls, grad, forward_grad=None, applied=None, next_upstream=None):
    """grad * exp((x - m) - ls) in x's shape: one launch.  ``forward_grad``,
    ``applied`` and ``next_upstream`` as backward_numpy's: the rows whose
    gradient is ``applied`` (compared on the device) keep the forward's,
    written over the others; with one value for every row that is it, every
    block returns at once."""
    x, layout = launch.layout_of(x, dims[0])
    g, stride = launch.per_row(grad, m.shape, x.dtype)
    return _launch_apply(x, layout, m.reshape(-1), ls.reshape(-1), "lse_grad", g, stride, forward_grad, applied,
                         next_upstream)


def launch_statistics(x, layout, want_result=True):
    """(m, ls, lse): per-row statistics in the accumulation dtype, and the
    log-sum-exp in x's dtype (None unless ``want_result``), in row order.
    One launch."""
    return _launch_forward(x, layout, want_result, False, None)[:3]


def _launch_forward(x, layout, want_result, with_grad, upstream):
    """launch_statistics' (m, ls, lse), and the gradient for the upstream
    gradient ``upstream`` when ``with_grad`` (x's shape; None where the rows
    are split over blocks): one launch."""
    per_span = launch.span_rows(layout, x.itemsize)
    if per_span:
        return _span_forward(x, layout, per_span, want_result, with_grad, upstream)
    cp = backend.cupy_module()
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    float_type = launch.float_type(x.dtype)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        cluster = launch.row_cluster(layout, x.itemsize, device_id) if with_grad and \
            float_type in kernels.CLUSTER_TYPES else 0
        if cluster:
            # rows beyond one block's shared memory, or few long rows: a cluster of blocks per row keeps it on
            # chip and writes the gradient (sm_90)
            shape = launch.cluster_shape(layout, cluster, device_id,
                                         launch.cluster_threads(layout, cluster, x.itemsize, device_id))
        splits = shape.grid[1]
        split_rows = splits > 1 and not cluster      # chunks merged by the row's last block: no gradient
        with_grad = with_grad and not split_rows
        count = layout.rows
        m, ls = cp.empty(count, dtype=acc), cp.empty(count, dtype=acc)
        out = cp.empty(count, dtype=x.dtype) if want_result else None
        if split_rows:
            partial_m, partial_s = cp.empty(count * splits, dtype=acc), cp.empty(count * splits, dtype=acc)
            counters = launch.counters(device_id, count)
        else:
            partial_m = partial_s = counters = None
        dx, *dx_strides = launch.output_like(x, layout) if with_grad else (None, launch.i64(0), launch.i64(0),
                                                                            launch.i64(0))
        cache = launch.cache_bytes(shape, layout, x.itemsize, device_id) if with_grad else 0
        name = f"logsumexp_forward<{float_type}{f', {cluster}' if cluster else ''}>"
        launch.launch("logsumexp.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(count), numpy.int32(layout.cols), m, ls, out,
                       partial_m, partial_s, counters, dx, *dx_strides, upstream if with_grad else None,
                       numpy.int32(1 if cache else 0)), shared_mem=cache)
    return m, ls, out, dx


def _span_forward(x, layout, per_span, want_result, with_grad, upstream):
    """_launch_forward for short rows one after another (launch.span_rows): a
    block's rows as one span (common.cuh, SpanLoad), a thread per row; one
    launch."""
    cp = backend.cupy_module()
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    count = layout.rows
    with cp.cuda.Device(device_id):
        m, ls = cp.empty(count, dtype=acc), cp.empty(count, dtype=acc)
        out = cp.empty(count, dtype=x.dtype) if want_result else None
        dx = launch.output_like(x, layout)[0] if with_grad else None
        name = f"logsumexp_span_forward<{launch.float_type(x.dtype)}>"
        launch.launch("logsumexp.cu", name, device_id, launch.span_shape(layout, per_span, device_id),
                      (x, launch.i64(count), numpy.int32(layout.cols), m, ls, out, dx,
                       upstream if with_grad else None),
                      shared_mem=launch.span_bytes(per_span, layout.cols, x.itemsize))
    return m, ls, out, dx


def launch_apply(x, layout, m, ls, mode, grad=None, grad_stride=0):
    """x's shape, contiguous: g * exp((x - m) - ls) ('lse_grad'), softmax or
    log_softmax of rows whose statistics (m, ls) are known.  One launch."""
    return _launch_apply(x, layout, m, ls, mode, grad, grad_stride, None, None, None)


def _launch_apply(x, layout, m, ls, mode, grad, grad_stride, out, applied, next_upstream):
    """launch_apply's result; with ``out`` ('lse_grad'), the forward's
    gradient written for the upstream gradient ``applied``: the rows whose g
    is that value keep it, the others are written over.  ``next_upstream``: a
    1-element array the kernel copies grad[0] into."""
    cp = backend.cupy_module()
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        if out is None:
            out, *out_strides = launch.output_like(x, layout)
        else:
            out_strides = launch.strides(launch.row_layout(out, layout.dim))[1:]
            shape = launch.check_shape(shape, device_id)
        name = f"apply_stats<{launch.float_type(x.dtype)}, {kernels.APPLY_MODES[mode]}>"
        launch.launch("logsumexp.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(layout.rows), numpy.int32(layout.cols), m, ls, grad,
                       launch.i64(grad_stride), out, *out_strides, applied, next_upstream))
    return out


# -- the op -----------------------------------------------------------------------------

class LogSumExp(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.dims, ctx.shape, ctx.dx = dims, x.shape, None
        if x.size == 0:
            ctx.save_for_backward(x, None, None, None)
            shape = keepdim_shape(x.shape, dims) if keepdim else reduced_shape(x.shape, dims)
            return ctx.xp.full(shape, -numpy.inf, dtype=x.dtype)
        forward = rows.pick(forward_numpy, forward_cuda, x, dims)
        # the gradient in the forward pass (the CUDA launcher may decline; not from the NumPy twin on CUDA
        # arrays, whose backward would compare the upstream gradient on the host), for the upstream gradient
        # the last backward of this kind received: 1 for lse.sum().backward()
        with_grad = ctx.needs_input_grad[0] and (forward is forward_cuda or ctx.xp is numpy)
        ctx.upstream_key = (backend.device_key(x), x.dtype, x.shape, dims)
        ctx.upstream = _expected_upstream.get(ctx.upstream_key) if with_grad else None
        if with_grad and ctx.upstream is None:
            ctx.upstream = rows.one(ctx.xp, x)
        result = forward(x, dims, with_grad, ctx.upstream)
        ctx.dx = result.grad
        ctx.save_for_backward(x, result.source, backend.keep_array(result.m), backend.keep_array(result.ls))
        return result.lse if keepdim else result.lse.reshape(reduced_shape(x.shape, dims))

    @staticmethod
    def backward(ctx, grad):
        dx, ctx.dx = ctx.dx, None          # the forward's gradient is used once
        x, source, m, ls = ctx.saved_tensors
        if m is None:                                     # empty input
            return Tensor._make(x.xp.zeros(ctx.shape, dtype=x.dtype)), None, None
        if is_grad_enabled():       # create_graph: ordinary ops, linked to x
            return (x - logsumexp(x, ctx.dims, keepdim=True)).exp() * grad.reshape(m.shape), None, None
        source = source.array
        backward = rows.pick(backward_numpy, backward_cuda, source, ctx.dims)
        if dx is None:
            return Tensor._make(backward(source, ctx.dims, m.array, ls.array, grad.reshape(m.shape).array)), None, None
        # the forward wrote dx for the upstream gradient `applied`: kept where that is the one that came (the
        # engine's 1 of lse.sum().backward(): on the host, no launch; else compared on the device, with no host
        # sync, and the gradient that came kept for the next forward)
        applied, following = ctx.upstream, None
        if engine.is_implicit_seed(grad, broadcast=True):
            one = _remember(ctx.upstream_key, rows.one(x.xp, source))
            if applied is one:
                return Tensor._make(dx), None, None
        else:
            following = _remember(ctx.upstream_key, x.xp.empty(1, dtype=source.dtype))
        out = backward(source, ctx.dims, m.array, ls.array, grad.reshape(m.shape).array, forward_grad=dx,
                       applied=applied, next_upstream=following)
        return Tensor._make(out), None, None

    def release(self):
        super().release()
        self.dx = self.upstream = None


# The upstream gradient the forward writes its gradient for, by kind of call (device, dtype, shape, dims): the
# first value the last backward of such a call received, as a 1-element array of x's dtype (1 at first); the
# EXPECTED_KINDS kinds used last are kept.
EXPECTED_KINDS = 8
_expected_upstream = collections.OrderedDict()


def _remember(key, upstream):
    _expected_upstream[key] = upstream
    _expected_upstream.move_to_end(key)
    while len(_expected_upstream) > EXPECTED_KINDS:
        _expected_upstream.popitem(last=False)
    return upstream


@autocast_mode.float32
def logsumexp(input, dim, keepdim=False, *, keepdims=None):
    """log(sum(exp(input), dim)), computed stably: -inf over an empty dim or a
    row of -inf, +inf with a +inf in the row, nan with a nan (fused on CUDA)."""
    x = rows.floating_input(input, "logsumexp", None, integers=True)
    if keepdims is not None:
        keepdim = bool(keepdims)
    dims = normalize_dims(dim, x.ndim)
    return LogSumExp.apply(x, dims, keepdim)
