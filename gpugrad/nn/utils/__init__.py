"""nn.utils: clearing and clipping gradients, parameters as one vector; ``rnn``: packed
and padded sequences for the recurrent layers."""

import math

from gpugrad.autograd.grad_mode import no_grad
from gpugrad.creation import tensor
from gpugrad.nn.utils import rnn
from gpugrad.ops.shape import (
    cat,
    stack,
)
from gpugrad.tensor import Tensor


def _with_grads(parameters):
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    return [p for p in params if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale gradients in place so their joint norm is at most max_norm;
    returns the norm before (a tensor; no host sync)."""
    params = _with_grads(parameters)
    if not params:
        return tensor(0.0)
    norm_type = float(norm_type)
    with no_grad():
        norms = stack([p.grad.norm(norm_type).to(params[0].grad.dtype) for p in params])
        total = norms.amax() if norm_type == math.inf else norms.norm(norm_type)
        if error_if_nonfinite and not bool(total.isfinite().item()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is "
                               "non-finite, so it cannot be clipped. To disable this error and scale the gradients "
                               "by the non-finite norm anyway, set `error_if_nonfinite=False`")
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(scale.to(p.grad.dtype))
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient into [-clip_value, clip_value] in place."""
    with no_grad():
        for p in _with_grads(parameters):
            p.grad.clamp_(-clip_value, clip_value)


def zero_grad_(parameters, set_to_none=True):
    """Drop each parameter's gradient (set_to_none) or fill it with zeros in place."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            if p.grad.grad_fn is not None:
                p.grad.detach_()
            else:
                p.grad.requires_grad_(False)
            p.grad.zero_()


def parameters_to_vector(parameters):
    """The parameters flattened and concatenated into one 1-D tensor."""
    return cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of ``vec`` into the parameters (in place)."""
    start = 0
    with no_grad():
        for p in parameters:
            n = p.numel()
            p.copy_(vec[start:start + n].reshape(p.shape))
            start += n
