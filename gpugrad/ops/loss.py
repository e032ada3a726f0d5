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
        # torch's smooth_l1_backward / huber_backward: -scale below -beta, scale above beta, the
        # linear part between (nan at nan); their double backward: the slope only where |d| < beta
        inside = diff.abs() < beta
        g = grad * where(inside, diff * (scale / beta),
                         where(diff > beta, scale, where(diff < -beta, -scale, diff.detach() * (scale / beta))))
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
            grad_p = BinaryCrossEntropyBackward.apply(scale, p, target)
        if ctx.needs_input_grad[1]:      # torch's binary_cross_entropy_target_backward: -logit(p), unclamped
            grad_t = scale * ((1 - p).log() - p.log())
        return grad_p, grad_t


class BinaryCrossEntropyBackward(InternalFunction):
    """scale (p - t) / max(p (1 - p), 1e-12), and torch's double backward of it:
    (p^2 - 2 p t + t) / ((p + eps)^2 (1 - p + eps)^2) to p, -1 / max(p (1 - p), eps) to t."""

    @staticmethod
    def forward(ctx, scale, p, target):
        xp = ctx.xp
        ctx.save_for_backward(scale, p, target)
        return (scale * (p - target) / xp.maximum(p * (1 - p), _BCE_EPSILON)).astype(p.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad_grad):
        scale, p, target = ctx.saved_tensors
        needs = ctx.needs_input_grad
        denominator = (p * (1 - p)).clamp(min=_BCE_EPSILON).detach()
        eps = 1e-12
        grad_scale = grad_grad * (p - target) / denominator if needs[0] else None
        grad_p = None
        if needs[1]:
            grad_p = (p * p - 2 * p * target + target) / ((p + eps) ** 2 * (1 - p + eps) ** 2) * (scale * grad_grad)
        # torch's binary_cross_entropy_double_backward_target clamps by the double 1e-12 (its kernel by float's)
        grad_target = -grad_grad * scale / (p * (1 - p)).clamp(min=eps).detach() if needs[2] else None
        return grad_scale, grad_p, grad_target


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
            # torch's: log_sigmoid(-x) - pos_weight * log_sigmoid(x) (inf and nan where torch's are)
            grad_target = grad * (-x if pos_weight is None else softplus(-x) * pos_weight - softplus(x))
        return grad_x, grad_target


class NllLoss(InternalFunction):
    """nll_loss of (N, C, d...) log-probabilities at class indices, torch's
    kernel: -w_t x[n, t] for each counted target, an ignored one contributes
    nothing (not even a nan from its row), 'mean' divides by the counted
    weight (0 / 0 = nan when every target is ignored); the gradient -w_t grad
    (/ total weight) at the targets and 0 elsewhere (so 0, not nan, for an
    all-ignored batch)."""

    @staticmethod
    def forward(ctx, x, safe, w_t, valid, reduction):
        xp = ctx.xp
        ctx.shape, ctx.reduction = x.shape, reduction
        picked = xp.take_along_axis(x, safe[:, None], axis=1)[:, 0]
        terms = xp.where(valid, -(picked * w_t), 0).astype(x.dtype, copy=False)
        ctx.scale = 1.0
        if reduction == "none":
            ctx.save_for_backward(safe, w_t, valid)
            return terms
        total = backend.array_sum(terms, dtype=dtypes.accumulate_dtype(x.dtype))
        if reduction == "mean":
            weight_sum = backend.array_sum(w_t, dtype=dtypes.accumulate_dtype(x.dtype))
            ctx.scale = 1 / weight_sum if weight_sum else math.inf
            total = total / weight_sum if weight_sum else total * math.nan
        ctx.save_for_backward(safe, w_t, valid)
        return backend.keep_array(total).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        safe, w_t, valid = ctx.saved_tensors
        return NllLossBackward.apply(grad, safe, w_t, valid, ctx.shape, ctx.scale), None, None, None, None


class NllLossBackward(InternalFunction):
    """The gradient of NllLoss: -w_t * grad * scale written at the counted targets (linear in grad; its
    derivative in grad is nll_loss again, as torch's)."""

    @staticmethod
    def forward(ctx, grad, safe, w_t, valid, shape, scale):
        xp = ctx.xp
        ctx.scale = scale
        ctx.save_for_backward(safe, w_t, valid)
        g = xp.broadcast_to(grad, safe.shape)
        values = xp.where(valid, -(w_t * g) * scale, 0).astype(grad.dtype, copy=False)
        out = xp.zeros(shape, dtype=grad.dtype)
        xp.put_along_axis(out, safe[:, None], values[:, None], axis=1)
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        safe, w_t, valid = ctx.saved_tensors
        picked = gather_valid(grad_grad, 1, safe.unsqueeze(1)).squeeze(1)
        # the engine sums these per-target terms back to grad's shape ('mean', 'sum': a number)
        return where(valid, -(picked * w_t) * ctx.scale, 0.0), None, None, None, None, None


def nll_loss_gather(log_probs, target, weight, ignore_index, reduction):
    """nll_loss of (N, C, d...) log-probabilities (NllLoss); bad targets raise
    (on the GPU at the next sync)."""
    xp = log_probs.xp
    classes = log_probs.shape[1]
    t = target.array
    check_indices(t, classes, errors.CLASS_INDEX, ignore_index)
    valid = (t != ignore_index) & (t >= 0) & (t < classes)
    acc = dtypes.accumulate_dtype(log_probs.dtype)
    safe = xp.where(valid, t, 0).astype(dtypes.int64, copy=False)
    w_t = valid.astype(acc) if weight is None else weight.array.astype(acc)[safe] * valid
    return NllLoss.apply(log_probs, Tensor._make(safe), Tensor._make(w_t.astype(log_probs.dtype)),
                         Tensor._make(valid), reduction)
