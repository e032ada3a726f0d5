"""nn.utils: clearing and clipping gradients, parameters as one vector; ``rnn``: packed
and padded sequences for the recurrent layers.

On the GPU the clipping functions run over all the gradients at once
(gpugrad/cuda/multi_tensor.py, torch's foreach path): clip_grad_norm_ is a
launch for the partial norms and one that combines them and scales, without
a host sync; its ``error_if_nonfinite`` is checked on the device and raised at
the next synchronising call (``item()``, ``cpu()``, ``cuda.synchronize()``, the
end of the next ``backward()``), as the fused losses report bad targets.
"""

import math
import types
import warnings

from gpugrad import backend, dtypes
from gpugrad.autograd.grad_mode import no_grad
from gpugrad.creation import tensor
from gpugrad.cuda import errors, multi_tensor
from gpugrad.nn.utils import rnn
from gpugrad.ops.shape import (
    cat,
    stack,
)
from gpugrad.tensor import Tensor


def _tensor_list(tensors):
    return [tensors] if isinstance(tensors, Tensor) else list(tensors)


def _batched(arrays, foreach):
    """Whether ``arrays`` take the multi-tensor path: all on one CUDA device,
    contiguous, floating point, unless foreach=False (foreach=True on the CPU is
    the loop, as torch's slow foreach path there)."""
    if foreach is False or not arrays or not backend.is_cupy_array(arrays[0]):
        return False
    device = backend.device_key(arrays[0])
    return all(backend.is_cupy_array(a) and backend.device_key(a) == device and a.flags.c_contiguous
               and dtypes.is_floating_point(a.dtype) for a in arrays)


def get_total_norm(tensors, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """The ``norm_type`` norm of the norms of ``tensors`` (the norm of all their
    elements together; a 0-d tensor in the first one's dtype; no host sync)."""
    tensors = _tensor_list(tensors)
    norm_type = float(norm_type)
    if not tensors:
        return tensor(0.0)
    arrays = [t.array for t in tensors]
    if _batched(arrays, foreach) and multi_tensor.norm_kind(norm_type) is not None:
        return Tensor._make(multi_tensor.total_norm(arrays, norm_type, error_if_nonfinite=error_if_nonfinite))
    with no_grad():
        norms = stack([t.detach().norm(norm_type).to(tensors[0].dtype) for t in tensors])
        total = norms.amax() if norm_type == math.inf else norms.norm(norm_type)
        if error_if_nonfinite and not bool(total.isfinite().item()):
            raise RuntimeError(errors.NONFINITE_NORM_MESSAGE.format(norm_type))
    return total


def clip_grads_with_norm_(parameters, max_norm, total_norm, foreach=None):
    """Scale the gradients of ``parameters`` in place by
    min(max_norm / (total_norm + 1e-6), 1), ``total_norm`` a tensor (from
    get_total_norm); no host sync."""
    grads = [p.grad for p in _tensor_list(parameters) if p.grad is not None]
    if not grads:
        return
    arrays = [g.array for g in grads]
    with no_grad():
        if _batched(arrays, foreach):
            total = total_norm.array if isinstance(total_norm, Tensor) else total_norm
            total = backend.to_device(backend.keep_array(total), backend.device_of(arrays[0]))
            multi_tensor.scale_by_norm(arrays, float(max_norm), total.astype("float64"))
            for g in grads:
                g.increment_version()
        else:
            scale = (max_norm / (total_norm + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(scale.to(g.dtype))


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scale gradients in place so their joint norm is at most max_norm;
    returns the norm before (a tensor; no host sync)."""
    generator = isinstance(parameters, types.GeneratorType)
    params = _tensor_list(parameters)
    if generator and not params:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return tensor(0.0)
    norm_type = float(norm_type)
    arrays = [g.array for g in grads]
    if _batched(arrays, foreach) and multi_tensor.norm_kind(norm_type) is not None:
        total = multi_tensor.total_norm(arrays, norm_type, max_norm=float(max_norm),
                                        error_if_nonfinite=error_if_nonfinite)
        for g in grads:
            g.increment_version()
        return Tensor._make(total)
    total = get_total_norm(grads, norm_type, error_if_nonfinite, foreach)
    clip_grads_with_norm_(params, max_norm, total, foreach)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient into [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    grads = [p.grad for p in _tensor_list(parameters) if p.grad is not None]
    arrays = [g.array for g in grads]
    if _batched(arrays, foreach):
        multi_tensor.clamp(arrays, -clip_value, clip_value)
        for g in grads:
            g.increment_version()
        return
    with no_grad():
        for g in grads:
            g.clamp_(-clip_value, clip_value)


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
