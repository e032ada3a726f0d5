"""logsumexp: log(sum(exp(x), dims)), computed stably, with its gradient
exp(x - lse) in one pass (kernels/logsumexp.cu on CUDA).

Both implementations keep the per-row statistics (m, ls), lse = m + ls, with
m the row's max (0 where it is not finite) and ls = log(sum(exp(x - m))),
and nothing of x's size: the backward recomputes exp((x - m) - ls) from x.
"""

import collections

import numpy

from gpugrad import backend, dtypes
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import kernels, launch
from gpugrad.dims import keepdim_shape, normalize_dims, reduced_shape
from gpugrad.ops.fused import rows
from gpugrad.tensor import Tensor

Statistics = collections.namedtuple("Statistics", "lse m ls source")
Statistics.__doc__ = """The forward's result: lse in x's dtype, and the per-row m and ls in the
accumulation dtype, all with the reduced dims kept; ``source`` is x as the
implementation read it (the kernels' contiguous copy where x's other dims
cannot be merged), what the backward takes."""


# -- the NumPy twin ---------------------------------------------------------------------

def forward_numpy(x, dims):
    """log-sum-exp of x over ``dims`` (Statistics)."""
    m, ls, _, _ = rows.row_stats(backend.xp_for(x), x, dims)
    return Statistics((m + ls).astype(x.dtype, copy=False), m, ls, x)


def backward_numpy(x, dims, m, ls, grad):
    """grad * exp((x - m) - ls), in x's dtype (m, ls, grad with kept dims)."""
    return rows.softmax_times(backend.xp_for(x), x, m, ls, grad.astype(m.dtype, copy=False)).astype(x.dtype,
                                                                                                     copy=False)


# -- the CUDA launcher ------------------------------------------------------------------

def forward_cuda(x, dims):
    """log-sum-exp of x over one dim (Statistics): one launch."""
    source, layout = launch.layout_of(x, dims[0])
    m, ls, lse = launch_statistics(source, layout)
    shape = keepdim_shape(x.shape, dims)
    return Statistics(lse.reshape(shape), m.reshape(shape), ls.reshape(shape), source)


def backward_cuda(x, dims, m, ls, grad):
    """grad * exp((x - m) - ls) in x's shape: one launch."""
    x, layout = launch.layout_of(x, dims[0])
    g, stride = launch.per_row(grad, m.shape, x.dtype)
    return launch_apply(x, layout, m.reshape(-1), ls.reshape(-1), "lse_grad", g, stride)


def launch_statistics(x, layout, want_result=True):
    """(m, ls, lse): per-row statistics in the accumulation dtype, and the
    log-sum-exp in x's dtype (None unless ``want_result``), in row order.
    One launch."""
    cp = backend.cupy_module()
    device_id = x.device.id
    acc = dtypes.accumulate_dtype(x.dtype)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        count = layout.rows
        m, ls = cp.empty(count, dtype=acc), cp.empty(count, dtype=acc)
        out = cp.empty(count, dtype=x.dtype) if want_result else None
        splits = shape.grid[1]
        if splits > 1:
            partial_m, partial_s = cp.empty(count * splits, dtype=acc), cp.empty(count * splits, dtype=acc)
            counters = launch.counters(device_id, count)
        else:
            partial_m = partial_s = counters = None
        launch.launch("logsumexp.cu", f"logsumexp_forward<{launch.float_type(x.dtype)}>", device_id, shape,
                      (x, *launch.strides(layout), launch.i64(count), numpy.int32(layout.cols), m, ls, out,
                       partial_m, partial_s, counters))
    return m, ls, out


def launch_apply(x, layout, m, ls, mode, grad=None, grad_stride=0):
    """x's shape, contiguous: g * exp((x - m) - ls) ('lse_grad'), softmax or
    log_softmax of rows whose statistics (m, ls) are known.  One launch."""
    cp = backend.cupy_module()
    device_id = x.device.id
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        out, *out_strides = launch.output_like(x, layout)
        name = f"apply_stats<{launch.float_type(x.dtype)}, {kernels.APPLY_MODES[mode]}>"
        launch.launch("logsumexp.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(layout.rows), numpy.int32(layout.cols), m, ls, grad,
                       launch.i64(grad_stride), out, *out_strides))
    return out


# -- the op -----------------------------------------------------------------------------

class LogSumExp(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        ctx.dims, ctx.shape = dims, x.shape
        if x.size == 0:
            ctx.save_for_backward(x, None, None, None)
            shape = keepdim_shape(x.shape, dims) if keepdim else reduced_shape(x.shape, dims)
            return ctx.xp.full(shape, -numpy.inf, dtype=x.dtype)
        result = rows.pick(forward_numpy, forward_cuda, x, dims)(x, dims)
        ctx.save_for_backward(x, result.source, backend.keep_array(result.m), backend.keep_array(result.ls))
        return result.lse if keepdim else result.lse.reshape(reduced_shape(x.shape, dims))

    @staticmethod
    def backward(ctx, grad):
        x, source, m, ls = ctx.saved_tensors
        if m is None:                                     # empty input
            return Tensor._make(x.xp.zeros(ctx.shape, dtype=x.dtype)), None, None
        grad = grad.reshape(m.shape)
        if is_grad_enabled():       # create_graph: ordinary ops, linked to x
            return (x - logsumexp(x, ctx.dims, keepdim=True)).exp() * grad, None, None
        source = source.array
        backward = rows.pick(backward_numpy, backward_cuda, source, ctx.dims)
        return Tensor._make(backward(source, ctx.dims, m.array, ls.array, grad.array)), None, None


@autocast_mode.float32
def logsumexp(input, dim, keepdim=False, *, keepdims=None):
    """log(sum(exp(input), dim)), computed stably: -inf over an empty dim or a
    row of -inf, +inf with a +inf in the row, nan with a nan (fused on CUDA)."""
    x = rows.floating_input(input, "logsumexp", None, integers=True)
    if keepdims is not None:
        keepdim = bool(keepdims)
    dims = normalize_dims(dim, x.ndim)
    return LogSumExp.apply(x, dims, keepdim)
