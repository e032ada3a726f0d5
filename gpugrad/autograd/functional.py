"""Higher-level autograd transforms with torch.autograd.functional's
signatures: jacobian, hessian, vjp, jvp, hvp, vhp.

``func`` takes tensors and returns a tensor or a tuple of tensors; ``inputs``
is a tensor or a tuple of tensors.  Results mirror that nesting.
"""

from gpugrad.autograd import grad as _grad
from gpugrad.autograd.grad_mode import enable_grad


def _as_tuple(value, name):
    from gpugrad.tensor import Tensor
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


def _zeros_if_none(grads, like):
    from gpugrad.creation import zeros_like
    return tuple(zeros_like(t) if g is None else g for g, t in zip(grads, like))


def _finish(values, create_graph):
    return tuple(v if create_graph else v.detach() for v in values)


def _call(func, inputs, strict_name="outputs"):
    outputs = func(*inputs)
    return _as_tuple(outputs, strict_name)


def vjp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T J): the vector-Jacobian product."""
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _call(func, inputs)
        if v is None:
            if len(outputs) != 1 or outputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the user-provided function "
                                   "returns a single Tensor with a single element.")
            vs = (None,)
        else:
            _, vs = _as_tuple(v, "v")
        grads = _grad(outputs, inputs, vs, create_graph=create_graph, allow_unused=True,
                      retain_graph=True)
        grads = _zeros_if_none(grads, inputs)
    outputs = _finish(outputs, create_graph)
    grads = _finish(grads, create_graph)
    return (outputs if out_tuple else outputs[0]), (grads if in_tuple else grads[0])


def jvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), J v): the Jacobian-vector product, by the double-vjp trick."""
    from gpugrad.creation import zeros_like
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _call(func, inputs)
        if v is None:
            if len(inputs) != 1 or inputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the input to the user-provided "
                                   "function is a single Tensor with a single element.")
            from gpugrad.creation import ones_like
            vs = (ones_like(inputs[0]),)
        else:
            _, vs = _as_tuple(v, "v")
        dummies = tuple(zeros_like(o).requires_grad_(True) for o in outputs)
        grads = _grad(outputs, inputs, dummies, create_graph=True, allow_unused=True)
        used = [(g, v_) for g, v_ in zip(grads, vs) if g is not None]
        if used:
            result = _grad([g for g, _ in used], dummies, [v_ for _, v_ in used],
                           create_graph=create_graph, allow_unused=True)
            result = _zeros_if_none(result, outputs)
        else:
            result = tuple(zeros_like(o) for o in outputs)
    outputs = _finish(outputs, create_graph)
    result = _finish(result, create_graph)
    return (outputs if out_tuple else outputs[0]), (result if out_tuple else result[0])


def jacobian(func, inputs, create_graph=False, strict=False, vectorize=False, strategy="reverse-mode"):
    """The Jacobian of func at inputs: for one input and one output a tensor of
    shape output.shape + input.shape; tuples of tuples otherwise."""
    from gpugrad.ops.shape import stack
    from gpugrad.creation import zeros
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        out_tuple, outputs = _call(func, inputs)
        jac = []
        for out in outputs:
            flat = out.reshape(-1)
            rows = [[] for _ in inputs]
            for j in range(flat.numel()):
                grads = _grad(flat[j], inputs, retain_graph=True, create_graph=create_graph,
                              allow_unused=True)
                for k, (g, inp) in enumerate(zip(grads, inputs)):
                    rows[k].append(zeros(inp.shape, dtype=inp.dtype, device=inp.device)
                                   if g is None else g)
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
    in_tuple, inputs = _as_tuple(inputs, "inputs")

    def gradient(*args):
        out = func(*args)
        if isinstance(out, (tuple, list)) or out.numel() != 1:
            raise RuntimeError("The function given to hessian should return a single Tensor "
                               "containing a single element")
        return jacobian(func, args, create_graph=True)

    result = jacobian(gradient, inputs, create_graph=create_graph)
    return result if in_tuple else result[0][0]


def vhp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), v^T H) for a scalar function."""
    from gpugrad.ops.reduction import sum as _sum
    with enable_grad():
        in_tuple, inputs = _prepare_inputs(inputs, create_graph)
        _, outputs = _call(func, inputs)
        if len(outputs) != 1 or outputs[0].numel() != 1:
            raise RuntimeError("The function given to hvp/vhp should return a single Tensor "
                               "containing a single element")
        _, vs = _as_tuple(v, "v") if v is not None else (False, None)
        if vs is None:
            if len(inputs) != 1 or inputs[0].numel() != 1:
                raise RuntimeError("The vector v can only be None if the input is a single element")
            from gpugrad.creation import ones_like
            vs = (ones_like(inputs[0]),)
        grads = _grad(outputs, inputs, create_graph=True, allow_unused=True)
        grads = _zeros_if_none(grads, inputs)
        dot = None
        for g, v_ in zip(grads, vs):
            term = _sum(g * v_)
            dot = term if dot is None else dot + term
        if dot.requires_grad:
            result = _zeros_if_none(_grad(dot, inputs, create_graph=create_graph, allow_unused=True),
                                    inputs)
        else:
            from gpugrad.creation import zeros_like
            result = tuple(zeros_like(i) for i in inputs)
    outputs = _finish(outputs, create_graph)
    result = _finish(result, create_graph)
    return outputs[0], (result if in_tuple else result[0])


def hvp(func, inputs, v=None, create_graph=False, strict=False):
    """(func(inputs), H v) for a scalar function (H is symmetric, so H v = v^T H)."""
    return vhp(func, inputs, v, create_graph, strict)
