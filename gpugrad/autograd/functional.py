"""Higher-level autograd transforms with torch.autograd.functional's
signatures: jacobian, hessian, vjp, jvp, hvp, vhp.

``func`` takes tensors and returns a tensor or a tuple of tensors; ``inputs``
is a tensor or a tuple of tensors.  Results mirror that nesting.  With
``strict=True`` an output independent of an input raises (torch's rule);
otherwise its part of the result is zeros.  Jacobians are computed row by row
(reverse mode): ``vectorize=True`` and forward-mode strategies raise.
"""

from gpugrad.autograd.engine import grad as _grad
from gpugrad.autograd.grad_mode import enable_grad
from gpugrad.creation import ones_like, zeros, zeros_like
from gpugrad.ops.reduction import sum as _sum
from gpugrad.ops.shape import stack
from gpugrad.tensor import Tensor


def _as_tuple(value, name):
    is_tuple = isinstance(value, (tuple, list))
    values = tuple(value) if is_tuple else (value,)
    for i, v in enumerate(values):
        if not isinstance(v, Tensor):
            raise TypeError(f"The {name} given to the function must be either a Tensor or a tuple "
                            f"of Tensors but the element {i} has type {type(v).__name__}")
    return is_tuple, values


def _prepare_inputs(inputs, create_graph):
    is_tuple, inputs = _as_tuple(inputs, "inputs")
    prepared = tuple(i.view_as(i) if create_graph and i.requires_grad else i.detach().requires_grad_(True)
                     for i in inputs)
    return is_tuple, prepared


def _fill_unused(grads, like, strict, what):
    """Zeros for inputs the outputs do not depend on; RuntimeError under strict."""
    out = []
    for i, (g, t) in enumerate(zip(grads, like)):
        if g is None:
            if strict:
                raise RuntimeError(f"The {what} of the user-provided function is independent of input {i}. "
                                   "This is not allowed in strict mode.")
            g = zeros_like(t)
        out.append(g)
    return tuple(out)


def _finish(values, create_graph):
    return tuple(v if create_graph else v.detach() for v in values)


def _check_strategy(vectorize, strategy):
    if vectorize:
        raise NotImplementedError("vectorize=True is not supported: gpugrad computes the Jacobian row by row "
                                  "(the result is the same; leave vectorize=False)")
    if strategy != "reverse-mode":
        raise NotImplementedError(f"strategy={strategy!r}: gpugrad has reverse mode only")


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product."""
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _as_tuple(func(*inputs), "outputs")
        if v is None:
            if len(outputs) != 1 or outputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function "
                                   "returns a single Tensor with a single element.")
            vs = (None,)
        else:
            _, vs = _as_tuple(v, "v")
        grads = _grad(outputs, inputs, vs, create_graph=create_graph, allow_unused=True, retain_graph=True)
        grads = _fill_unused(grads, inputs, strict, "output")
    outputs = _finish(outputs, create_graph)
    grads = _finish(grads, create_graph)
    return (outputs if out_tuple else outputs[0]), (grads if in_tuple else grads[0])


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-vjp trick."""
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _as_tuple(func(*inputs), "outputs")
        if v is None:
            if len(inputs) != 1 or inputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the input to the user-provided "
                                   "function is a single Tensor with a single element.")
            vs = (ones_like(inputs[0]),)
        else:
            _, vs = _as_tuple(v, "v")
        dummies = tuple(zeros_like(o).requires_grad_(True) for o in outputs)
        grads = _grad(outputs, inputs, dummies, create_graph=True, allow_unused=True)
        if strict:
            _fill_unused(grads, inputs, strict, "output")
        used = [(g, v_) for g, v_ in zip(grads, vs) if g is not None]
        if used:
            result = _grad([g for g, _ in used], dummies, [v_ for _, v_ in used],
                           create_graph=create_graph, allow_unused=True)
            result = _fill_unused(result, outputs, False, "output")
        else:
            result = tuple(zeros_like(o) for o in outputs)
    outputs = _finish(outputs, create_graph)
    result = _finish(result, create_graph)
    return (outputs if out_tuple else outputs[0]), (result if out_tuple else result[0])


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """The Jacobian of func at inputs: for one input and one output a tensor of
    shape output.shape + input.shape; tuples of tuples otherwise."""
    _check_strategy(vectorize, strategy)
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _as_tuple(func(*inputs), "outputs")
        jac = []
        for o, out in enumerate(outputs):
            flat = out.reshape(-1)
            rows = [[] for _ in inputs]
            for j in range(flat.numel()):
                if flat.requires_grad:
                    grads = _grad(flat[j], inputs, retain_graph=True, create_graph=create_graph,
                                  allow_unused=True)
                else:
                    grads = (None,) * len(inputs)
                for k, (g, inp) in enumerate(zip(grads, inputs)):
                    if g is None and strict:
                        raise RuntimeError(f"Output {o} of the user-provided function is independent of "
                                           f"input {k}. This is not allowed in strict mode.")
                    rows[k].append(zeros(inp.shape, dtype=inp.dtype, device=inp.device) if g is None else g)
            per_input = []
            for k, inp in enumerate(inputs):
                block = stack(rows[k]) if rows[k] else zeros((0,) + inp.shape, dtype=inp.dtype,
                                                            device=inp.device)
                block = block.reshape(out.shape + inp.shape)
                per_input.append(block if create_graph else block.detach())
            jac.append(tuple(per_input) if in_tuple else per_input[0])
    return tuple(jac) if out_tuple else jac[0]


def hessian(func, inputs, create_graph=False, strict=False, vectorize=False, outer_jacobian_strategy="reverse-mode"):
    """The Hessian of a scalar function: input.shape + input.shape for one input."""
    _check_strategy(vectorize, outer_jacobian_strategy)
    in_tuple, inputs = _as_tuple(inputs, "inputs")

    def gradient(*args):
        out = func(*args)
        if isinstance(out, (tuple, list)) or out.numel() != 1:
            raise RuntimeError("The function given to hessian should return a single Tensor "
                               "containing a single element")
        return jacobian(func, args, create_graph=True, strict=strict)

    result = jacobian(gradient, inputs, create_graph=create_graph, strict=strict)
    return result if in_tuple else result[0][0]


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar function."""
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        _, outputs = _as_tuple(func(*inputs), "outputs")
        if len(outputs) != 1 or outputs[0].numel() != 1:
            raise RuntimeError("The function given to hvp/vhp should return a single Tensor "
                               "containing a single element")
        if v is None:
            if len(inputs) != 1 or inputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the input is a single element")
            vs = (ones_like(inputs[0]),)
        else:
            _, vs = _as_tuple(v, "v")
        grads = _grad(outputs, inputs, create_graph=True, allow_unused=True)
        grads = _fill_unused(grads, inputs, strict, "output")
        dot = None
        for g, v_ in zip(grads, vs):
            term = _sum(g * v_)
            dot = term if dot is None else dot + term
        if dot.requires_grad:
            result = _grad(dot, inputs, create_graph=create_graph, allow_unused=True)
            result = _fill_unused(result, inputs, strict, "jacobian")
        else:
            result = tuple(zeros_like(i) for i in inputs)
    outputs = _finish(outputs, create_graph)
    result = _finish(result, create_graph)
    return outputs[0], (result if in_tuple else result[0])


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar function (H is symmetric, so H v = v^T H)."""
    return vhp(func, inputs, v, create_graph, strict)
