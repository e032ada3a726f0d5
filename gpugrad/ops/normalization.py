"""Normalisation's autograd Functions, validated and called by
``nn.functional``: layer_norm as one node (torch's native_layer_norm)."""

import math

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.tensor import Tensor


class LayerNorm(InternalFunction):
    """(x - mean) / sqrt(var + eps) * weight + bias over the trailing dims, one
    node: the statistics in the accumulation dtype and the result rounded once
    (torch's native_layer_norm); keeps x and the per-row mean and 1/std."""

    @staticmethod
    def forward(ctx, x, weight, bias, dims, eps):
        acc = dtypes.accumulate_dtype(x.dtype)
        a = x.astype(acc, copy=False)
        mean = backend.array_sum(a, axis=dims, keepdims=True) * acc.type(1 / _count(x.shape, dims))
        centered = a - mean
        var = backend.array_sum(centered * centered, axis=dims, keepdims=True) * acc.type(1 / _count(x.shape,
                                                                                                      dims))
        rstd = 1 / ctx.xp.sqrt(var + acc.type(eps))
        centered *= rstd
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.dims, ctx.eps = dims, eps
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
        if is_grad_enabled():          # create_graph: the formula in differentiable ops, statistics from x
            centered = x - x.mean(dims, keepdim=True)
            rstd_t = ((centered * centered).mean(dims, keepdim=True) + ctx.eps).rsqrt()
            xhat = centered * rstd_t
            dxhat = grad if weight is None else grad * weight
            grad_x = rstd_t * (dxhat - dxhat.mean(dims, keepdim=True)
                               - xhat * (dxhat * xhat).mean(dims, keepdim=True))
            grad_w = (grad * xhat).sum(lead) if needs[1] else None
            grad_b = grad.sum(lead) if needs[2] else None
            return grad_x, grad_w, grad_b, None, None
        acc = rstd.array.dtype
        g = grad.array.astype(acc, copy=False)
        xhat = (x.array.astype(acc, copy=False) - mean.array) * rstd.array
        dxhat = g if weight is None else g * weight.array.astype(acc, copy=False)
        inv = acc.type(1 / _count(x.shape, dims))
        grad_x = None
        if needs[0]:
            grad_x = dxhat - backend.array_sum(dxhat, axis=dims, keepdims=True) * inv
            grad_x -= xhat * (backend.array_sum(dxhat * xhat, axis=dims, keepdims=True) * inv)
            grad_x *= rstd.array
            grad_x = Tensor._make(grad_x.astype(x.dtype, copy=False))
        grad_w = Tensor._make(backend.array_sum(g * xhat, axis=lead).astype(weight.dtype)) if needs[1] else None
        grad_b = Tensor._make(backend.array_sum(g, axis=lead).astype(grad.dtype)) if needs[2] else None
        return grad_x, grad_w, grad_b, None, None


def _count(shape, dims):
    return math.prod(shape[d] for d in dims)
