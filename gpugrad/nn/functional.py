"""torch.nn.functional's names: activations, losses, linear, convolution and
pooling, dropout, layer_norm, batch_norm, embedding, one_hot, pad, attention.

This module validates arguments (shapes, dtypes, devices, options) and calls
the ops; it defines no autograd Function and exports torch's names only
(``__all__``).  Cross-entropy is the fused op of ``ops/fused/cross_entropy.py``
(linear_cross_entropy of ``ops/fused/linear_cross_entropy.py``); mse,
smooth_l1, huber, the binary cross-entropies and nll_loss are the Functions of
``ops/loss.py``, ctc_loss that of ``ops/ctc.py``, layer_norm that of
``ops/normalization.py``; the rest are compositions of ops.
"""

import math
import warnings

import numpy

from gpugrad import backend, dtypes, random, validation
from gpugrad.amp import autocast_mode
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad
from gpugrad.cuda import errors as device_errors
from gpugrad.cuda import layers
from gpugrad.dims import sequence_arg, wrap_dim
from gpugrad.ops import ctc, elementwise, normalization
from gpugrad.ops import embedding as embeddings
from gpugrad.ops import loss as losses
from gpugrad.ops.conv import (
    adaptive_avg_pool2d,
    avg_pool1d,
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose1d,
    conv_transpose2d,
    fold,
    max_pool1d,
    max_pool2d,
    unfold,
)
from gpugrad.ops.elementwise import gelu, sigmoid, softplus, tanh, where
from gpugrad.ops.fused import linear_cross_entropy as chunked
from gpugrad.ops.fused.attention import attention_softmax
from gpugrad.ops.fused.cross_entropy import cross_entropy as fused_cross_entropy
from gpugrad.ops.fused.indices import check_indices
from gpugrad.ops.fused.softmax import log_softmax, safe_softmax, softmax
from gpugrad.ops.linalg import einsum, linear
from gpugrad.ops.sampling import interpolate
from gpugrad.ops.shape import (
    broadcast_tensors,
    cat,
    index_select_valid,
    pad,
    pixel_shuffle,
    pixel_unshuffle,
    split_with_sizes,
)
from gpugrad.tensor import Tensor

__all__ = [
    "adaptive_avg_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "batch_norm",
    "bilinear",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv1d",
    "conv2d",
    "conv_transpose1d",
    "conv_transpose2d",
    "cosine_embedding_loss",
    "cosine_similarity",
    "cross_entropy",
    "ctc_loss",
    "dropout",
    "elu",
    "embedding",
    "embedding_bag",
    "fold",
    "gaussian_nll_loss",
    "gelu",
    "glu",
    "group_norm",
    "gumbel_softmax",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "huber_loss",
    "instance_norm",
    "interpolate",
    "kl_div",
    "l1_loss",
    "layer_norm",
    "leaky_relu",
    "linear",
    "linear_cross_entropy",
    "log_softmax",
    "logsigmoid",
    "margin_ranking_loss",
    "max_pool1d",
    "max_pool2d",
    "mish",
    "mse_loss",
    "multi_head_attention_forward",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "normalize",
    "one_hot",
    "pad",
    "pairwise_distance",
    "pixel_shuffle",
    "pixel_unshuffle",
    "poisson_nll_loss",
    "prelu",
    "relu",
    "relu6",
    "relu_",
    "scaled_dot_product_attention",
    "selu",
    "sigmoid",
    "silu",
    "smooth_l1_loss",
    "softmax",
    "softmin",
    "softplus",
    "softsign",
    "tanh",
    "tanhshrink",
    "threshold",
    "triplet_margin_loss",
    "unfold",
    "upsample",
    "upsample_bilinear",
    "upsample_nearest",
]

_REDUCTIONS = ("none", "mean", "sum")


def _reduction(reduction, size_average=None, reduce=None):
    """The reduction, honouring torch's deprecated size_average / reduce
    (with torch's warning) and rejecting unknown names."""
    if size_average is not None or reduce is not None:
        warnings.warn("size_average and reduce args will be deprecated, please use reduction='sum' instead.",
                      UserWarning, stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    return reduction


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    return loss.sum() if reduction == "sum" else loss.mean()


def _check_tensor(value, name, what):
    if not isinstance(value, Tensor):
        raise TypeError(f"{name}(): argument '{what}' must be a Tensor, not {type(value).__name__}")


# -- cross-entropy and nll -----------------------------------------------------------------

def _check_class_input(input, target, weight, name):
    _check_tensor(input, name, "input")
    _check_tensor(target, name, "target")
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError(f"{name}: expected a floating-point input, got {dtypes.dtype_name(input.dtype)}")
    if input.ndim == 0:
        raise RuntimeError(f"{name}: input must have at least one dimension (the classes), got a scalar")
    for other, what in ((target, "target"), (weight, "weight")):
        if other is not None and other.device != input.device:
            raise RuntimeError(f"{name}: expected {what} on {input.device} like the input, "
                               f"but it is on {other.device}")
    classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if weight is not None:
        if weight.ndim != 1 or weight.shape[0] != classes:
            raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no "
                               f"classes but got weight tensor of shape: {list(weight.shape)}")
        if weight.dtype != input.dtype:
            raise RuntimeError(f"{name}: expected weight of dtype {dtypes.dtype_name(input.dtype)} like the input, "
                               f"got {dtypes.dtype_name(weight.dtype)}")
    return classes


def _constant_class_weight(weight, input_ndim):
    """Class weights of index targets get no gradient: torch refuses one that requires it."""
    if weight is not None and weight.requires_grad and is_grad_enabled():
        kernel = "nll_loss2d_forward" if input_ndim == 4 else "nll_loss_forward"
        raise RuntimeError(f"The function '{kernel}' is not differentiable with respect to argument 'weight'. This "
                           "input cannot have requires_grad True.")


def _check_class_targets(input, target, name):
    if target.dtype not in (dtypes.int64, dtypes.int32, dtypes.uint8, dtypes.int16, dtypes.int8):
        raise RuntimeError(f"{name}: expected target of dtype int64 (class indices) or of the input's "
                           f"floating dtype (class probabilities), got {dtypes.dtype_name(target.dtype)}")
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if input.ndim >= 2 and target.ndim >= 1 and target.shape[0] != input.shape[0]:
        raise ValueError(f"Expected input batch_size ({input.shape[0]}) to match target batch_size "
                         f"({target.shape[0]}).")
    if tuple(target.shape) != tuple(expected):
        raise RuntimeError(f"{name}: expected target size {list(expected)}, got {list(target.shape)} "
                           f"for input of size {list(input.shape)}")


def _class_indices(target):
    """Targets as int32 / int64 (what the kernels index with)."""
    return target if target.dtype in (dtypes.int32, dtypes.int64) else target.to(dtypes.int64)


@autocast_mode.float32
def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy between logits ``input`` and ``target``.

    input: (C,), (N, C) or (N, C, d1, ...) floating point.
    target: class indices (int64/int32) of shape (), (N,) or (N, d1, ...), or
    class probabilities of the input's shape.
    weight: optional (C,) class weights of the input's dtype; ignore_index:
    targets that contribute no loss and no gradient ('mean' divides by the
    weight of the rest; all ignored gives nan, as in torch); label_smoothing in [0, 1].
    Raises IndexError for a class index outside [0, C) (on the GPU at the
    next synchronising read).  Fused: one pass forward, one backward.
    """
    reduction = _reduction(reduction, size_average, reduce)
    classes = _check_class_input(input, target, weight, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if dtypes.is_floating_point(target.dtype):
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing, classes)
    _check_class_targets(input, target, "cross_entropy")
    _constant_class_weight(weight, input.ndim)
    target = _class_indices(target)
    if input.ndim == 1:
        return fused_cross_entropy(input.unsqueeze(0), target.reshape(1), weight, ignore_index, reduction,
                                   label_smoothing).reshape(())
    return fused_cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)


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


def linear_cross_entropy(input, linear_weight, target, *, linear_bias=None, weight=None, reduction="mean",
                         ignore_index=None, label_smoothing=0.0, options=None):
    """``cross_entropy(linear(input, linear_weight, linear_bias), target, ...)``
    (torch 2.13's function) without the N x V logits: rows go through in chunks,
    the gradients of input, weight and bias computed as each chunk's loss is
    (``LinearCrossEntropyOptions`` sets the chunk).  input (D,) or (N, D) (and,
    beyond torch, (B, T, D): leading dims flattened, 'none' keeps them),
    linear_weight (V, D), target class indices.  Probability targets and
    K-dimensional weights run the unfused reference.  Double backward goes
    through the whole logits (differentiable, as torch's)."""
    reduction = _reduction(reduction)
    if ignore_index is None:
        ignore_index = -100
    for value, what in ((input, "input"), (linear_weight, "linear_weight"), (target, "target")):
        _check_tensor(value, "linear_cross_entropy", what)
    if not dtypes.is_floating_point(target.dtype):
        _constant_class_weight(weight, 2)
    if not 0.0 <= label_smoothing <= 1.0:
        raise RuntimeError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if linear_weight.ndim > 2 or dtypes.is_floating_point(target.dtype) or input.ndim == 0:
        if linear_weight.ndim > 2 and input.ndim != 2:
            raise RuntimeError("linear_cross_entropy: a K-dimensional linear_weight needs (N, in_features) input")
        classes_shape = tuple(linear_weight.shape[:-1])
        logits = linear(input, linear_weight.reshape(-1, linear_weight.shape[-1]),
                        None if linear_bias is None else linear_bias.reshape(-1))
        if linear_weight.ndim > 2:
            logits = logits.reshape((input.shape[0],) + classes_shape)
        return cross_entropy(logits, target, weight=weight, ignore_index=ignore_index, reduction=reduction,
                             label_smoothing=label_smoothing)
    if linear_weight.ndim != 2 or input.shape[-1] != linear_weight.shape[1]:
        raise RuntimeError(f"linear_cross_entropy: input has {input.shape[-1]} features (shape "
                           f"{list(input.shape)}) but linear_weight is of shape {list(linear_weight.shape)}")
    if input.dtype != linear_weight.dtype:
        raise RuntimeError(f"linear_cross_entropy: expected input and linear_weight to have the same dtype, but "
                           f"got: {dtypes.dtype_name(input.dtype)} != {dtypes.dtype_name(linear_weight.dtype)}")
    classes = linear_weight.shape[0]
    if linear_bias is not None and tuple(linear_bias.shape) != (classes,):
        raise RuntimeError(f"linear_cross_entropy: linear_bias of shape {list(linear_bias.shape)} for {classes} "
                           "classes")
    batch_shape = tuple(input.shape[:-1])
    if tuple(target.shape) != batch_shape:
        raise RuntimeError(f"linear_cross_entropy: expected target of shape {list(batch_shape)} for input of shape "
                           f"{list(input.shape)}, got {list(target.shape)}")
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError(f"linear_cross_entropy: expected a floating-point input, got "
                           f"{dtypes.dtype_name(input.dtype)}")
    if target.dtype not in (dtypes.int64, dtypes.int32, dtypes.uint8, dtypes.int16, dtypes.int8):
        raise RuntimeError(f"linear_cross_entropy: expected target of dtype int64 (class indices), got "
                           f"{dtypes.dtype_name(target.dtype)}")
    for other, what in ((linear_weight, "linear_weight"), (target, "target"), (weight, "weight"),
                        (linear_bias, "linear_bias")):
        if other is not None and other.device != input.device:
            raise RuntimeError(f"linear_cross_entropy: expected {what} on {input.device} like the input, but it "
                               f"is on {other.device}")
    if weight is not None and (weight.ndim != 1 or weight.shape[0] != classes):
        raise RuntimeError(f"weight tensor should be defined either for all {classes} classes or no classes but "
                           f"got weight tensor of shape: {list(weight.shape)}")
    # (N, D) input as it is: through a reshape node its gradient would arrive as a view, which the engine copies
    rows = input if input.ndim == 2 else input.reshape(-1, input.shape[-1])
    loss = chunked.linear_cross_entropy(rows, linear_weight, linear_bias, _class_indices(target.reshape(-1)),
                                        weight, ignore_index, reduction, label_smoothing,
                                        chunk=None if options is None else options.batch_chunk_size,
                                        memory_budget=None if options is None else options.memory_budget,
                                        acc_dtype=None if options is None else options.acc_dtype)
    return loss.reshape(batch_shape) if reduction == "none" else loss


@autocast_mode.float32
def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood of log-probabilities ``input`` at class indices
    ``target`` (shapes as in cross_entropy); ``nll_loss(log_softmax(x, 1), t)``
    equals ``cross_entropy(x, t)``."""
    reduction = _reduction(reduction, size_average, reduce)
    _check_class_input(input, target, weight, "nll_loss")
    _check_class_targets(input, target, "nll_loss")
    _constant_class_weight(weight, input.ndim)
    target = _class_indices(target)
    if input.ndim == 1:
        input, target = input.unsqueeze(0), target.reshape(1)
        loss = losses.nll_loss_gather(input, target, weight, int(ignore_index), reduction)
        return loss.reshape(()) if reduction == "none" else loss
    return losses.nll_loss_gather(input, target, weight, int(ignore_index), reduction)


# -- other losses -----------------------------------------------------------------------

def _warn_shape(input, target):
    if input.shape != target.shape:
        warnings.warn(f"Using a target size ({list(target.shape)}) that is different to the input size "
                      f"({list(input.shape)}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)


def _loss_operands(input, target, name):
    """input and target in their common floating dtype (torch's promotion) and
    broadcast against each other (torch's RuntimeError where they do not),
    with torch's warning when their sizes differ."""
    _check_tensor(input, name, "input")
    _check_tensor(target, name, "target")
    _warn_shape(input, target)
    dtype = dtypes.result_type(input, target)
    if not dtypes.is_floating_point(dtype):
        dtype = dtypes.get_default_dtype()
    input, target = (input if input.dtype == dtype else input.to(dtype)), (target if target.dtype == dtype else
                                                                            target.to(dtype))
    return broadcast_tensors(input, target)


def _weighted(loss, weight, shape, reduction, mean_by_weight=True):
    """torch's weighted mse, l1 (the mean divides by the sum of the weights) and huber (by the count);
    the weight of the input's own ``shape``."""
    if weight.shape != shape:
        raise ValueError("Weights and input must have the same size.")
    loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / weight.sum() if mean_by_weight else loss.mean()
    raise ValueError(f"Invalid reduction mode: {reduction}. Expected one of 'none', 'mean', 'sum'.")


def _legacy(reduction, size_average, reduce):
    """torch's deprecated size_average / reduce, when given (the name itself is checked later, as torch does)."""
    return reduction if size_average is None and reduce is None else _reduction(reduction, size_average, reduce)


@autocast_mode.float32
def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error (broadcasting input against target, with torch's warning)."""
    shape = input.shape
    input, target = _loss_operands(input, target, "mse_loss")
    reduction = _legacy(reduction, size_average, reduce)
    if weight is None:
        return losses.MseLoss.apply(input, target, _reduction(reduction))
    diff = input - target
    return _weighted(diff * diff, weight, shape, reduction)


@autocast_mode.float32
def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean absolute error."""
    shape = input.shape
    input, target = _loss_operands(input, target, "l1_loss")
    reduction = _legacy(reduction, size_average, reduce)
    loss = (input - target).abs()
    return _reduce(loss, _reduction(reduction)) if weight is None else _weighted(loss, weight, shape, reduction)


@autocast_mode.float32
def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean", beta=1.0):
    """0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere (beta = 0: l1)."""
    input, target = _loss_operands(input, target, "smooth_l1_loss")
    reduction = _reduction(_legacy(reduction, size_average, reduce))
    if beta == 0:
        return _reduce((input - target).abs(), reduction)
    if beta < 0:
        raise RuntimeError("smooth_l1_loss does not support negative values for beta.")
    return losses.SmoothL1Loss.apply(input, target, reduction, float(beta), 1.0)


@autocast_mode.float32
def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere."""
    shape = input.shape
    input, target = _loss_operands(input, target, "huber_loss")
    if weight is None:
        reduction = _reduction(reduction)
    elif weight.shape != shape:
        raise ValueError("Weights and input must have the same size.")
    if delta <= 0:
        raise RuntimeError("huber_loss does not support non-positive values for delta.")
    if weight is None:
        return losses.HuberLoss.apply(input, target, reduction, float(delta), float(delta))
    return _weighted(losses.HuberLoss.apply(input, target, "none", float(delta), float(delta)), weight, shape,
                     reduction, mean_by_weight=False)


@autocast_mode.float32
def kl_div(input, target, size_average=None, reduce=None, reduction="mean", log_target=False):
    """KL(target || exp(input)) elementwise: target (log target - input), as
    torch's xlogy(target, target) - target * input (0 where target is 0, nan
    with a nan); 'batchmean' divides the sum by the batch size."""
    batchmean = reduction == "batchmean" and size_average is None and reduce is None
    if batchmean:
        reduction = "sum"
    else:
        reduction = _reduction(reduction, size_average, reduce)
        if reduction == "mean" and size_average is None and reduce is None:
            warnings.warn("reduction: 'mean' divides the total loss by both the batch size and the support "
                          "size.'batchmean' divides only by the batch size, and aligns with the KL div math "
                          "definition.'mean' will be changed to behave the same as 'batchmean' in the next "
                          "major release.", UserWarning, stacklevel=2)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        loss = elementwise.xlogy(target, target) - target * input
    out = _reduce(loss, reduction)
    return out / input.shape[0] if batchmean and input.ndim else out


@autocast_mode.float32
def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """1 - cos(x1, x2) where target is 1, max(0, cos - margin) where it is -1
    (along the last dim of 1-D or 2-D inputs; torch's 1e-12 added to each
    squared norm)."""
    reduction = _reduction(reduction, size_average, reduce)
    dim = target.ndim
    if dim not in (0, 1):
        raise RuntimeError("0D or 1D target tensor expected, multi-target not supported")
    if (input1.ndim, input2.ndim) != (dim + 1, dim + 1):
        raise RuntimeError(f"{dim}D target tensor expects {dim + 1}D input tensors, but found inputs with sizes "
                           f"{list(input1.shape)} and {list(input2.shape)}.")
    product = (input1 * input2).sum(dim)
    squares1 = (input1 * input1).sum(dim) + 1e-12
    squares2 = (input2 * input2).sum(dim) + 1e-12
    cos = product / (squares1 * squares2).sqrt()
    zeros = cos.new_zeros(())
    loss = where(target == 1, 1 - cos, zeros) + where(target == -1, (cos - margin).clamp_min(0), zeros)
    return _reduce(loss, reduction)


@autocast_mode.float32
def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None, reduction="mean"):
    """max(0, -target (x1 - x2) + margin)."""
    reduction = _reduction(reduction, size_average, reduce)
    if input1.ndim != input2.ndim or input1.ndim != target.ndim:
        raise RuntimeError(f"margin_ranking_loss : All input tensors should have same dimension but got sizes: "
                           f"input1: {input1.shape}, input2: {input2.shape}, target: {target.shape} ")
    return _reduce((-target * (input1 - input2) + margin).clamp_min(0), reduction)


@autocast_mode.float32
def triplet_margin_loss(anchor, positive, negative, margin=1.0, p=2, eps=1e-6, swap=False, size_average=None,
                        reduce=None, reduction="mean"):
    """max(0, margin + d(a, p) - d(a, n)) with d the pairwise p-norm distance
    (swap: d(a, n) the smaller of it and d(p, n))."""
    reduction = _reduction(reduction, size_average, reduce)
    if margin <= 0:
        raise ValueError(f"margin must be greater than 0, got {margin}")
    if not anchor.ndim == positive.ndim == negative.ndim:
        raise RuntimeError(f"The anchor, positive, and negative tensors are expected to have the same number of "
                           f"dimensions, but got: anchor {anchor.ndim}D, positive {positive.ndim}D, and negative "
                           f"{negative.ndim}D inputs")
    positive_distance = pairwise_distance(anchor, positive, p, eps)
    negative_distance = pairwise_distance(anchor, negative, p, eps)
    if swap:
        negative_distance = elementwise.minimum(negative_distance, pairwise_distance(positive, negative, p, eps))
    return _reduce((margin + positive_distance - negative_distance).clamp_min(0), reduction)


@autocast_mode.float32
def poisson_nll_loss(input, target, log_input=True, full=False, size_average=None, eps=1e-8, reduce=None,
                     reduction="mean"):
    """exp(input) - target input (log_input), or input - target log(input + eps);
    full adds Stirling's approximation of log(target!) where target > 1."""
    reduction = _reduction(reduction, size_average, reduce)
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * (input + eps).log()
    if full:
        stirling = target * target.log() - target + 0.5 * (2 * math.pi * target).log()
        loss = loss + stirling.masked_fill(target <= 1, 0)
    return _reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full=False, eps=1e-6, reduction="mean"):
    """0.5 (log var + (input - target)^2 / var) (+ 0.5 log 2 pi when full); var
    the shape of input, or one dim short of it, or of size 1 in one dim; var
    clamped to eps without changing its gradient (as torch's)."""
    if isinstance(var, float):
        if var < 0:
            raise ValueError("var has negative entry/entries")
        var = var * input.new_ones(input.shape)
    elif bool((var < 0).any()):
        raise ValueError("var has negative entry/entries")
    if tuple(var.shape) != tuple(input.shape):
        if tuple(input.shape[:-1]) == tuple(var.shape):
            var = var.unsqueeze(-1)
        elif input.ndim == var.ndim and sum(y for x, y in zip(input.shape, var.shape) if x != y) == 1:
            pass
        else:
            raise ValueError("var is of incorrect size")
    if reduction not in _REDUCTIONS:
        raise ValueError(reduction + " is not valid")
    var = var.clone()
    with no_grad():
        var.clamp_(min=eps)
    loss = 0.5 * (var.log() + (input - target) ** 2 / var)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)


_CTC_CHECK = " (while checking arguments for ctc_loss_allocate_outputs)"


def _ctc_lengths(lengths, name):
    """A lengths argument (an integer tensor, or a tuple or list of ints) as a host int64 array."""
    if isinstance(lengths, Tensor):
        if dtypes.category(lengths.dtype) != 1:
            raise RuntimeError(f"{name} must be integral")
        return backend.to_device(lengths.array, backend.as_device("cpu")).astype(numpy.int64).reshape(-1)
    if isinstance(lengths, (tuple, list)):
        for value in lengths:
            if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)):
                raise TypeError(f"ctc_loss(): argument '{name}' failed to unpack the object at pos 2 with error "
                                f"\"type must be tuple of ints,but got {type(value).__name__}\"")
        return numpy.asarray(lengths, dtype=numpy.int64).reshape(-1)
    raise TypeError(f"ctc_loss(): argument '{name}' must be a Tensor or a tuple of ints, not {type(lengths).__name__}")


def _ctc_check_lengths(lengths, name, limit=None):
    for value in lengths.tolist():
        if value < 0:
            raise RuntimeError(f"Expected {name} to have value at least 0, but got value {value}{_CTC_CHECK}")
        if limit is not None and value > limit:
            raise RuntimeError(f"Expected {name} to have value at most {limit}, but got value {value}{_CTC_CHECK}")


@autocast_mode.float32
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=False):
    """The connectionist temporal classification loss of log-probabilities
    (T, N, C) or (T, C) against targets padded (N, S) or concatenated
    (sum(target_lengths),), as torch's: 'mean' divides each loss by its target
    length (at least 1) and then averages; ``zero_infinity`` sets impossible
    alignments' losses and gradients to 0.  The gradient is torch's (that of
    log_softmax outputs)."""
    _check_tensor(log_probs, "ctc_loss", "log_probs")
    _check_tensor(targets, "ctc_loss", "targets")
    reduction = _reduction(reduction)
    blank = validation.int_argument(blank, "ctc_loss", "blank")
    input_lengths = _ctc_lengths(input_lengths, "input_lengths")
    target_lengths = _ctc_lengths(target_lengths, "target_lengths")
    batched = log_probs.ndim == 3
    lp = log_probs if batched else log_probs.unsqueeze(1)
    if lp.dtype not in (dtypes.float32, dtypes.float64):
        raise validation.not_implemented(f"ctc_loss_{lp.device.type}", lp.dtype)
    if lp.ndim != 3:
        raise RuntimeError(f"Expected 3-dimensional tensor, but got {lp.ndim}-dimensional tensor for argument #1 "
                           f"'log_probs'{_CTC_CHECK}")
    if lp.numel() == 0:
        raise RuntimeError("log_probs tensor must not be empty")
    steps, count, classes = lp.shape
    if not 0 <= blank < classes:
        raise RuntimeError("blank must be in label range")
    if input_lengths.size != count:
        raise RuntimeError("input_lengths must be of size batch_size")
    if target_lengths.size != count:
        raise RuntimeError("target_lengths must be of size batch_size")
    if not 1 <= targets.ndim <= 2:
        raise RuntimeError(f"Expected 1 to 2 dimensions, but got {targets.ndim}-dimensional tensor for argument #2 "
                           f"'targets'{_CTC_CHECK}")
    _ctc_check_lengths(target_lengths, "target_lengths")
    longest = int(target_lengths.max())
    expected = int(target_lengths.sum()) if targets.ndim == 1 else count
    if targets.shape[0] != expected:
        raise RuntimeError(f"Expected tensor to have size {expected} at dimension 0, but got size {targets.shape[0]} "
                           f"for argument #2 'targets'{_CTC_CHECK}")
    if targets.ndim == 2 and targets.shape[1] < longest:
        raise RuntimeError(f"Expected tensor to have size at least {longest} at dimension 1, but got size "
                           f"{targets.shape[1]} for argument #2 'targets'{_CTC_CHECK}")
    _ctc_check_lengths(input_lengths, "input_lengths", steps)
    labels = backend.to_device(targets.array, backend.as_device("cpu")).astype(numpy.int64)
    used = (labels if targets.ndim == 1 else
            labels[:, :longest][numpy.arange(longest)[None, :] < target_lengths[:, None]])
    if used.size and (used.min() < 0 or used.max() >= classes):
        bad = int(used.min()) if used.min() < 0 else int(used.max())
        raise RuntimeError(f"ctc_loss: target value {bad} is out of range for {classes} classes")
    loss = ctc.ctc_loss(lp, labels, input_lengths, target_lengths, blank, zero_infinity)
    if zero_infinity:
        loss = where(loss == math.inf, loss.new_zeros(()), loss)
    if reduction == "mean":
        divisor = Tensor._make(backend.to_device(numpy.maximum(target_lengths, 1).astype(loss.dtype), loss.device))
        return (loss / divisor).mean()
    if reduction == "sum":
        return loss.sum()
    return loss if batched else loss.squeeze(0)


def multilabel_soft_margin_loss(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """The mean over classes (the last dim) of the binary logistic losses of
    each label, -(y log sigmoid(x) + (1 - y) log sigmoid(-x)), optionally weighted."""
    if size_average is not None or reduce is not None:
        reduction = _reduction(reduction, size_average, reduce)
    loss = -(target * logsigmoid(input) + (1 - target) * logsigmoid(-input))
    if weight is not None:
        loss = loss * weight
    loss = loss.sum(dim=input.ndim - 1) / input.shape[input.ndim - 1]
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(reduction + " is not valid")


def _constant_operand(value, input, function, what):
    """A class or pos weight: no gradient flows to it (torch's error if one is asked for)."""
    if value is None:
        return None
    if value.requires_grad and is_grad_enabled():
        raise RuntimeError(f"The function '{function}' is not differentiable with respect to argument "
                           f"'{what}'. This input cannot have requires_grad True.")
    return value.detach().to(input.dtype)


@autocast_mode.float32
def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None, reduction="mean"):
    """Binary cross-entropy of probabilities ``input`` in [0, 1] (logs clamped
    at -100 as in torch, so a saturated sigmoid gives a finite gradient)."""
    reduction = _reduction(reduction, size_average, reduce)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({list(target.shape)}) that is different to the input size "
                         f"({list(input.shape)}) is deprecated. Please ensure they have the same size.")
    if input.numel() and (bool((input.array < 0).any()) or bool((input.array > 1).any())):
        raise RuntimeError("all elements of input should be between 0 and 1")
    target = target.to(input.dtype)
    if weight is not None:
        validation.expandable(weight.shape, input.shape)
    w = _constant_operand(weight, input, "binary_cross_entropy", "weight")
    return losses.BinaryCrossEntropy.apply(input, target, reduction, None if w is None else w.expand(input.shape))


@autocast_mode.float32
def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable expression (no overflow for
    large |logits|)."""
    reduction = _reduction(reduction, size_average, reduce)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({list(target.shape)}) must be the same as input size "
                         f"({list(input.shape)})")
    target = target.to(input.dtype)
    function = "binary_cross_entropy_with_logits"
    for value in (weight, pos_weight):
        if value is not None:
            validation.expandable(value.shape, input.shape)
    weight = _constant_operand(weight, input, function, "weight")
    pos_weight = _constant_operand(pos_weight, input, function, "pos_weight")
    return losses.BinaryCrossEntropyWithLogits.apply(input, target, reduction, weight, pos_weight)


# -- layers ---------------------------------------------------------------------------------

def dropout(input, p=0.5, training=True, inplace=False, *, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p)
    (training only).  ``generator=`` (a gpugrad extension) draws the mask
    from a generator of one's own."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    if p == 1.0:
        mask = Tensor._make(input.xp.zeros(input.shape, dtype=input.dtype))
    elif not inplace and layers.supports(input.array):      # CUDA: one kernel, the mask never stored
        seed, offset = random.generator_for(input.device, generator).philox(layers.philox_groups(input.numel()))
        scale = float(input.array.dtype.type(1 / (1 - p)))
        return elementwise.PhiloxDropout.apply(input, float(p), seed, offset, scale)
    else:
        keep = random.generator_for(input.device, generator).uniform(input.shape, 0.0, 1.0, dtypes.float32) >= p
        mask = Tensor._make((keep / (1 - p)).astype(input.dtype))
    return input.mul_(mask) if inplace else input * mask


@autocast_mode.float32
def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last len(normalized_shape) dims (biased variance), then scale and shift
    (normalized_shape a sequence, as torch's function takes it; nn.LayerNorm takes an int too)."""
    normalized_shape = sequence_arg(normalized_shape, "layer_norm", "normalized_shape", 2)
    if not normalized_shape:
        raise RuntimeError("Expected normalized_shape to be at least 1-dimensional, i.e., containing at least one "
                           "element, but got normalized_shape = []")
    if tuple(input.shape[input.ndim - len(normalized_shape):]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized_shape))}], but got input of size "
                           f"{list(input.shape)}")
    for value, name in ((weight, "weight"), (bias, "bias")):
        if value is not None and tuple(value.shape) != normalized_shape:
            raise RuntimeError(f"layer_norm: expected {name} of shape {list(normalized_shape)}, got "
                               f"{list(value.shape)}")
    dims = tuple(range(input.ndim - len(normalized_shape), input.ndim))
    return normalization.LayerNorm.apply(input, weight, bias, dims, float(eps))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise each channel (dim 1) over the batch and spatial dims: with the
    batch's statistics when training (and the running ones updated in place,
    unbiased variance, ``momentum=None``: a cumulative average handled by the
    module), with the running ones otherwise; then scale and shift."""
    if input.ndim < 2:
        raise ValueError(f"batch_norm: expected at least a 2-D input (N, C, ...), got {input.ndim}-D")
    channels = input.shape[1]
    count = math.prod(n for d, n in enumerate(input.shape) if d != 1)
    if training and count == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{list(input.shape)}")
    if not isinstance(momentum, (int, float)):
        raise TypeError(f"batch_norm(): argument 'momentum' (position 7) must be float, not "
                        f"{type(momentum).__name__}")
    if channels == 0 and (weight is not None or bias is not None):
        raise IndexError("select(): index 0 out of range for tensor of size [0] at dimension 0")
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, channels) + (1,) * (input.ndim - 2)
    if training:
        mean = input.mean(dims)
        centered = input - mean.reshape(shape)
        var = (centered * centered).mean(dims)
        if running_mean is not None:
            with no_grad():
                factor = momentum if momentum is not None else 1.0
                running_mean.mul_(1 - factor).add_(mean.detach() * factor)
                running_var.mul_(1 - factor).add_(var.detach() * (factor * count / (count - 1)))
        out = centered * (var.reshape(shape) + eps).rsqrt()
    else:
        if running_mean is None:
            raise RuntimeError("batch_norm in eval mode needs running statistics (track_running_stats=True)")
        out = (input - running_mean.reshape(shape)) * (running_var.reshape(shape) + eps).rsqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0, scale_grad_by_freq=False,
              sparse=False):
    """Rows of ``weight`` at the indices ``input`` (any shape); the row at
    padding_idx receives no gradient; with max_norm, the rows looked up whose
    norm_type-norm exceeds it are first rescaled to it, in place in weight.  An
    index outside [0, num_embeddings) raises IndexError (on the GPU at the next
    synchronising read)."""
    rows = weight.shape[0]
    if padding_idx is not None:       # torch's asserts
        if padding_idx > 0:
            assert padding_idx < rows, "Padding_idx must be within num_embeddings"
        elif padding_idx < 0:
            assert padding_idx >= -rows, "Padding_idx must be within num_embeddings"
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding: scale_grad_by_freq and sparse are not supported")
    if input.dtype.kind not in "iu":
        raise RuntimeError(f"Expected tensor for argument #1 'indices' to have one of the following scalar types: "
                           f"Long, Int; but got {dtypes.dtype_name(input.dtype)} instead")
    if weight.numel() == 0 and input.numel() and not input.is_cuda:     # torch's other kernel, other error
        low, high = int(input.array.min()), int(input.array.max())
        if low < 0 or high >= rows:
            raise RuntimeError(f"INDICES element is out of DATA bounds, id={high if high >= rows else low} "
                               f"axis_dim={rows}")
    check_indices(input.array, rows, device_errors.POSITION)
    if max_norm is not None:       # the rows looked up are renormalised in place first, as torch's
        embeddings.embedding_renorm_(weight, input, float(max_norm), float(norm_type))
    out = index_select_valid(weight, 0, input.reshape(-1)).reshape(tuple(input.shape) + tuple(weight.shape[1:]))
    if padding_idx is not None:
        padding_idx = padding_idx % rows
        mask = Tensor._make((input.array == padding_idx)[..., None])
        out = where(mask, out.detach(), out)
    return out


def embedding_bag(input, weight, offsets=None, max_norm=None, norm_type=2, scale_grad_by_freq=False, mode="mean",
                  sparse=False, per_sample_weights=None, include_last_offset=False, padding_idx=None):
    """Sums, means or maxima of bags of embedding rows: input (B, L) (one bag
    per row) or 1-D with ``offsets`` (each bag's start; include_last_offset:
    the last entry is the end); per_sample_weights scale the rows (mode 'sum');
    entries equal to padding_idx are left out; empty bags give zeros."""
    if mode not in ("sum", "mean", "max"):
        raise ValueError(f"mode has to be one of sum, mean or max, got {mode!r}")
    if scale_grad_by_freq or sparse:
        raise NotImplementedError("embedding_bag: scale_grad_by_freq and sparse are not supported")
    if input.dtype.kind not in "iu":
        raise RuntimeError("embedding_bag: expected input (indices) of an integer dtype, got "
                           f"{dtypes.dtype_name(input.dtype)}")
    if input.ndim == 2:
        if offsets is not None:
            raise ValueError("if input is 2D, then offsets has to be None, as input is treated is a mini-batch of "
                             "fixed length sequences. However, found offsets of type Tensor")
    elif input.ndim == 1:
        if offsets is None:
            raise ValueError("offsets has to be a 1D Tensor but got None")
        if offsets.ndim != 1:
            raise ValueError("offsets has to be a 1D Tensor")
    else:
        raise ValueError(f"input has to be 1D or 2D Tensor, but got Tensor of dimension {input.ndim}")
    if per_sample_weights is not None:
        if mode != "sum":
            raise NotImplementedError(f"embedding_bag: per_sample_weights was not None. per_sample_weights is only "
                                      f"supported for mode='sum' (got mode='{mode}'). Please open a feature request "
                                      "on GitHub.")
        if tuple(per_sample_weights.shape) != tuple(input.shape):
            raise ValueError(f"embedding_bag: If per_sample_weights ({list(per_sample_weights.shape)}) is not None, "
                             f"then it must have the same shape as the input ({list(input.shape)})")
    if padding_idx is not None:
        padding_idx = padding_idx % weight.shape[0]
    flat = input.reshape(-1)
    check_indices(flat.array, weight.shape[0], device_errors.POSITION)
    if max_norm is not None:
        embeddings.embedding_renorm_(weight, flat, float(max_norm), float(norm_type))
    rows = index_select_valid(weight, 0, flat)
    return embeddings.embedding_bag(input, weight, offsets, mode, per_sample_weights, include_last_offset,
                                    padding_idx, rows)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise (N, C, *) over each group of C / num_groups channels (and the
    spatial dims), then scale and shift per channel."""
    if input.ndim < 2:
        raise RuntimeError(f"Expected at least 2 dimensions for input tensor but received {input.ndim}")
    channels = input.shape[1]
    if num_groups > 0 and input.shape[0] * channels // num_groups * math.prod(input.shape[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "   # (torch's check)
                         f"{[input.shape[0] * channels // num_groups, num_groups] + list(input.shape[2:])}")
    if num_groups <= 0 or channels % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got input of "
                           f"shape {list(input.shape)} and num_groups={num_groups}")
    for value, name in ((weight, "weight"), (bias, "bias")):
        if value is not None and (value.ndim != 1 or value.shape[0] != channels):
            raise RuntimeError(f"Expected {name} to be a vector of size equal to the number of channels in input, "
                               f"but got {name} of shape {list(value.shape)} and input of shape {list(input.shape)}")
    return normalization.group_norm(input, num_groups, weight, bias, eps)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=True,
                  momentum=0.1, eps=1e-5):
    """Normalise each channel of each sample of (N, C, *) over its spatial
    dims (use_input_stats; the running statistics, when given, updated in
    place), or with the running statistics."""
    if input.ndim < 3:
        raise ValueError(f"instance_norm: expected an input of at least 3 dims (N, C, *), got {input.ndim}")
    if use_input_stats and math.prod(input.shape[2:]) <= 1:
        raise ValueError(f"Expected more than 1 spatial element when training, got input size {list(input.shape)}")
    if not use_input_stats and (running_mean is None or running_var is None):
        raise RuntimeError("Expected running_mean and running_var to be defined when use_input_stats is false")
    return normalization.instance_norm(input, running_mean, running_var, weight, bias, use_input_stats,
                                       0.0 if momentum is None else momentum, eps)


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """The deprecated name of interpolate (with torch's warning)."""
    warnings.warn("`nn.functional.upsample` is deprecated. Use `nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """interpolate(mode='nearest') under its deprecated name (with torch's warning)."""
    warnings.warn("`nn.functional.upsample_nearest` is deprecated. Use `nn.functional.interpolate` instead.",
                  stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """interpolate(mode='bilinear', align_corners=True) under its deprecated name."""
    warnings.warn("`nn.functional.upsample_bilinear` is deprecated. Use `nn.functional.interpolate` instead.",
                  stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def one_hot(tensor, num_classes=-1):
    """int64 one-hot encoding with a new last dim of num_classes (max + 1 by default)."""
    if tensor.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor.")
    xp = tensor.xp
    if num_classes < 0:
        if not tensor.numel():
            raise RuntimeError("Can not infer total number of classes from empty tensor.")
        num_classes = int(tensor.array.max()) + 1
    if tensor.numel() and int(tensor.array.min()) < 0:
        raise RuntimeError("Class values must be non-negative.")
    if tensor.numel() and int(tensor.array.max()) >= num_classes:
        raise RuntimeError("Class values must be smaller than num_classes.")
    return Tensor._make((tensor.array[..., None] == xp.arange(num_classes)).astype(dtypes.int64))


# -- activations ----------------------------------------------------------------------------

def _activate(function, input, inplace, *args):
    """``function(input, *args)``; with ``inplace`` written over ``input`` (its
    version bumped, its history the activation's).  Recording, the function
    runs on a clone, so no node of it saved the values being overwritten."""
    if not inplace:
        return function(input, *args)
    source = input.clone() if is_grad_enabled() and input.requires_grad else input
    return input.copy_(function(source, *args))


def relu(input, inplace=False):
    """max(input, 0); ``inplace=True`` overwrites the input."""
    return input.relu_() if inplace else elementwise.relu(input)


def relu_(input):
    """relu in place."""
    return input.relu_()


def _threshold(x, threshold, value):
    return where(x <= threshold, value, x)       # torch's: nan stays nan


def threshold(input, threshold, value, inplace=False):
    """input where input > threshold, else value."""
    return _activate(_threshold, input, inplace, threshold, value)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """x where x > 0, negative_slope * x elsewhere."""
    return _activate(elementwise.leaky_relu, input, inplace, negative_slope, inplace)


def prelu(input, weight):
    """x where x > 0, weight * x elsewhere; weight one value, or one per channel (dim 1)."""
    if weight.ndim > 1:
        raise RuntimeError(f"prelu: Expected `weight` to be a scalar or 1D tensor, but got: ndim = {weight.ndim}")
    count = weight.numel()
    if count == 1:
        weight = weight.reshape(())
    else:
        channels = input.shape[1] if input.ndim >= 2 else 1
        if count != channels:
            raise RuntimeError(f"Mismatch of parameter numbers and input channel size. Found parameter numbers = "
                               f"{count} and channel size = {channels}.")
        weight = weight.reshape((count,) + (1,) * (input.ndim - 2))
    return elementwise.prelu(input, weight)


def elu(input, alpha=1.0, inplace=False):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere."""
    return _activate(elementwise.elu, input, inplace, alpha)


def selu(input, inplace=False):
    """Scaled ELU with the self-normalising constants."""
    return _activate(elementwise.elu, input, inplace, 1.6732632423543772, 1.0507009873554805)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    """x clamped to [min_val, max_val]; the gradient is 1 strictly inside."""
    return _activate(elementwise.hardtanh, input, inplace, min_val, max_val)


def relu6(input, inplace=False):
    """min(max(x, 0), 6)."""
    return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):
    """relu6(x + 3) / 6."""
    return _activate(elementwise.hardsigmoid, input, inplace)


def hardswish(input, inplace=False):
    """x * relu6(x + 3) / 6."""
    return _activate(elementwise.hardswish, input, inplace)


def silu(input, inplace=False):
    """x * sigmoid(x)."""
    return _activate(elementwise.silu, input, inplace)


def mish(input, inplace=False):
    """x * tanh(softplus(x))."""
    return _activate(elementwise.mish, input, inplace)


def logsigmoid(input):
    """log(sigmoid(x)), computed stably."""
    return -softplus(-input)


def softsign(input):
    """x / (1 + |x|)."""
    return input / (1 + input.abs())


def tanhshrink(input):
    """x - tanh(x)."""
    return input - input.tanh()


def glu(input, dim=-1):
    """a * sigmoid(b) of the two halves of input along dim (of even size)."""
    if input.ndim == 0:
        raise RuntimeError("glu does not support scalars because halving size must be even")
    dim = wrap_dim(dim, input.ndim)
    if input.shape[dim] % 2:
        raise RuntimeError(f"Halving dimension must be even, but dimension {dim} is size {input.shape[dim]}")
    a, b = input.chunk(2, dim) if input.shape[dim] else (input, input)
    return a * b.sigmoid()


@autocast_mode.float32
def normalize(input, p=2.0, dim=1, eps=1e-12):
    """input / max(||input||_p over dim, eps)."""
    return input / input.norm(p, dim, keepdim=True).clamp(min=eps)


def bilinear(input1, input2, weight, bias=None):
    """y = x1^T A x2 + b: input1 (*, in1), input2 (*, in2), weight (out, in1, in2),
    bias (out) -> (*, out)."""
    if input1.ndim != input2.ndim:
        raise RuntimeError(f"bilinear(): input dimensions do not match: got {input1.ndim} and {input2.ndim}")
    for d in range(input1.ndim - 1):
        if input1.shape[d] != input2.shape[d]:
            raise RuntimeError(f"bilinear(): input batch dimensions do not match at dim {d}: got "
                               f"{input1.shape[d]} and {input2.shape[d]}")
    if input1.shape[-1] != weight.shape[1]:
        raise RuntimeError(f"bilinear(): input1 size does not match weight size: got {input1.shape[-1]} but "
                           f"expected {weight.shape[1]}")
    if input2.shape[-1] != weight.shape[2]:
        raise RuntimeError(f"bilinear(): input2 size does not match weight size: got {input2.shape[-1]} but "
                           f"expected {weight.shape[2]}")
    if bias is not None and bias.shape[0] != weight.shape[0]:
        raise RuntimeError(f"bilinear(): bias size does not match weight size: got {bias.shape[0]} but expected "
                           f"{weight.shape[0]}")
    # x1 A first, then the products with x2 summed: inf and nan as torch's (a three-operand
    # einsum would let NumPy's BLAS path reorder them)
    out = (einsum("...i,oij->...oj", input1, weight) * input2.unsqueeze(-2)).sum(-1)
    return out if bias is None else out + bias


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """The cosine of the angle between x1 and x2 along dim, as torch computes it:
    the operands broadcast first, each divided by its norm (held at least eps,
    its gradient the norm's), then the sum of products (|result| <= 1)."""
    dtype = dtypes.result_type(x1, x2)
    if not dtypes.is_floating_point(dtype):
        raise RuntimeError(f"expected common dtype to be floating point, yet common dtype is "
                           f"{dtypes.dtype_name(dtype)}")
    x1, x2 = broadcast_tensors(x1.to(dtype), x2.to(dtype))
    n1 = elementwise.clamp_min_value(x1.norm(2, dim, keepdim=True), eps)
    n2 = elementwise.clamp_min_value(x2.norm(2, dim, keepdim=True), eps)
    return ((x1 / n1) * (x2 / n2)).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    """The p-norm of x1 - x2 (+ eps) along the last dim."""
    return (x1 - x2 + eps).norm(p, -1, keepdim=keepdim)


@autocast_mode.float32
def softmin(input, dim=None, dtype=None):
    """softmax of -input along dim."""
    return softmax(-input, dim, dtype)


def gumbel_softmax(logits, tau=1.0, hard=False, eps=1e-10, dim=-1):
    """Samples from the Gumbel-softmax distribution (hard: one-hot with a straight-through gradient)."""
    u = random.rand_like(logits)
    gumbels = -(-(u + eps).log() + eps).log()
    y = softmax((logits + gumbels) / tau, dim)
    if not hard:
        return y
    index = y.argmax(dim, keepdim=True)
    hard_y = Tensor._make((y.xp.arange(y.shape[dim]).reshape(
        [-1 if d == dim % y.ndim else 1 for d in range(y.ndim)]) == index.array).astype(y.dtype))
    return hard_y - y.detach() + y


def _scaled_dot_product_attention_math(query, key, value, mask, dropout_p, is_causal, scale, enable_gqa):
    if is_causal and mask is not None:
        raise RuntimeError("scaled_dot_product_attention: explicit attn_mask should not be set when is_causal=True")
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    if enable_gqa and key.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, -3)
        value = value.repeat_interleave(repeat, -3)
    scores = query @ key.mT
    if mask is not None:
        validation.expandable(mask.shape, scores.shape)
    if mask is not None and mask.dtype != dtypes.bool_ and mask.requires_grad and is_grad_enabled():
        # a float mask that takes a gradient: the ops composed, as torch's math path (an additive mask)
        weights = safe_softmax(scores * scale + mask, -1)
        return (dropout(weights, dropout_p) if dropout_p > 0 else weights) @ value
    # scale, mask (bool: False closes, float: added, causal: top-left), softmax (rows every score closes
    # give 0, as torch's _safe_softmax) and, on CUDA, the dropout with F.dropout's Philox mask: one node,
    # one launch each way there (kernels/attention.cu)
    drop = None
    if 0 < dropout_p < 1 and layers.supports(scores.array):
        seed, offset = random.generator_for(scores.device, None).philox(layers.philox_groups(scores.numel()))
        drop = (float(dropout_p), seed, offset, float(scores.array.dtype.type(1 / (1 - dropout_p))))
    weights = attention_softmax(scores, mask, scale, is_causal, drop)
    if dropout_p > 0 and drop is None:
        weights = dropout(weights, dropout_p)
    return weights @ value


@autocast_mode.lower_precision
def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(q k^T * scale + mask) v over the last two dims (torch's
    signature): query (..., L, E), key (..., S, E), value (..., S, Ev).
    ``is_causal=True`` masks the upper triangle; a bool ``attn_mask`` says
    where to attend, a float one is added (both broadcast to (..., L, S)); a
    row the mask closes entirely gives zeros, as in torch.  On CUDA the scale,
    the mask, the softmax and the dropout are one kernel each way
    (ops/fused/attention.py)."""
    for t, name in ((query, "query"), (key, "key"), (value, "value")):
        _check_tensor(t, "scaled_dot_product_attention", name)
    if not query.dtype == key.dtype == value.dtype:
        raise RuntimeError("Expected query, key, and value to have the same dtype, but got query.dtype: "
                           f"{dtypes.dtype_name(query.dtype)} key.dtype: {dtypes.dtype_name(key.dtype)} and "
                           f"value.dtype: {dtypes.dtype_name(value.dtype)} instead.")
    if attn_mask is not None and attn_mask.dtype not in (dtypes.bool_, query.dtype):
        raise RuntimeError("Expected attn_mask dtype to be bool or float or to match query dtype, but got "
                           f"attn_mask.dtype: {dtypes.dtype_name(attn_mask.dtype)} and query.dtype: "
                           f"{dtypes.dtype_name(query.dtype)} instead.")
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise RuntimeError(f"scaled_dot_product_attention: shapes do not match: query {list(query.shape)}, "
                           f"key {list(key.shape)}, value {list(value.shape)}")
    return _scaled_dot_product_attention_math(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)


# -- multi-head attention --------------------------------------------------------------------------

def _canonical_mask(mask, mask_name, other_type, other_name, target_type, check_other=True):
    """A bool mask (True: masked out) as a float one of ``target_type`` (-inf where
    masked); a float mask as it is (torch's F._canonical_mask)."""
    if mask is None:
        return None
    is_float = dtypes.is_floating_point(mask.dtype)
    if mask.dtype != dtypes.bool_ and not is_float:
        raise AssertionError(f"only bool and floating types of {mask_name} are supported")
    if check_other and other_type is not None and mask.dtype != other_type:
        warnings.warn(f"Support for mismatched {mask_name} and {other_name} is deprecated. Use same type for both "
                      "instead.", UserWarning, stacklevel=3)
    if not is_float:
        mask = Tensor._make(mask.xp.zeros(mask.shape, dtype=target_type)).masked_fill(mask, -math.inf)
    return mask


def _none_or_dtype(input):
    return None if input is None else input.dtype


def _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads):
    """True for batched (3-D) inputs, False for unbatched (2-D); torch's assertions otherwise."""
    if query.ndim == 3:
        if key.ndim != 3 or value.ndim != 3:
            raise AssertionError("For batched (3-D) `query`, expected `key` and `value` to be 3-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 2:
            raise AssertionError("For batched (3-D) `query`, expected `key_padding_mask` to be `None` or 2-D but "
                                 f"found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None and attn_mask.ndim not in (2, 3):
            raise AssertionError("For batched (3-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D but "
                                 f"found {attn_mask.ndim}-D tensor instead")
        return True
    if query.ndim == 2:
        if key.ndim != 2 or value.ndim != 2:
            raise AssertionError("For unbatched (2-D) `query`, expected `key` and `value` to be 2-D but found "
                                 f"{key.ndim}-D and {value.ndim}-D tensors respectively")
        if key_padding_mask is not None and key_padding_mask.ndim != 1:
            raise AssertionError("For unbatched (2-D) `query`, expected `key_padding_mask` to be `None` or 1-D but "
                                 f"found {key_padding_mask.ndim}-D tensor instead")
        if attn_mask is not None:
            if attn_mask.ndim not in (2, 3):
                raise AssertionError("For unbatched (2-D) `query`, expected `attn_mask` to be `None`, 2-D or 3-D "
                                     f"but found {attn_mask.ndim}-D tensor instead")
            expected = (num_heads, query.shape[0], key.shape[0])
            if attn_mask.ndim == 3 and tuple(attn_mask.shape) != expected:
                raise AssertionError(f"Expected `attn_mask` shape to be {expected} but got {tuple(attn_mask.shape)}")
        return False
    raise AssertionError(f"query should be unbatched 2D or batched 3D tensor but received {query.ndim}-D query "
                         "tensor")


def _in_projection(query, key, value, weight, bias, embed_dim):
    """q, k, v = the packed projection (weight (3E, E)) of query, key, value: one product
    for self-attention, two when key is value."""
    sizes = [embed_dim] * 3
    if key is value and query is key:
        return split_with_sizes(linear(query, weight, bias), sizes, -1)
    if key is value:
        w_q, w_kv = split_with_sizes(weight, [embed_dim, 2 * embed_dim], 0)
        b_q, b_kv = (None, None) if bias is None else split_with_sizes(bias, [embed_dim, 2 * embed_dim], 0)
        k, v = split_with_sizes(linear(key, w_kv, b_kv), sizes[:2], -1)
        return linear(query, w_q, b_q), k, v
    w_q, w_k, w_v = split_with_sizes(weight, sizes, 0)
    b_q, b_k, b_v = (None, None, None) if bias is None else split_with_sizes(bias, sizes, 0)
    return linear(query, w_q, b_q), linear(key, w_k, b_k), linear(value, w_v, b_v)


def multi_head_attention_forward(query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias,
                                 bias_k, bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias,
                                 training=True, key_padding_mask=None, need_weights=True, attn_mask=None,
                                 use_separate_proj_weight=False, q_proj_weight=None, k_proj_weight=None,
                                 v_proj_weight=None, static_k=None, static_v=None, average_attn_weights=True,
                                 is_causal=False):
    """torch's F.multi_head_attention_forward: query (L, N, E), key (S, N, kdim), value
    (S, N, vdim) (or unbatched without N); masks as torch (bool True / -inf: masked out;
    attn_mask (L, S) or (N * num_heads, L, S), key_padding_mask (N, S)).  Returns
    (attn_output (L, N, E), weights): with ``need_weights`` the softmax is computed
    explicitly and its weights returned (averaged over heads with
    ``average_attn_weights``), else the product goes through scaled_dot_product_attention
    and the weights are None."""
    batched = _mha_shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not batched:
        query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
        if key_padding_mask is not None:
            key_padding_mask = key_padding_mask.unsqueeze(0)
    tgt_len, bsz, embed_dim = query.shape
    key_padding_mask = _canonical_mask(key_padding_mask, "key_padding_mask", _none_or_dtype(attn_mask), "attn_mask",
                                       query.dtype)
    if is_causal and attn_mask is None:
        raise RuntimeError("Need attn_mask if specifying the is_causal hint. You may use the Transformer module "
                           "method `generate_square_subsequent_mask` to create this mask.")
    if is_causal and key_padding_mask is None and not need_weights:
        attn_mask = None                 # the hint alone: scaled_dot_product_attention's causal mask
    else:
        attn_mask = _canonical_mask(attn_mask, "attn_mask", None, "", query.dtype, check_other=False)
        if key_padding_mask is not None:
            is_causal = False
    if embed_dim != embed_dim_to_check:
        raise AssertionError(f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}")
    head_dim = embed_dim // num_heads
    if head_dim * num_heads != embed_dim:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(f"key's sequence and batch dims {tuple(key.shape[:2])} do not match value's "
                                 f"{tuple(value.shape[:2])}")
        b_q, b_k, b_v = (None,) * 3 if in_proj_bias is None else split_with_sizes(in_proj_bias, [embed_dim] * 3, 0)
        q, k, v = linear(query, q_proj_weight, b_q), linear(key, k_proj_weight, b_k), linear(value, v_proj_weight, b_v)
    else:
        if tuple(key.shape) != tuple(value.shape):
            raise AssertionError(f"key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}")
        q, k, v = _in_projection(query, key, value, in_proj_weight, in_proj_bias, embed_dim)
    if attn_mask is not None:
        if attn_mask.ndim == 2:
            if tuple(attn_mask.shape) != (tgt_len, key.shape[0]):
                raise RuntimeError(f"The shape of the 2D attn_mask is {tuple(attn_mask.shape)}, but should be "
                                   f"{(tgt_len, key.shape[0])}.")
            attn_mask = attn_mask.unsqueeze(0)
        elif attn_mask.ndim == 3:
            if tuple(attn_mask.shape) != (bsz * num_heads, tgt_len, key.shape[0]):
                raise RuntimeError(f"The shape of the 3D attn_mask is {tuple(attn_mask.shape)}, but should be "
                                   f"{(bsz * num_heads, tgt_len, key.shape[0])}.")
        else:
            raise RuntimeError(f"attn_mask's dimension {attn_mask.ndim} is not supported")
    if bias_k is not None and bias_v is not None:
        if static_k is not None or static_v is not None:
            raise AssertionError(f"bias cannot be added to static {'key' if static_k is not None else 'value'}.")
        k = cat([k, bias_k.repeat(1, bsz, 1)])
        v = cat([v, bias_v.repeat(1, bsz, 1)])
        attn_mask = None if attn_mask is None else pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else pad(key_padding_mask, (0, 1))
    elif bias_k is not None or bias_v is not None:
        raise AssertionError("bias_k is set but bias_v is None" if bias_k is not None
                             else "bias_v is set but bias_k is None")
    q = q.reshape(tgt_len, bsz * num_heads, head_dim).transpose(0, 1)
    k = k.reshape(k.shape[0], bsz * num_heads, head_dim).transpose(0, 1) if static_k is None else static_k
    v = v.reshape(v.shape[0], bsz * num_heads, head_dim).transpose(0, 1) if static_v is None else static_v
    for static, name in ((static_k, "static_k"), (static_v, "static_v")):
        if static is not None and (static.shape[0] != bsz * num_heads or static.shape[2] != head_dim):
            raise AssertionError(f"expecting {name}.size(0) of {bsz * num_heads} and {name}.size(2) of {head_dim}, "
                                 f"but got {tuple(static.shape)}")
    if add_zero_attn:
        zeros = Tensor._make(k.xp.zeros((bsz * num_heads, 1, head_dim), dtype=k.dtype))
        k, v = cat([k, zeros], 1), cat([v, zeros.to(v.dtype)], 1)
        attn_mask = None if attn_mask is None else pad(attn_mask, (0, 1))
        key_padding_mask = None if key_padding_mask is None else pad(key_padding_mask, (0, 1))
    src_len = k.shape[1]
    if key_padding_mask is not None:
        if key_padding_mask.shape[0] != bsz:
            raise AssertionError(f"Expected key_padded_mask.shape[0] to be {bsz}, but got {key_padding_mask.shape[0]}")
        if key_padding_mask.shape[1] != src_len:
            raise AssertionError(f"Expected key_padded_mask.shape[1] to be {src_len}, but got "
                                 f"{key_padding_mask.shape[1]}")
        key_padding_mask = key_padding_mask.reshape(bsz, 1, 1, src_len).expand(-1, num_heads, -1, -1).reshape(
            bsz * num_heads, 1, src_len)
        attn_mask = key_padding_mask if attn_mask is None else attn_mask + key_padding_mask
    if not training:
        dropout_p = 0.0
    if need_weights:
        scores = (q * math.sqrt(1.0 / float(head_dim))) @ k.transpose(-2, -1)
        weights = softmax(scores if attn_mask is None else attn_mask + scores, dim=-1)
        if dropout_p > 0.0:
            weights = dropout(weights, p=dropout_p)
        output = (weights @ v).transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
        output = linear(output, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
        weights = weights.reshape(bsz, num_heads, tgt_len, src_len)
        if average_attn_weights:
            weights = weights.mean(dim=1)
        if not batched:
            output, weights = output.squeeze(1), weights.squeeze(0)
        return output, weights
    if attn_mask is not None:
        attn_mask = attn_mask.unsqueeze(0) if attn_mask.shape[0] == 1 else \
            attn_mask.reshape(bsz, num_heads, -1, src_len)
    q = q.reshape(bsz, num_heads, tgt_len, head_dim)
    k = k.reshape(bsz, num_heads, src_len, head_dim)
    v = v.reshape(bsz, num_heads, src_len, head_dim)
    output = scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal)
    output = output.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
    output = linear(output, out_proj_weight, out_proj_bias).reshape(tgt_len, bsz, -1)
    return (output if batched else output.squeeze(1)), None

