"""The losses' autograd Functions and their row operations (validated by
``nn.functional``): nll_loss as a gather of the target's log-probability."""

from gpugrad import dtypes
from gpugrad.cuda import errors
from gpugrad.ops.fused.indices import check_indices
from gpugrad.ops.shape import gather
from gpugrad.tensor import Tensor


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
    picked = gather(log_probs, 1, Tensor._make(xp.expand_dims(safe, 1).astype(dtypes.int64))).squeeze(1)
    loss = -picked * Tensor._make(w_t.astype(log_probs.dtype))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / Tensor._make(w_t.sum().astype(log_probs.dtype))
