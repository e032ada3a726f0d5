"""gradcheck / gradgradcheck: analytical gradients against central differences.

Use them on your own Functions::

    x = gpugrad.randn(3, 4, dtype=gpugrad.float64, requires_grad=True)
    assert gpugrad.autograd.gradcheck(MyFunction.apply, (x,))

Inputs that require grad should be float64: central differences in float32
are too coarse for the default tolerances.  Besides the Jacobians, gradcheck
checks that backward is reentrant (two passes agree within ``nondet_tol``).
"""

import warnings

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.engine import grad
from gpugrad.creation import zeros_like
from gpugrad.random import rand_like
from gpugrad.tensor import Tensor


class GradcheckError(RuntimeError):
    """Raised by gradcheck when analytical and numerical Jacobians differ."""


def _tuple(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _differentiable_outputs(outputs):
    return [o for o in outputs if dtypes.is_floating_point(o.dtype)]


def _numerical_jacobian(func, inputs, wrt, outputs, eps):
    """J[o][i] of shape (outputs[o].numel(), inputs[i].numel()) by central differences."""
    jac = [[numpy.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outputs]
    for col, i in enumerate(wrt):
        array = inputs[i].array
        for k in range(inputs[i].numel()):
            index = numpy.unravel_index(k, array.shape)
            original = array[index].item()
            array[index] = original + eps
            plus = _evaluate(func, inputs)
            array[index] = original - eps
            minus = _evaluate(func, inputs)
            array[index] = original
            for o, (p, m) in enumerate(zip(plus, minus)):
                jac[o][col][:, k] = (p - m).reshape(-1) / (2 * eps)
    return jac


def _evaluate(func, inputs):
    """func's differentiable outputs as float64 NumPy copies (an output may alias an input)."""
    return [numpy.array(backend.to_device(o.detach().array, backend.CPU), dtype=numpy.float64, copy=True)
            for o in _differentiable_outputs(_tuple(func(*inputs)))]


def _analytical_jacobian(inputs, wrt, outputs):
    jac = [[numpy.zeros((o.numel(), inputs[i].numel())) for i in wrt] for o in outputs]
    targets = [inputs[i] for i in wrt]
    for o, out in enumerate(outputs):
        if not out.requires_grad:
            continue
        for row in range(out.numel()):
            seed = zeros_like(out)
            seed.array.reshape(-1)[row] = 1
            grads = grad(out, targets, seed, retain_graph=True, allow_unused=True)
            for col, g in enumerate(grads):
                if g is not None:
                    host = backend.to_device(g.array, backend.CPU)
                    jac[o][col][row, :] = host.astype(numpy.float64).reshape(-1)
    return jac


def gradcheck(func, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, nondet_tol=0.0,
              check_undefined_grad=True, check_grad_dtypes=False, check_batched_grad=False,
              check_batched_forward_grad=False, check_forward_ad=False, check_backward_ad=True,
              fast_mode=False, masked=None):
    """True when the gradients of ``func`` at ``inputs`` match central
    differences; otherwise raise GradcheckError (or return False).  torch's
    options that need forward-mode or batched gradients raise NotImplementedError."""
    for name, value in (("check_batched_grad", check_batched_grad),
                        ("check_batched_forward_grad", check_batched_forward_grad),
                        ("check_forward_ad", check_forward_ad), ("fast_mode", fast_mode), ("masked", masked)):
        if value:
            raise NotImplementedError(f"gradcheck({name}={value!r}) is not supported by gpugrad")
    if not check_backward_ad:
        raise NotImplementedError("gradcheck(check_backward_ad=False) leaves nothing gpugrad can check")
    inputs = _tuple(inputs)
    wrt = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not wrt:
        raise ValueError("gradcheck expects at least one input tensor to require gradient")
    for i in wrt:
        if inputs[i].dtype != numpy.float64:
            warnings.warn(f"Input #{i} requires gradient and is not a double precision floating "
                          "point. This check will likely fail.", UserWarning, stacklevel=2)
    outputs = _differentiable_outputs(_tuple(func(*inputs)))
    if check_undefined_grad and len(outputs) > 1:
        # each output alone: the others' gradients are undefined and must count as zeros
        for out in outputs:
            if out.requires_grad:
                grad(out, [inputs[i] for i in wrt], zeros_like(out), retain_graph=True, allow_unused=True)
    analytical = _analytical_jacobian(inputs, wrt, outputs)
    again = _analytical_jacobian(inputs, wrt, outputs)
    numerical = _numerical_jacobian(func, inputs, wrt, outputs, eps)
    for o in range(len(outputs)):
        for col, i in enumerate(wrt):
            a, n = analytical[o][col], numerical[o][col]
            if not numpy.allclose(a, again[o][col], rtol=0, atol=nondet_tol):
                return _fail(raise_exception, f"Backward is not reentrant for output {o} w.r.t. input {i}: "
                                              "two passes differ by more than nondet_tol")
            if check_grad_dtypes and outputs[o].requires_grad:
                g = grad(outputs[o], inputs[i], zeros_like(outputs[o]), retain_graph=True, allow_unused=True)[0]
                if g is not None and g.dtype != inputs[i].dtype:
                    return _fail(raise_exception, f"Gradient has dtype {g.dtype} for input {i} of {inputs[i].dtype}")
            if not numpy.allclose(a, n, rtol=rtol, atol=atol, equal_nan=False):
                worst = numpy.unravel_index(numpy.argmax(numpy.abs(a - n)), a.shape)
                return _fail(raise_exception,
                             f"Jacobian mismatch for output {o} with respect to input {i},\n"
                             f"numerical:{n}\nanalytical:{a}\n"
                             f"largest difference at (output element, input element) {tuple(map(int, worst))}: "
                             f"numerical {n[worst]:.6g}, analytical {a[worst]:.6g}")
    return True


def _fail(raise_exception, message):
    if raise_exception:
        raise GradcheckError(message)
    return False


def gradgradcheck(func, inputs, grad_outputs=None, *, eps=1e-6, atol=1e-5, rtol=1e-3, gen_non_contig_grad_outputs=False,
                  raise_exception=True, nondet_tol=0.0, check_undefined_grad=True, check_grad_dtypes=False,
                  check_batched_grad=False, check_fwd_over_rev=False, check_rev_over_rev=True, fast_mode=False,
                  masked=False):
    """gradcheck of the gradient of ``func``: checks second derivatives,
    w.r.t. both the inputs and the output gradients (random if not given)."""
    if check_fwd_over_rev or not check_rev_over_rev or gen_non_contig_grad_outputs:
        raise NotImplementedError("gradgradcheck checks reverse-over-reverse with the given grad_outputs only "
                                  "in gpugrad")
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
                     raise_exception=raise_exception, nondet_tol=nondet_tol, check_undefined_grad=check_undefined_grad,
                     check_grad_dtypes=check_grad_dtypes, check_batched_grad=check_batched_grad,
                     fast_mode=fast_mode, masked=masked or None)
