"""gradcheck / gradgradcheck: analytical gradients against central differences.

Use them on your own Functions::

    x = gpugrad.randn(3, 4, dtype=gpugrad.float64, requires_grad=True)
    assert gpugrad.autograd.gradcheck(MyFunction.apply, (x,))

Inputs that require grad should be float64: central differences in float32
are too coarse for the default tolerances.
"""

import warnings

import numpy


class GradcheckError(RuntimeError):
    """Raised by gradcheck when analytical and numerical Jacobians differ."""


def _tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _differentiable_outputs(outputs):
    return [o for o in outputs if o.dtype.kind == "f"]


def _numerical_jacobian(func, inputs, wrt, outputs, eps):
    """J[o][i] of shape (outputs[o].numel(), inputs[i].numel()) by central differences."""
    jac = [[numpy.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outputs]
    for col, i in enumerate(wrt):
        data = inputs[i].data
        for k in range(inputs[i].numel()):
            index = numpy.unravel_index(k, data.shape)
            original = data[index].item()
            data[index] = original + eps
            plus = _evaluate(func, inputs)
            data[index] = original - eps
            minus = _evaluate(func, inputs)
            data[index] = original
            for o, (p, m) in enumerate(zip(plus, minus)):
                jac[o][col][:, k] = (p - m).reshape(-1) / (2 * eps)
    return jac


def _evaluate(func, inputs):
    """func's differentiable outputs as float64 NumPy copies (an output may alias an input)."""
    return [numpy.array(o.detach().to("cpu").data, dtype=numpy.float64, copy=True)
            for o in _differentiable_outputs(_tuple(func(*inputs)))]


def _analytical_jacobian(inputs, wrt, outputs):
    from gpugrad.autograd import grad
    from gpugrad.creation import zeros_like
    jac = [[numpy.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outputs]
    targets = [inputs[i] for i in wrt]
    for o, out in enumerate(outputs):
        for row in range(out.numel()):
            seed = zeros_like(out)
            seed.data.reshape(-1)[row] = 1
            if not out.requires_grad:
                continue
            grads = grad(out, targets, seed, retain_graph=True, allow_unused=True)
            for col, g in enumerate(grads):
                if g is not None:
                    jac[o][col][row, :] = g.to("cpu").data.astype(numpy.float64).reshape(-1)
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, **unused):
    """True when the gradients of ``func`` at ``inputs`` match central
    differences; otherwise raise GradcheckError (or return False)."""
    from gpugrad.tensor import Tensor
    inputs = _tuple(inputs)
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    for i in wrt:
        if inputs[i].dtype != numpy.float64:
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating "
                          "point. This check will likely fail.", UserWarning, stacklevel=2)
    outputs = _differentiable_outputs(_tuple(func(*inputs)))
    analytical = _analytical_jacobian(inputs, wrt, outputs)
    numerical = _numerical_jacobian(func, inputs, wrt, outputs, eps)
    for o in range(len(outputs)):
        for col, i in enumerate(wrt):
            a, n = analytical[o][col], numerical[o][col]
            if not numpy.allclose(a, n, rtol=rtol, atol=atol, equal_nan=False):
                if not raise_exception:
                    return False
                worst = numpy.unravel_index(numpy.argmax(numpy.abs(a - n)), a.shape)
                raise GradcheckError(
                    f"Jacobian mismatch for output {o} with respect to input {i},\n"
                    f"numerical:{n}\nanalytical:{a}\n"
                    f"largest difference at (output element, input element) {tuple(map(int, worst))}: "
                    f"numerical {n[worst]:.6g}, analytical {a[worst]:.6g}")
    return True


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3,
                  raise_exception=True, **unused):
    """gradcheck of the gradient of ``func``: checks second derivatives,
    w.r.t. both the inputs and the output gradients (random if not given)."""
    from gpugrad.autograd import grad
    from gpugrad.creation import rand_like
    inputs = _tuple(inputs)
    outputs = _differentiable_outputs(_tuple(func(*inputs)))
    if grad_outputs is None:
        grad_outputs = tuple((rand_like(o, dtype=o.dtype) * 2 - 1).detach().requires_grad_(True)
                             for o in outputs)
    grad_outputs = _tuple(grad_outputs)
    n_inputs = len(inputs)
    wrt = [i for i, t in enumerate(inputs) if getattr(t, "requires_grad", False)]

    def first_derivatives(*args):
        ins, gos = args[:n_inputs], args[n_inputs:]
        outs = _differentiable_outputs(_tuple(func(*ins)))
        grads = grad(outs, [ins[i] for i in wrt], gos, create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivatives, inputs + grad_outputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)
