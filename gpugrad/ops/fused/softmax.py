"""softmax and log_softmax along one dim, computed stably, and their
gradients in one pass (kernels/softmax.cu on CUDA).

Both keep only their output y for backward: softmax's gradient is
y * (g - sum(g * y)), log_softmax's g - exp(y) * sum(g).  On sm_90 rows too
long for one block's shared memory, and few long rows, take a row cluster
(one launch each way); below sm_90 few long rows take two launches forward:
the row statistics, then the softmax from them (kernels/logsumexp.cu,
through logsumexp.py).
"""

import warnings

import numpy

from gpugrad import backend, dtypes
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import kernels, launch
from gpugrad.dims import wrap_dim
from gpugrad.ops.fused import logsumexp, rows
from gpugrad.tensor import Tensor

# -- the NumPy twin ---------------------------------------------------------------------


def forward_numpy(x, dim, log, closed_zero=False):
    """softmax (or log_softmax) of x along ``dim``, in x's dtype; ``closed_zero``:
    0 for a row of only -inf (softmax), where softmax gives nan."""
    xp = backend.xp_for(x)
    acc = dtypes.accumulate_dtype(x.dtype)
    if log:
        a = x.astype(acc, copy=False)
        m = a.max(axis=dim, keepdims=True)
        y = xp.subtract(a, m)
        y -= xp.log(xp.exp(y).sum(axis=dim, keepdims=True))
    else:
        _, ls, y, _ = rows.row_stats(xp, x, dim)
        y *= xp.exp(-ls)
        special = rows.special_rows(xp, ls)
        if special is not None:
            y = xp.where(special, xp.where(ls == -numpy.inf, 0, xp.nan) if closed_zero else xp.nan, y)
    return y.astype(x.dtype, copy=False)


def backward_numpy(y, grad, dim, log):
    """The gradient from the output y and the upstream gradient, in y's dtype."""
    xp = backend.xp_for(y)
    dtype = y.dtype
    acc = dtypes.accumulate_dtype(dtype)
    y, grad = y.astype(acc, copy=False), xp.broadcast_to(grad, y.shape).astype(acc, copy=False)
    if log:
        out = xp.exp(y)
        out *= grad.sum(axis=dim, keepdims=True)
        out = backend.keep_array(out)
        xp.subtract(grad, out, out=out)
    else:
        if y.ndim == 2 and dim == 1:
            dot = xp.einsum("ij,ij->i", grad, y)[:, None]     # one pass, no temporary
        else:
            dot = (grad * y).sum(axis=dim, keepdims=True)
        out = xp.subtract(grad, dot)
        out *= y
    return out.astype(dtype, copy=False)


# -- the CUDA launcher ------------------------------------------------------------------

def forward_cuda(x, dim, log, closed_zero=False):
    """softmax (or log_softmax) of x along ``dim``, in x's shape: one launch
    (two below sm_90 for few rows long enough to split); ``closed_zero`` as
    forward_numpy's (the kernel's flag: no launch more)."""
    cp = backend.cupy_module()
    source = x
    x, layout = launch.layout_of(x, dim)
    device_id = x.device.id
    float_type = launch.float_type(x.dtype)
    per_span = launch.span_rows(layout, x.itemsize)
    if per_span:
        return _span_forward(x, layout, log, closed_zero, per_span)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, x.itemsize, device_id, split_long_rows=True)
        cluster = launch.row_cluster(layout, x.itemsize, device_id) if float_type in kernels.CLUSTER_TYPES else 0
        if cluster:
            shape = launch.cluster_shape(layout, cluster, device_id)
        elif shape.grid[1] > 1:
            m, ls, _ = logsumexp.launch_statistics(x, layout, want_result=False)
            out = logsumexp.launch_apply(x, layout, m, ls, "log_softmax" if log else "softmax")
            if closed_zero:      # (few rows long enough to split, below sm_90: the rows closed here)
                out[...] = cp.where((source == -numpy.inf).all(axis=dim, keepdims=True), 0, out)
            return out
        out, *out_strides = launch.output_like(x, layout)
        cache = launch.cache_bytes(shape, layout, x.itemsize, device_id)
        name = f"softmax_forward<{float_type}, {'true' if log else 'false'}{f', {cluster}' if cluster else ''}>"
        launch.launch("softmax.cu", name, device_id, shape,
                      (x, *launch.strides(layout), launch.i64(layout.rows), numpy.int32(layout.cols), out,
                       *out_strides, numpy.int32(1 if cache else 0), numpy.int32(1 if closed_zero else 0)),
                      shared_mem=cache)
    return out


def _span_forward(x, layout, log, closed_zero, per_span):
    """Short rows one after another (launch.span_rows): a block's rows as one span."""
    device_id = x.device.id
    with backend.cupy_module().cuda.Device(device_id):
        out, *_ = launch.output_like(x, layout)         # rows one after another, x's 16-byte phase
        name = f"softmax_span_forward<{launch.float_type(x.dtype)}, {'true' if log else 'false'}>"
        launch.launch("softmax.cu", name, device_id, launch.span_shape(layout, per_span, device_id),
                      (x, launch.i64(layout.rows), numpy.int32(layout.cols), out,
                       numpy.int32(1 if closed_zero else 0)),
                      shared_mem=launch.span_bytes(per_span, layout.cols, x.itemsize))
    return out


def _span_backward(y, y_layout, grad, log, per_span):
    device_id = y.device.id
    with backend.cupy_module().cuda.Device(device_id):
        out, *_ = launch.output_like(y, y_layout)
        name = f"softmax_span_backward<{launch.float_type(y.dtype)}, {'true' if log else 'false'}>"
        launch.launch("softmax.cu", name, device_id, launch.span_shape(y_layout, per_span, device_id),
                      (y, grad, launch.i64(y_layout.rows), numpy.int32(y_layout.cols), out),
                      shared_mem=launch.span_bytes(per_span, y_layout.cols, y.itemsize, arrays=2))
    return out


def backward_cuda(y, grad, dim, log):
    """The gradient from the output y and the upstream gradient (of y's dtype),
    in y's shape, contiguous: one launch."""
    cp = backend.cupy_module()
    y, y_layout = launch.layout_of(y, dim)
    grad, grad_layout = launch.layout_of(cp.broadcast_to(grad, y.shape), dim)
    per_span = launch.span_rows(y_layout, y.itemsize)
    if per_span and launch.span_rows(grad_layout, y.itemsize):
        return _span_backward(y, y_layout, grad, log, per_span)
    device_id = y.device.id
    float_type = launch.float_type(y.dtype)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(y_layout if grad_layout.sc == 1 else grad_layout, y.itemsize, device_id)
        cluster = launch.row_cluster(y_layout, y.itemsize, device_id, arrays=2) \
            if grad_layout.sc == 1 and float_type in kernels.CLUSTER_TYPES else 0
        if cluster:
            shape = launch.cluster_shape(y_layout, cluster, device_id)
        out, *out_strides = launch.output_like(y, y_layout)
        cache = launch.cache_bytes(shape, y_layout, y.itemsize, device_id, arrays=2) if grad_layout.sc == 1 else 0
        name = f"softmax_backward<{float_type}, {'true' if log else 'false'}{f', {cluster}' if cluster else ''}>"
        launch.launch("softmax.cu", name, device_id, shape,
                      (y, launch.i64(y_layout.so), launch.i64(y_layout.si), launch.i64(y_layout.sc),
                       grad, launch.i64(grad_layout.so), launch.i64(grad_layout.si), launch.i64(grad_layout.sc),
                       launch.i64(y_layout.inner), launch.i64(y_layout.rows), numpy.int32(y_layout.cols),
                       out, *out_strides, numpy.int32(1 if cache else 0)), shared_mem=cache)
    return out


# -- the ops ----------------------------------------------------------------------------

class Softmax(InternalFunction):
    """softmax along one dim; keeps only its output y."""
    log = False
    closed_zero = False

    @classmethod
    def forward(cls, ctx, x, dim):
        if x.size == 0:
            y = x.copy()
        else:
            y = rows.pick(forward_numpy, forward_cuda, x, (dim,))(x, dim, cls.log, cls.closed_zero)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @classmethod
    def backward(cls, ctx, grad):
        y, = ctx.saved_tensors
        dim = ctx.dim
        if is_grad_enabled():      # create_graph: ordinary ops
            if cls.log:
                return grad - y.exp() * grad.sum(dim, keepdim=True), None
            return y * (grad - (grad * y).sum(dim, keepdim=True)), None
        if y.array.size == 0:
            return grad, None
        y, grad = y.array, grad.array
        backward = rows.pick(backward_numpy, backward_cuda, y, (dim,), grad)
        return Tensor._make(backward(y, grad, dim, cls.log)), None


class LogSoftmax(Softmax):
    """log_softmax along one dim; keeps only its output."""
    log = True


class SafeSoftmax(Softmax):
    """softmax whose rows of nothing but -inf are 0, not nan, with the
    gradient of that output (torch's _safe_softmax: attention's rows that
    every score closes); on CUDA the kernel's closed_zero, no launch more."""
    closed_zero = True


def safe_softmax(input, dim):
    """softmax along ``dim``, 0 for a row of only -inf (scaled_dot_product_attention's)."""
    return SafeSoftmax.apply(input, wrap_dim(dim, input.ndim))


def _softmax_dim(x, dim, name):
    if dim is None:
        # torch's legacy choice when dim is omitted, with its warning
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
                      "dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return wrap_dim(dim, x.ndim)        # 0 for a 0-d tensor (which takes 0 and -1)


@autocast_mode.float32
def softmax(input, dim=None, dtype=None):
    """exp(x) / sum(exp(x), dim), computed stably (nan for a row holding nan or
    +inf, or only -inf, as torch); fused on CUDA."""
    dim = _softmax_dim(rows.tensor_input(input, "softmax"), dim, "softmax")
    x = rows.floating_input(input, "softmax", dtype)
    if x.ndim == 0:
        return Softmax.apply(x.reshape(1), 0).reshape(())
    return Softmax.apply(x, dim)


@autocast_mode.float32
def log_softmax(input, dim=None, dtype=None):
    """x - logsumexp(x, dim), computed stably; fused on CUDA."""
    dim = _softmax_dim(rows.tensor_input(input, "log_softmax"), dim, "log_softmax")
    x = rows.floating_input(input, "log_softmax", dtype)
    if x.ndim == 0:
        return LogSoftmax.apply(x.reshape(1), 0).reshape(())
    return LogSoftmax.apply(x, dim)
