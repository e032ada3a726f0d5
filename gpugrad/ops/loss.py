"""The losses' autograd Functions (torch's node names), validated and called
by ``nn.functional``: mse, smooth_l1, huber and the binary cross-entropies
are one node each, the reduction inside; nll_loss is a gather of the
target's log-probability.  (Cross-entropy is the fused op of
``ops/fused/cross_entropy.py``.)"""

import math

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.cuda import errors
from gpugrad.ops.elementwise import softplus, where
from gpugrad.ops.fused.indices import check_indices
from gpugrad.ops.shape import gather_valid
from gpugrad.tensor import Tensor


class _PointwiseLoss(InternalFunction):
    """An elementwise loss and its reduction in one node, named as torch's
    (``MseLossBackward0``, ...).  A subclass gives ``pointwise(ctx, input,
    target, *extra)`` on arrays (saving what its gradient needs) and
    ``gradients(ctx, grad)``: the (input, target) gradients in Tensor ops, for
    a per-element ``grad``, so double backward works."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, input, target, reduction, *extra):
        loss = type(ctx).pointwise(ctx, input, target, *extra)
        ctx.reduction, ctx.extra = reduction, len(extra)
        if reduction == "none":
            return loss.astype(input.dtype, copy=False)
        ctx.count = loss.size
        total = backend.array_sum(loss, dtype=dtypes.accumulate_dtype(input.dtype))
        if reduction == "mean":
            total = total / loss.size if loss.size else total * math.nan
        return total.astype(input.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        if ctx.reduction == "mean":
            grad = grad / ctx.count if ctx.count else grad * math.nan
        return type(ctx).gradients(ctx, grad) + (None,) * (1 + ctx.extra)


class MseLoss(_PointwiseLoss):
    @staticmethod
    def pointwise(ctx, input, target):
        ctx.save_for_backward(input, target)
        diff = input - target
        return diff * diff

    @staticmethod
    def gradients(ctx, grad):
        input, target = ctx.saved_tensors
        g = 2 * grad * (input - target)
        return g, (-g if ctx.needs_input_grad[1] else None)


class _PiecewiseQuadratic(_PointwiseLoss):
    """0.5 d^2 / beta * scale where |d| < beta, scale (|d| - 0.5 beta) elsewhere
    (d = input - target): smooth_l1 (scale 1) and huber (beta = delta = scale)."""

    @staticmethod
    def pointwise(ctx, input, target, beta, scale):
        ctx.save_for_backward(input, target)
        ctx.beta, ctx.scale = beta, scale
        diff = input - target
        size = abs(diff)
        return ctx.xp.where(size < beta, (0.5 * scale / beta) * diff * diff, scale * (size - 0.5 * beta))

    @staticmethod
    def gradients(ctx, grad):
        input, target = ctx.saved_tensors
        diff = input - target
        beta, scale = ctx.beta, ctx.scale
        g = grad * where(diff.abs() < beta, diff * (scale / beta), diff.sign() * scale)
        return g, (-g if ctx.needs_input_grad[1] else None)


class SmoothL1Loss(_PiecewiseQuadratic):
    pass


class HuberLoss(_PiecewiseQuadratic):
    pass


_BCE_EPSILON = 9.999999960041972e-13    # torch's 1e-12, a float32 constant: gradients at p = 0 and 1 agree


class BinaryCrossEntropy(_PointwiseLoss):
    """-w (t log p + (1 - t) log(1 - p)) with the logs clamped at -100 and
    torch's gradient w (p - t) / max(p (1 - p), 1e-12): finite at p = 0 and 1."""

    @staticmethod
    def pointwise(ctx, p, target, weight):
        xp = ctx.xp
        ctx.save_for_backward(p, target, weight)
        log_p = xp.maximum(xp.log(p), -100)
        log_q = xp.maximum(xp.log1p(-p), -100)
        loss = -(target * log_p + (1 - target) * log_q)
        return loss if weight is None else loss * weight

    @staticmethod
    def gradients(ctx, grad):
        p, target, weight = ctx.saved_tensors
        scale = grad if weight is None else grad * weight
        grad_p = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_p = scale * (p - target) / (p * (1 - p)).clamp(min=_BCE_EPSILON)
        if ctx.needs_input_grad[1]:
            grad_t = scale * ((1 - p).log().clamp(min=-100) - p.log().clamp(min=-100))
        return grad_p, grad_t


class BinaryCrossEntropyWithLogits(_PointwiseLoss):
    """w ((1 - t) x + L log(1 + exp(-x))), L = 1 + (pos_weight - 1) t, computed
    without overflow for any |x|; d/dx = w (L sigmoid(x) - pos_weight t)."""

    @staticmethod
    def pointwise(ctx, x, target, weight, pos_weight):
        xp = ctx.xp
        ctx.save_for_backward(x, target, weight, pos_weight)
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)     # log(1 + e^-x)
        scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
        loss = (1 - target) * x + scale * softplus_neg
        return loss if weight is None else loss * weight

    @staticmethod
    def gradients(ctx, grad):
        x, target, weight, pos_weight = ctx.saved_tensors
        if weight is not None:
            grad = grad * weight
        grad_x = grad_target = None
        if ctx.needs_input_grad[0]:
            scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
            weighted_target = target if pos_weight is None else pos_weight * target
            grad_x = grad * (scale * x.sigmoid() - weighted_target)
        if ctx.needs_input_grad[1]:
            grad_target = grad * (-x + (0 if pos_weight is None else (pos_weight - 1) * softplus(-x)))
        return grad_x, grad_target


def nll_loss_gather(log_probs, target, weight, ignore_index, reduction):
    """nll_loss of (N, C, d...) log-probabilities: -w_t * input[n, t] (no fused
    kernel: a gather); bad targets raise (on the GPU at the next sync)."""
    xp = log_probs.xp
    classes = log_probs.shape[1]
    t = target.array
    check_indices(t, classes, errors.CLASS_INDEX, ignore_index)
    valid = (t != ignore_index) & (t >= 0) & (t < classes)
    acc = dtypes.accumulate_dtype(log_probs.dtype)
    safe = xp.where(valid, t, 0)
    w_t = valid.astype(acc) if weight is None else weight.array.astype(acc)[safe] * valid
    picked = gather_valid(log_probs, 1, Tensor._make(xp.expand_dims(safe, 1).astype(dtypes.int64))).squeeze(1)
    loss = -picked * Tensor._make(w_t.astype(log_probs.dtype))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / Tensor._make(w_t.sum().astype(log_probs.dtype))
