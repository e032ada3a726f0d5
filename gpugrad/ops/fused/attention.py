"""scaled_dot_product_attention's softmax: softmax(scale * s + mask) of the
scores s = q k^T along the keys, the mask additive (of s's dtype), boolean
(False: closed) or causal (top-left, torch's is_causal), with dropout on the
probabilities; one launch forward and one backward on CUDA
(kernels/attention.cu), where the composition took up to six (scale, mask,
softmax and dropout, each way).

Rows that every score closes (-inf) give 0, as torch's _safe_softmax.  The
gradient ds = scale * y * (g' - sum(g' y)), g' the upstream gradient through
the dropout; the mask takes no gradient here (nn.functional composes the ops
when a float mask requires one).  Dropout is fused on CUDA only, where its
mask comes from Philox as F.dropout's (the same mask for the same generator
state); elsewhere F.dropout follows, as before.
"""

import math

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import launch
from gpugrad.ops import elementwise
from gpugrad.ops.fused import rows, softmax
from gpugrad.tensor import Tensor

MASK_KINDS = {None: 0, "add": 1, "bool": 2}     # the kernels' MASK template argument


def _mask_kind(mask):
    return None if mask is None else "bool" if mask.dtype == dtypes.bool_ else "add"


# -- the NumPy twin ---------------------------------------------------------------------

def forward_numpy(s, mask, scale, causal, drop=None):
    """(y, None): y = softmax(scale * s + mask) along the last dim, in s's dtype;
    ``mask`` broadcasts to s (bool: False closes); ``causal`` closes j > i.
    Dropout (``drop``) only on CUDA."""
    if drop is not None:
        raise NotImplementedError("attention's fused dropout runs on CUDA only")
    xp = backend.xp_for(s)
    acc = dtypes.accumulate_dtype(s.dtype)
    v = s.astype(acc) * acc.type(scale)
    if mask is not None and mask.dtype == dtypes.bool_:
        v = v + xp.where(mask, acc.type(0), acc.type(-math.inf))
    elif mask is not None:
        v = v + mask.astype(acc, copy=False)
    if causal:
        length, cols = s.shape[-2:]
        v = v + xp.triu(xp.full((length, cols), -math.inf, dtype=acc), 1)
    return softmax.forward_numpy(v, v.ndim - 1, False, closed_zero=True).astype(s.dtype, copy=False), None


def backward_numpy(y, grad, scale, drop=None):
    """ds = scale * y * (g - sum(g y)) along the last dim, in y's dtype."""
    if drop is not None:
        raise NotImplementedError("attention's fused dropout runs on CUDA only")
    out = softmax.backward_numpy(y, grad, y.ndim - 1, False)
    out *= out.dtype.type(scale)
    return out


# -- the CUDA launcher ------------------------------------------------------------------

def _mask_strides(mask, shape):
    """The kernel's view of a mask broadcast to the scores' ``shape``: (mask,
    n1, s0, s1, si, sj), its batch dims merged into two (b0, b1) of strides s0
    and s1, b1 taking n1 values; a contiguous copy where they do not merge."""
    cp = backend.cupy_module()
    mask = cp.broadcast_to(mask, shape)
    strides = [s // mask.itemsize for s in mask.strides]
    groups = []                                    # [size, stride] over the batch dims, outermost first
    for n, s in zip(shape[:-2], strides[:-2]):
        if n == 1:
            continue
        if groups and groups[-1][1] == s * n:
            groups[-1] = [groups[-1][0] * n, s]
        else:
            groups.append([n, s])
    if len(groups) > 2:
        mask = cp.ascontiguousarray(mask)
        strides = [s // mask.itemsize for s in mask.strides]
        groups = [[math.prod(shape[:-2]), strides[-3]]] if len(shape) > 2 else []
    groups = [[1, 0]] * (2 - len(groups)) + groups
    (_, s0), (n1, s1) = groups
    return (mask, launch.i64(n1), launch.i64(s0), launch.i64(s1), launch.i64(strides[-2]),
            launch.i64(strides[-1]))


def _pointer(array):
    return numpy.uint64(0) if array is None else array


def _drop_arguments(drop):
    if drop is None:
        return 0, 0, 0.0, 0.0
    p, seed, offset, dscale = drop
    return seed, offset, p, dscale


def forward_cuda(s, mask, scale, causal, drop=None):
    """(y, z): y as forward_numpy's and, with ``drop`` = (p, seed, offset,
    dscale), z = y * (keep ? dscale : 0) with F.dropout's Philox mask (else
    None); one launch."""
    cp = backend.cupy_module()
    s, layout = launch.layout_of(s, s.ndim - 1)
    device_id = s.device.id
    kind = _mask_kind(mask)
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(layout, s.itemsize, device_id)
        y = cp.empty(s.shape, dtype=s.dtype)
        z = cp.empty(s.shape, dtype=s.dtype) if drop is not None else None
        if mask is None:
            mask_args = (launch.i64(1),) + (launch.i64(0),) * 4
            add_mask = bool_mask = None
        else:
            mask, *mask_args = _mask_strides(mask, s.shape)
            add_mask, bool_mask = (None, mask) if kind == "bool" else (mask, None)
        seed, offset, p, dscale = _drop_arguments(drop)
        cache = launch.cache_bytes(shape, layout, s.itemsize, device_id)
        name = f"attention_softmax_forward<{launch.float_type(s.dtype)}, {MASK_KINDS[kind]}>"
        launch.launch("attention.cu", name, device_id, shape,
                      (s, launch.i64(layout.so), launch.i64(layout.sc), launch.i64(layout.rows),
                       numpy.int32(s.shape[-2]), numpy.int32(layout.cols), numpy.float64(scale),
                       _pointer(add_mask), _pointer(bool_mask), *mask_args, numpy.int32(1 if causal else 0), y,
                       _pointer(z), numpy.uint64(seed), numpy.uint64(offset), numpy.float32(p),
                       numpy.float64(dscale), numpy.int32(1 if cache else 0)),
                      shared_mem=cache)
    return y, z


def backward_cuda(y, grad, scale, drop=None):
    """ds as backward_numpy's, the upstream gradient through the dropout of
    ``drop`` first (F.dropout's mask); y contiguous, as forward_cuda wrote it;
    one launch."""
    cp = backend.cupy_module()
    grad, grad_layout = launch.layout_of(cp.broadcast_to(grad, y.shape), y.ndim - 1)
    y_layout = launch.contiguous_layout(y.shape, y.ndim - 1)
    device_id = y.device.id
    with cp.cuda.Device(device_id):
        shape = launch.launch_shape(y_layout if grad_layout.sc == 1 else grad_layout, y.itemsize, device_id)
        out = cp.empty(y.shape, dtype=y.dtype)
        cache = launch.cache_bytes(shape, y_layout, y.itemsize, device_id, arrays=2) if grad_layout.sc == 1 else 0
        seed, offset, p, dscale = _drop_arguments(drop)
        launch.launch("attention.cu", f"attention_softmax_backward<{launch.float_type(y.dtype)}>", device_id, shape,
                      (y, grad, launch.i64(grad_layout.so), launch.i64(grad_layout.sc), launch.i64(y_layout.rows),
                       numpy.int32(y_layout.cols), numpy.float64(scale), numpy.int32(0 if drop is None else 1),
                       numpy.uint64(seed), numpy.uint64(offset), numpy.float32(p), numpy.float64(dscale), out,
                       numpy.int32(1 if cache else 0)),
                      shared_mem=cache)
    return out


# -- the op -----------------------------------------------------------------------------

class AttentionSoftmax(InternalFunction):
    """softmax(scale * s + mask) along the last dim, one node; with ``drop``
    (CUDA) its outputs are (y, dropout(y)), y kept as an output so that a
    second derivative reaches the scores through it; else y alone."""

    numpy_errstate = True          # a nan or +inf score under the mask's -inf is nan, as torch's

    @staticmethod
    def forward(ctx, s, mask, scale, causal, drop):
        ctx.scale, ctx.drop = scale, drop
        ctx.set_materialize_grads(False)
        if s.size == 0:
            y, z = s.copy(), (s.copy() if drop is not None else None)
        else:
            alike = (mask,) if mask is not None and mask.dtype != dtypes.bool_ else ()
            y, z = rows.pick(forward_numpy, forward_cuda, s, (s.ndim - 1,), *alike)(s, mask, scale, causal, drop)
        ctx.save_for_backward(y)
        return y if drop is None else (y, z)

    @staticmethod
    def backward(ctx, grad, grad_dropped=None):
        y, = ctx.saved_tensors
        scale, drop = ctx.scale, ctx.drop
        if is_grad_enabled():      # create_graph: ordinary ops (the dropout's mask is PhiloxDropout's)
            total = grad
            if grad_dropped is not None:
                dropped = elementwise.PhiloxDropout.apply(grad_dropped, *drop)
                total = dropped if total is None else total + dropped
            if total is None:
                return None, None, None, None, None
            return (y * (total - (total * y).sum(-1, keepdim=True))) * scale, None, None, None, None
        if grad is not None and grad_dropped is not None:      # y used besides its dropout: compose
            dropped = elementwise.PhiloxDropout.apply(grad_dropped, *drop)
            grad, grad_dropped, drop = grad + dropped, None, None
        elif grad_dropped is not None:
            grad = grad_dropped
        else:
            drop = None
        if grad is None:
            return None, None, None, None, None
        if y.array.size == 0:
            return Tensor._make(y.xp.zeros(y.shape, dtype=y.dtype)), None, None, None, None
        y, grad = y.array, grad.array
        backward = rows.pick(backward_numpy, backward_cuda, y, (y.ndim - 1,), grad)
        return Tensor._make(backward(y, grad, scale, drop)), None, None, None, None


def attention_softmax(scores, mask, scale, causal, drop=None):
    """softmax(scale * scores + mask) along the last dim (rows every score
    closes: 0), and with ``drop`` = (p, seed, offset, dscale), on CUDA, its
    dropout (F.dropout's Philox mask) instead.  ``mask``: None, bool (False
    closes) or of scores' dtype, broadcasting to scores; ``causal``: j > i
    closed (top-left).  The mask takes no gradient."""
    out = AttentionSoftmax.apply(scores, mask, float(scale), bool(causal), drop)
    return out if drop is None else out[1]
