"""torch.nn.functional's names: activations, losses, linear, dropout,
layer_norm, embedding.

cross_entropy with class indices is one fused Function (CrossEntropy): the
forward keeps only the per-row log-sum-exp, the backward recomputes the
softmax in one pass (the CUDA kernels of kernels/cross_entropy.cu on the GPU,
the same math in array code on the CPU), and that backward is a Function
again, so second derivatives work.  The other losses are compositions of
differentiable ops.
"""

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.ops.elementwise import gelu, relu, sigmoid, softplus, tanh, where  # noqa: F401
from gpugrad.ops.reduction import (accumulate_dtype, log_softmax, logsumexp, logsumexp_parts,  # noqa: F401
                                   shifted, softmax)
from gpugrad.tensor import Tensor

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


# -- cross-entropy -------------------------------------------------------------------

def _row_weights_and_mask(xp, target, weight, ignore_index, acc):
    """(valid rows, target clamped into range, w_t with 0 on ignored rows)."""
    valid = target != ignore_index
    safe = xp.where(valid, target, 0)
    w_t = valid.astype(acc) if weight is None else weight.astype(acc)[safe] * valid
    return valid, safe, w_t


def _check_targets_on_cpu(target, classes, ignore_index):
    bad = (target != ignore_index) & ((target < 0) | (target >= classes))
    if bad.any():
        value = int(target[bad][0])
        raise IndexError(f"Target {value} is out of bounds: class indices must lie in [0, {classes}) "
                         f"or equal ignore_index ({ignore_index})")


def _cross_entropy_rows(xp, x, target, weight, ignore_index, smoothing):
    """Array code of the fused forward (any device): per-row loss, w_t, m, ls."""
    rows, classes = x.shape
    acc = accumulate_dtype(x.dtype)
    m, ls = logsumexp_parts(xp, x, (1,))
    xa = x.astype(acc, copy=False)
    valid, safe, w_t = _row_weights_and_mask(xp, target, weight, ignore_index, acc)
    x_t = xa[xp.arange(rows), safe]
    loss = (1 - smoothing) * w_t * ((m[:, 0] - x_t) + ls[:, 0])
    if smoothing:
        spread = (m - xa) + ls                     # -log_softmax, accurate for large logits
        if weight is not None:
            spread = spread * weight.astype(acc)
        loss = loss + (smoothing / classes) * spread.sum(axis=1)
    loss = xp.where(valid, loss, 0)
    return loss, w_t, m[:, 0], ls[:, 0]


def _cross_entropy_grad_terms(xp, target, weight, ignore_index, smoothing, classes, acc):
    """S (rows,) and the dense target distribution T (rows, C), grad = G * (softmax * S - T),
    for the second derivative."""
    valid, safe, w_t = _row_weights_and_mask(xp, target, weight, ignore_index, acc)
    total = classes if weight is None else weight.astype(acc).sum()
    scale = (1 - smoothing) * w_t + (smoothing / classes) * total * valid
    spread = xp.ones(classes, dtype=acc) if weight is None else weight.astype(acc)
    dist = (smoothing / classes) * spread[None, :] * valid[:, None].astype(acc)
    dist[xp.arange(target.shape[0]), safe] += (1 - smoothing) * w_t
    return scale, dist


def _cross_entropy_grad_array(xp, x, m, ls, per_row, target, weight, ignore_index, smoothing):
    """Array code of the fused backward: G * (softmax * S - T) with T applied
    in place (its smoothing part as a broadcast row, its target part by index),
    so no dense target distribution is built; ignored rows are exactly 0."""
    rows, classes = x.shape
    acc = accumulate_dtype(x.dtype)
    valid, safe, w_t = _row_weights_and_mask(xp, target, weight, ignore_index, acc)
    total = classes if weight is None else weight.astype(acc).sum()
    g = xp.where(valid, xp.broadcast_to(xp.asarray(per_row, dtype=acc), (rows,)), 0)
    column = (lambda v: v.reshape(-1, 1) if getattr(v, "ndim", 0) else v)
    out = shifted(xp, x, column(m), column(ls), exp=True)
    out *= (g * ((1 - smoothing) * w_t + (smoothing / classes) * total))[:, None]
    if smoothing:
        spread = xp.ones(classes, dtype=acc) if weight is None else weight.astype(acc)
        out -= (g * (smoothing / classes))[:, None] * spread[None, :]
    out[xp.arange(rows), safe] -= g * (1 - smoothing) * w_t
    if not bool(valid.all()):
        out[~valid] = 0          # also where an ignored row's logits are all -inf
    return out.astype(x.dtype, copy=False)


class CrossEntropy(InternalFunction):
    """Fused softmax cross-entropy over (rows, C) logits with class-index targets."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction, smoothing):
        xp = ctx.xp
        if backend.is_cupy_array(x):
            from gpugrad.cuda import fused
            loss, w_t, m, ls = fused.cross_entropy_forward(x, target, weight, ignore_index, smoothing)
        else:
            _check_targets_on_cpu(target, x.shape[1], ignore_index)
            loss, w_t, m, ls = _cross_entropy_rows(xp, x, target, weight, ignore_index, smoothing)
        denominator = w_t.sum() if reduction == "mean" else None
        ctx.save_for_backward(x, m, ls, target, weight, denominator)
        ctx.options = (ignore_index, reduction, smoothing)
        if reduction == "none":
            return loss.astype(x.dtype, copy=False)
        total = loss.sum()
        return (total if reduction == "sum" else total / denominator).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, m, ls, target, weight, denominator = ctx.saved_tensors
        ignore_index, reduction, smoothing = ctx.options
        per_row = grad / denominator if reduction == "mean" else grad
        if is_grad_enabled():       # create_graph: the log-sum-exp must stay linked to x
            m, ls = logsumexp(x, 1), 0.0
        grad_x = CrossEntropyBackward.apply(x, m, ls, per_row, target, weight, ignore_index, smoothing)
        return grad_x, None, None, None, None, None


class CrossEntropyBackward(InternalFunction):
    """grad_x = G * (exp((x - m) - ls) * S - T) in one pass; differentiable again."""

    @staticmethod
    def forward(ctx, x, m, ls, per_row, target, weight, ignore_index, smoothing):
        ctx.save_for_backward(x, m, ls, per_row, target, weight)
        ctx.options = (ignore_index, smoothing)
        xp = ctx.xp
        acc = accumulate_dtype(x.dtype)
        if backend.is_cupy_array(x) and getattr(ls, "dtype", None) == acc:
            from gpugrad.cuda import fused
            return fused.cross_entropy_backward(x, target, weight, ignore_index, smoothing, m, ls, per_row)
        return _cross_entropy_grad_array(xp, x, m, ls, per_row, target, weight, ignore_index, smoothing)

    @staticmethod
    def backward(ctx, grad_grad):
        x, m, ls, per_row, target, weight = ctx.saved_tensors
        ignore_index, smoothing = ctx.options
        acc = accumulate_dtype(x.dtype)
        scale, dist = _cross_entropy_grad_terms(x.xp, target.data, None if weight is None else weight.data,
                                                ignore_index, smoothing, x.shape[1], acc)
        scale, dist = Tensor._make(scale[:, None]), Tensor._make(dist)
        column = (lambda t: t.reshape(-1, 1) if isinstance(t, Tensor) and t.ndim else t)
        g = column(per_row)
        p = ((x - column(m)) - column(ls)).exp()
        weighted = grad_grad * g * scale * p
        grad_shift = -weighted.sum(1)
        grad_g = (grad_grad * (p * scale - dist)).sum(1)
        if isinstance(per_row, Tensor) and per_row.ndim == 0:
            grad_g = grad_g.sum()
        return weighted, grad_shift, grad_shift, grad_g, None, None, None, None


def _class_dim_last(input, target):
    """(rows, C) logits and (rows,) int32/int64 targets from input (C,), (N, C) or (N, C, d1, ...)."""
    if target.dtype not in (dtypes.int32, dtypes.int64):
        target = target.to(dtypes.int64)
    if input.ndim == 1:
        return input.unsqueeze(0), target.reshape(1)
    if input.ndim == 2:
        return input, target
    rows = input.permute((0,) + tuple(range(2, input.ndim)) + (1,))
    return rows.reshape(-1, input.shape[1]), target.reshape(-1)


def _check_class_targets(input, target, name):
    if target.dtype.kind not in "iu":
        raise RuntimeError(f"{name}: expected target of dtype int64 or int32 with class indices, "
                           f"got {target.dtype}")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if input.ndim >= 2 and target.ndim >= 1 and target.shape[0] != input.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0]}).")
    if tuple(target.shape) != tuple(expected):
        raise RuntimeError(f"{name}: expected target size {list(expected)}, got {list(target.shape)} "
                           f"for input of size {list(input.shape)}")


def _check_common(input, target, weight, reduction, name):
    _check_reduction(reduction)
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{name}: input and target must be Tensors")
    if input.dtype.kind != "f":
        raise RuntimeError(f"{name}: expected a floating-point input, got {input.dtype}")
    if input.ndim == 0:
        raise RuntimeError(f"{name}: input must have at least one dimension (the classes), got a scalar")
    for other, what in ((target, "target"), (weight, "weight")):
        if other is not None and other.device != input.device:
            raise RuntimeError(f"{name}: expected {what} on {input.device} like the input, "
                               f"but it is on {other.device}")
    classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != classes):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no "
                           f"classes but got weight tensor of shape: {list(weight.shape)}")
    return classes


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy between logits ``input`` and ``target``.

    input: (C,), (N, C) or (N, C, d1, ...) floating point.
    target: class indices (int64/int32) of shape (), (N,) or (N, d1, ...), or
    class probabilities of the input's shape.
    weight: optional (C,) class weights; ignore_index: targets that contribute
    no loss and no gradient ('mean' divides by the weight of the rest; all
    ignored gives nan, as in torch); label_smoothing in [0, 1].
    Raises IndexError for a class index outside [0, C) (on the GPU at the next
    synchronising read).
    """
    classes = _check_common(input, target, weight, reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if target.dtype.kind == "f":
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing, classes)
    _check_class_targets(input, target, "cross_entropy")
    rows, flat_target = _class_dim_last(input, target)
    weight_data = None if weight is None else weight.detach().to(input.dtype)
    loss = CrossEntropy.apply(rows, flat_target.detach(), weight_data, int(ignore_index), reduction,
                              float(label_smoothing))
    return loss.reshape(target.shape) if reduction == "none" else loss


def _cross_entropy_probabilities(input, target, weight, reduction, smoothing, classes):
    if target.shape != input.shape:
        raise RuntimeError(f"cross_entropy: probability targets must have the input's shape "
                           f"{list(input.shape)}, got {list(target.shape)}")
    class_dim = 0 if input.ndim == 1 else 1
    log_probs = log_softmax(input, class_dim)
    if smoothing:
        target = target * (1 - smoothing) + smoothing / classes
    terms = log_probs * target
    if weight is not None:
        shape = [1] * input.ndim
        shape[class_dim] = classes
        terms = terms * weight.reshape(shape)
    loss = -terms.sum(class_dim)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / (input.numel() // classes)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at class indices
    ``target`` (shapes as in cross_entropy); ``nll_loss(log_softmax(x, 1), t)``
    equals ``cross_entropy(x, t)``."""
    classes = _check_common(input, target, weight, reduction, "nll_loss")
    _check_class_targets(input, target, "nll_loss")
    rows, flat = _class_dim_last(input, target)
    xp = input.xp
    t = flat.data
    if backend.is_cupy_array(t):
        from gpugrad.cuda import fused
        fused.check_targets(t, classes, int(ignore_index))
    else:
        _check_targets_on_cpu(t, classes, ignore_index)
    acc = accumulate_dtype(input.dtype)
    valid = (t != ignore_index) & (t >= 0) & (t < classes)
    safe = xp.where(valid, t, 0)
    w_t = valid.astype(acc) if weight is None else weight.data.astype(acc)[safe] * valid
    picked = rows[Tensor._make(xp.arange(t.shape[0])), Tensor._make(safe)]
    loss = -picked * Tensor._make(w_t.astype(input.dtype))
    if reduction == "none":
        return loss.reshape(target.shape)
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / Tensor._make(w_t.sum().astype(input.dtype))


# -- other losses -----------------------------------------------------------------------

def mse_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    """Mean squared error (broadcasting input against target)."""
    _check_reduction(reduction)
    if input.shape != target.shape:
        import warnings
        warnings.warn(f"Using a target size ({list(target.shape)}) that is different to the input size "
                      f"({list(input.shape)}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=2)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean"):
    _check_reduction(reduction)
    return _reduce((input - target).abs(), reduction)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """-w (t log x + (1 - t) log(1 - x)) for probabilities x; logs clamped at
    -100 as in torch."""
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({list(target.shape)}) that is different to the input size "
                         f"({list(input.shape)}) is deprecated. Please ensure they have the same size.")
    if input.numel() and (bool((input.detach() < 0).any()) or bool((input.detach() > 1).any())):
        raise RuntimeError("all elements of input should be between 0 and 1")
    log_x = input.log().clamp(min=-100)
    log_1mx = (1 - input).log().clamp(min=-100)
    loss = -(target * log_x + (1 - target) * log_1mx)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


class BinaryCrossEntropyWithLogits(InternalFunction):
    """(1 - t) x + L * log(1 + exp(-x)), L = 1 + (pos_weight - 1) t, computed
    without overflow for any |x|; d/dx = L sigmoid(x) - pos_weight t."""

    @staticmethod
    def forward(ctx, x, target, pos_weight):
        xp = ctx.xp
        ctx.save_for_backward(x, target, pos_weight)
        softplus_neg = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)     # log(1 + e^-x)
        scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
        return (1 - target) * x + scale * softplus_neg

    @staticmethod
    def backward(ctx, grad):
        x, target, pos_weight = ctx.saved_tensors
        scale = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
        weighted_target = target if pos_weight is None else pos_weight * target
        grad_x = grad * (scale * x.sigmoid() - weighted_target)
        grad_target = None
        if ctx.needs_input_grad[1]:
            softplus_neg = softplus(-x)
            grad_target = grad * (-x + (0 if pos_weight is None else (pos_weight - 1) * softplus_neg))
        return grad_x, grad_target, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable expression (no overflow for
    large |logits|)."""
    _check_reduction(reduction)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({list(target.shape)}) must be the same as input size "
                         f"({list(input.shape)})")
    target = target.to(input.dtype)
    loss = BinaryCrossEntropyWithLogits.apply(input, target,
                                              None if pos_weight is None else pos_weight.to(input.dtype))
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


# -- layers -------------------------------------------------------------------------------

class Linear(InternalFunction):
    """x @ W^T + b as one node; the weight and bias gradients come out as new
    contiguous arrays (no transposed views to copy into .grad)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        needs = ctx.needs_input_grad
        ctx.save_for_backward(x if needs[1] else None, weight if needs[0] else None)
        out = ctx.xp.matmul(x, weight.T)
        if bias is not None:
            out += bias
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        rows = grad.reshape(-1, grad.shape[-1])
        grad_x = grad @ weight if needs[0] else None
        grad_weight = rows.mT @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        grad_bias = rows.sum(0) if needs[2] else None
        return grad_x, grad_weight, grad_bias


def linear(input, weight, bias=None):
    """input @ weight.T + bias; input (..., in_features), weight (out_features, in_features)."""
    if input.shape[-1:] != weight.shape[-1:] or weight.ndim != 2:
        raise RuntimeError(f"linear: input has {input.shape[-1] if input.ndim else 0} features (shape "
                           f"{list(input.shape)}) but the weight expects {weight.shape[-1]} (weight shape "
                           f"{list(weight.shape)})")
    if input.dtype != weight.dtype or (bias is not None and bias.dtype != weight.dtype):
        raise RuntimeError(f"linear: input dtype {input.dtype} does not match weight dtype {weight.dtype}")
    return Linear.apply(input, weight, bias)


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0
    from gpugrad import random
    keep = random.uniform_array(input.xp, input.shape, 0.0, 1.0, input.dtype) >= p
    return input * Tensor._make((keep / (1 - p)).astype(input.dtype))


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last len(normalized_shape) dims (biased variance), then scale and shift."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    if tuple(input.shape[input.ndim - len(normalized_shape):]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized_shape))}], but got input of size "
                           f"{list(input.shape)}")
    dims = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    mean = input.mean(dims, keepdim=True)
    centered = input - mean
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered * (var + eps).rsqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(input, weight, padding_idx=None):
    """Rows of ``weight`` at the indices ``input`` (any shape); the row at
    padding_idx receives no gradient."""
    if input.dtype.kind not in "iu":
        raise RuntimeError(f"embedding: expected integer indices, got {input.dtype}")
    rows = weight.shape[0]
    if input.numel():
        low, high = int(input.data.min()), int(input.data.max())
        if low < -rows or high >= rows:
            raise IndexError(f"embedding: index {high if high >= rows else low} is out of range for "
                             f"{rows} rows")
    out = weight[input]
    if padding_idx is not None:
        padding_idx = padding_idx % rows
        mask = Tensor._make((input.data == padding_idx)[..., None])
        out = where(mask, out.detach(), out)
    return out


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding with a new last dim of num_classes (max + 1 by default)."""
    if tensor.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor.")
    xp = tensor.xp
    if num_classes < 0:
        num_classes = int(tensor.data.max()) + 1 if tensor.numel() else 0
    if tensor.numel() and (int(tensor.data.min()) < 0 or int(tensor.data.max()) >= num_classes):
        raise RuntimeError("Class values must be smaller than num_classes.")
    return Tensor._make((tensor.data[..., None] == xp.arange(num_classes)).astype(dtypes.int64))


def leaky_relu(input, negative_slope=0.01):
    return where(input > 0, input, input * negative_slope)


def silu(input):
    return input * input.sigmoid()


def normalize(input, p=2.0, dim=1, eps=1e-12):
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps)

