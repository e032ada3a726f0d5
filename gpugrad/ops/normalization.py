"""Normalisation, validated and called by ``nn.functional``: layer_norm as
one node (torch's native_layer_norm; on CUDA its forward and backward are one
kernel each, kernels/layer_norm.cu); group_norm and instance_norm composed of
differentiable ops in the arithmetic of torch's CPU kernels."""

import math

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad
from gpugrad.cuda import layers
from gpugrad.tensor import Tensor


class LayerNorm(InternalFunction):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing dims, one
    node: the statistics in the accumulation dtype and the result rounded once
    (torch's native_layer_norm); keeps x and the per-row mean and 1/std."""

    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        if x.size == 0:
            ctx.save_for_backward(x, weight, None, None)
            ctx.dims, ctx.eps = dims, eps
            return x.copy()
        acc = dtypes.accumulate_dtype(x.dtype)
        ctx.dims, ctx.eps = dims, eps
        if dims and layers.supports(x, weight, bias):
            out, mean, rstd = layers.layer_norm_forward(x, weight, bias, len(dims), eps, acc)
            ctx.save_for_backward(x, weight, mean, rstd)
            return out
        a = x.astype(acc, copy=False)
        mean = backend.array_sum(a, axis=dims, keepdims=True) * acc.type(1 / _count(x.shape, dims))
        # held within the row's range: a row of equal values centres to exactly 0 (as torch's Welford
        # mean), so an infinite weight there gives nan, not the sign of a rounding residue times inf
        xp = ctx.xp
        mean = xp.minimum(xp.maximum(mean, a.min(axis=dims, keepdims=True)), a.max(axis=dims, keepdims=True))
        centered = a - mean
        var = backend.array_sum(centered * centered, axis=dims, keepdims=True) * acc.type(1 / _count(x.shape,
                                                                                                      dims))
        rstd = 1 / ctx.xp.sqrt(var + acc.type(eps))
        centered *= rstd
        ctx.save_for_backward(x, weight, mean, rstd)
        if weight is not None:
            centered *= weight
        if bias is not None:
            centered += bias
        return centered.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        dims, needs = ctx.dims, ctx.needs_input_grad
        lead = tuple(range(x.ndim - len(dims)))
        if mean is None:           # an empty input: empty gradients
            zeros = [None if w is None else Tensor._make(x.xp.zeros(w.shape, dtype=w.dtype)) for w in (weight, weight)]
            return Tensor._make(x.xp.zeros(x.shape, dtype=x.dtype)), zeros[0], zeros[1], None, None
        if is_grad_enabled():          # create_graph: the formula in differentiable ops, statistics from x
            mean_t = x.mean(dims, keepdim=True)
            centered = x - mean_t
            rstd_t = ((centered * centered).mean(dims, keepdim=True) + ctx.eps).rsqrt()
            xhat = centered * rstd_t
            dxhat = grad if weight is None else grad * weight
            inv = 1 / _count(x.shape, dims)
            b = (dxhat.sum(dims, keepdim=True) * mean_t - (dxhat * x).sum(dims, keepdim=True)) * rstd_t ** 3 * inv
            grad_x = rstd_t * dxhat + b * x - b * mean_t - dxhat.sum(dims, keepdim=True) * rstd_t * inv
            grad_w = ((grad * xhat).sum(lead) if lead else grad * xhat) if needs[1] else None
            grad_b = (grad.sum(lead) if lead else grad) if needs[2] else None
            return grad_x, grad_w, grad_b, None, None
        if layers.supports(grad.array, x.array, None if weight is None else weight.array):
            dx, dw, db = layers.layer_norm_backward(grad.array, x.array, None if weight is None else weight.array,
                                                    mean.array, rstd.array, len(dims), needs[0], needs[1],
                                                    needs[2])
            return (None if dx is None else Tensor._make(dx), None if dw is None else Tensor._make(dw),
                    None if db is None else Tensor._make(db), None, None)
        acc = rstd.array.dtype
        g = grad.array.astype(acc, copy=False)
        a = x.array.astype(acc, copy=False)
        m, r = mean.array, rstd.array
        xhat = (a - m) * r
        dxhat = g if weight is None else g * weight.array.astype(acc, copy=False)
        inv = acc.type(1 / _count(x.shape, dims))
        grad_x = None
        if needs[0]:
            # torch's layer_norm_backward algebra (so inf and nan land where torch's do):
            # dx = r dxhat + b x + c, b = (db m - ds) r^3 / n, c = -b m - db r / n
            ds = backend.array_sum(dxhat * a, axis=dims, keepdims=True)
            db = backend.array_sum(dxhat, axis=dims, keepdims=True)
            b = (db * m - ds) * (r * r * r) * inv
            c = -b * m - db * r * inv
            grad_x = Tensor._make((r * dxhat + b * a + c).astype(x.dtype, copy=False))
        grad_w = Tensor._make(backend.array_sum(g * xhat, axis=lead).astype(weight.dtype)) if needs[1] else None
        grad_b = Tensor._make(backend.array_sum(g, axis=lead).astype(grad.dtype)) if needs[2] else None
        return grad_x, grad_w, grad_b, None, None


def _count(shape, dims):
    return math.prod(shape[d] for d in dims)


def _statistics(x, dims):
    """The mean and the biased variance over ``dims`` (kept), differentiable."""
    mean = x.mean(dims, keepdim=True)
    centered = x - mean
    return mean, (centered * centered).mean(dims, keepdim=True)


def _scale_shift(x, mean, invstd, weight, bias):
    """x * alpha + beta with alpha = invstd * weight, beta = bias - mean * alpha per
    channel (dim 1): torch's CPU kernels' arithmetic, so inf and nan land where theirs do."""
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    alpha = invstd if weight is None else invstd * weight.reshape(shape)
    beta = -(mean * alpha) if bias is None else bias.reshape(shape) - mean * alpha
    return x * alpha + beta


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """torch.nn.functional.group_norm: (N, C, *) normalised over each group of
    C / num_groups channels and the spatial dims, then scaled and shifted per channel."""
    n, c = input.shape[:2]
    grouped = input.reshape((n, num_groups, -1))
    mean, var = _statistics(grouped, (2,))
    invstd = (var + eps).rsqrt()
    per_channel = (n, num_groups, c // num_groups) + (1,) * (input.ndim - 2)
    channel_shape = (n, c) + (1,) * (input.ndim - 2)
    expand = lambda t: t.reshape((n, num_groups, 1) + (1,) * (input.ndim - 2)).expand(per_channel).reshape(  # noqa
        channel_shape)
    return _scale_shift(input, expand(mean), expand(invstd), weight, bias)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """torch.nn.functional.instance_norm: each (sample, channel) of (N, C, *)
    normalised over its spatial dims (use_input_stats), the running statistics
    updated with the batch's average of them (unbiased variances, as torch's);
    or normalised with the running statistics."""
    n, c = input.shape[:2]
    shape = (1, c) + (1,) * (input.ndim - 2)
    if not use_input_stats:
        return _scale_shift(input, running_mean.reshape(shape), (running_var.reshape(shape) + eps).rsqrt(), weight,
                            bias)
    dims = tuple(range(2, input.ndim))
    mean, var = _statistics(input, dims)
    if running_mean is not None or running_var is not None:
        count = math.prod(input.shape[2:])
        with no_grad():
            if running_mean is not None:
                running_mean.mul_(1 - momentum).add_(mean.reshape(n, c).mean(0) * momentum)
            if running_var is not None:
                unbiased = var.reshape(n, c) * (count / (count - 1)) if count > 1 else var.reshape(n, c)
                running_var.mul_(1 - momentum).add_(unbiased.mean(0) * momentum)
    return _scale_shift(input, mean, (var + eps).rsqrt(), weight, bias)
