"""Reverse-mode automatic differentiation: backward, grad, Function, grad modes,
functional transforms and gradcheck."""

from gpugrad.autograd.function import Function
from gpugrad.autograd.grad_mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from gpugrad.autograd import engine


def _as_tuple(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the graph's
    leaves (or only of ``inputs``, where given)."""
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors) or (None,) * len(tensors)
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(f"got {len(grad_tensors)} gradients for {len(tensors)} tensors")
    if inputs is None:
        engine.run_backward(tensors, grad_tensors, retain_graph, create_graph)
        return
    inputs = _as_tuple(inputs)
    grads = engine.run_backward(tensors, grad_tensors, retain_graph, create_graph,
                                inputs=inputs, allow_unused=True)
    for t, g in zip(inputs, grads):
        if g is not None:
            g = g if create_graph else g.detach()
            t._grad = g.clone() if t._grad is None and not create_graph else (
                g if t._grad is None else t._grad + g)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False, materialize_grads=False):
    """The gradients of ``outputs`` w.r.t. ``inputs``, returned as a tuple;
    no ``.grad`` is touched.  ``create_graph=True`` makes them differentiable."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    grad_outputs = _as_tuple(grad_outputs) or (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad_outputs has {len(grad_outputs)} entries for {len(outputs)} outputs")
    grads = engine.run_backward(outputs, grad_outputs, retain_graph, create_graph,
                                inputs=inputs, allow_unused=allow_unused or materialize_grads)
    if materialize_grads:
        from gpugrad.creation import zeros_like
        grads = [zeros_like(i) if g is None else g for i, g in zip(inputs, grads)]
    return tuple(grads)


from gpugrad.autograd import functional  # noqa: E402
from gpugrad.autograd.gradcheck import gradcheck, gradgradcheck  # noqa: E402

__all__ = ["Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled",
           "is_grad_enabled", "functional", "gradcheck", "gradgradcheck"]
