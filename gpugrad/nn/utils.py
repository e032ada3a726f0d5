"""nn.utils: clearing and clipping gradients."""

import math

from gpugrad.autograd.grad_mode import no_grad


def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    """Scale gradients in place so their joint norm is at most max_norm; returns the norm before."""
    from gpugrad.ops.shape import stack
    params = [p for p in ([parameters] if hasattr(parameters, "grad") else parameters) if p.grad is not None]
    if not params:
        from gpugrad.creation import tensor
        return tensor(0.0)
    with no_grad():
        norms = stack([p.grad.norm(norm_type) for p in params])
        total = norms.amax() if norm_type == math.inf else norms.norm(norm_type)
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(scale.to(p.grad.dtype))
    return total


def zero_grad_(parameters, set_to_none=True):
    """Drop each parameter's gradient (set_to_none) or fill it with zeros in place."""
    for p in parameters:
        if p._grad is None:
            continue
        if set_to_none:
            p._grad = None
        else:
            p._grad = p._grad.detach()
            p._grad.data[...] = 0
            p._grad._version_counter[0] += 1
