"""Elementwise ops: forward on arrays, backward in Tensor ops, side by side.

Binary ops broadcast; their backward returns the gradient of the broadcast
result and the engine sums it back to each input's shape.  Operands are
promoted with torch's rules first (``dtypes.result_type``): tensors are cast
with a differentiable ``to``, Python scalars become NumPy scalars of the
result dtype (weak, so they never widen a tensor).
"""

import math

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.tensor import Tensor


def as_operand(value, like):
    """A Tensor or a Python/NumPy scalar; arrays become tensors on ``like``'s device."""
    if isinstance(value, Tensor) or isinstance(value, (bool, int, float, numpy.generic)):
        return value
    if isinstance(value, numpy.ndarray) or backend.is_cupy_array(value):
        return Tensor._make(backend.to_device(value, like.device))
    raise TypeError(f"unsupported operand type for a tensor op: {type(value).__name__}")


_NUMBERS = (int, float, numpy.number)     # never widen a float tensor (torch's weak scalars)


def promote(*operands, floating=False):
    """Cast operands to their torch result dtype; returns (operands, dtype)."""
    if len(operands) == 2:       # fast paths: same-dtype tensors, float tensor with a number
        a, b = operands
        if type(a) is Tensor:
            dtype = a.data.dtype
            if dtype.kind == "f" or not floating:
                if type(b) is Tensor and b.data.dtype == dtype:
                    return operands, dtype
                if isinstance(b, _NUMBERS) and dtype.kind == "f":
                    return (a, dtype.type(b)), dtype
        elif type(b) is Tensor and isinstance(a, _NUMBERS):
            dtype = b.data.dtype
            if dtype.kind == "f":
                return (dtype.type(a), b), dtype
    like = next(o for o in operands if isinstance(o, Tensor))
    operands = [as_operand(o, like) for o in operands]
    dtype = dtypes.result_type(*operands)
    if floating and dtype.kind != "f":
        dtype = dtypes.get_default_dtype()
    out = []
    for o in operands:
        if isinstance(o, Tensor):
            out.append(o if o.dtype == dtype else o.to(dtype))
        else:
            out.append(dtype.type(o))
    return out, dtype


# -- arithmetic ---------------------------------------------------------------

class Add(InternalFunction):
    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        return a + b if alpha == 1 else a + b * alpha

    @staticmethod
    def backward(ctx, grad):
        return grad, grad if ctx.alpha == 1 else grad * ctx.alpha, None


class Sub(InternalFunction):
    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        return a - b if alpha == 1 else a - b * alpha

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.alpha == 1 else grad * -ctx.alpha, None


class Mul(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None,
                              b if ctx.needs_input_grad[0] else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return (grad * b if ctx.needs_input_grad[0] else None,
                grad * a if ctx.needs_input_grad[1] else None)


class Div(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return (grad / b if ctx.needs_input_grad[0] else None,
                -grad * a / (b * b) if ctx.needs_input_grad[1] else None)


class Pow(InternalFunction):
    """a ** b where either side may be a scalar."""

    @staticmethod
    def forward(ctx, a, b):
        out = ctx.xp.power(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            if isinstance(b, Tensor):
                grad_a = where(b == 0, 0.0, grad * b * a ** (b - 1))
            else:
                grad_a = grad * 0 if b == 0 else grad * b * a ** (b - 1)
        if ctx.needs_input_grad[1]:
            if isinstance(a, Tensor):
                grad_b = where((a == 0) & (b >= 0), 0.0, grad * out * a.log())
            else:
                grad_b = grad * 0 if a == 0 else grad * out * math.log(a)
        return grad_a, grad_b


class Neg(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Abs(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * x.sign()


class Sign(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        return ctx.xp.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * 0


# -- transcendental -------------------------------------------------------------

class Exp(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * y


class Log(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad / x


class Log1p(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log1p(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad / (x + 1)


class Expm1(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.expm1(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (y + 1)


class Sqrt(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad / (2 * y)


class Rsqrt(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = 1 / ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * -0.5 * y * y * y


class Sin(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * x.cos()


class Cos(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * -x.sin()


class Tan(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tan(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (1 + y * y)


class Tanh(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (1 - y * y)


class Sigmoid(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = 1 / (1 + ctx.xp.exp(-x))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (1 - y) * y


class Relu(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.maximum(x, 0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (y > 0)


class Erf(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return backend.erf(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * (2 / math.sqrt(math.pi)) * (-(x * x)).exp()


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_C = 0.044715


class Gelu(InternalFunction):
    """x * Phi(x), exactly (erf) or with torch's tanh approximation."""

    @staticmethod
    def forward(ctx, x, approximate):
        ctx.save_for_backward(x)
        ctx.approximate = approximate
        xp = ctx.xp
        if approximate == "tanh":
            return 0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x)))
        return 0.5 * x * (1 + backend.erf(x * (1 / math.sqrt(2))))

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if ctx.approximate == "tanh":
            x2 = x * x
            t = (_SQRT_2_OVER_PI * (x + _GELU_C * x2 * x)).tanh()
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x2)
        else:
            cdf = 0.5 * (1 + (x * (1 / math.sqrt(2))).erf())
            pdf = (-0.5 * x * x).exp() * (1 / math.sqrt(2 * math.pi))
            slope = cdf + x * pdf
        return grad * slope, None


class Softplus(InternalFunction):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold."""

    @staticmethod
    def forward(ctx, x, beta, threshold):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        bx = x * beta
        return xp.where(bx > threshold, x, xp.log1p(xp.exp(xp.minimum(bx, threshold))) / beta)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        bx = x * ctx.beta
        return where(bx > ctx.threshold, grad, grad * bx.sigmoid()), None, None


# -- selection ----------------------------------------------------------------

class Clamp(InternalFunction):
    @staticmethod
    def forward(ctx, x, low, high):
        xp = ctx.xp
        y = x if low is None else xp.maximum(x, low)
        y = y if high is None else xp.minimum(y, high)
        inside = xp.ones(x.shape, dtype=bool) if low is None else x >= low
        if high is not None:
            inside &= x <= high
        ctx.save_for_backward(inside)
        return y

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return grad * inside, None, None


class Maximum(InternalFunction):
    """max(a, b) elementwise; ties split the gradient evenly, as in torch."""

    @staticmethod
    def forward(ctx, a, b):
        xp = ctx.xp
        share = (a > b).astype(a.dtype) + 0.5 * (a == b)
        ctx.save_for_backward(share.astype(a.dtype, copy=False))
        return xp.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        share, = ctx.saved_tensors
        return grad * share, grad * (1 - share)


class Minimum(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        xp = ctx.xp
        share = (a < b).astype(a.dtype) + 0.5 * (a == b)
        ctx.save_for_backward(share.astype(a.dtype, copy=False))
        return xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        share, = ctx.saved_tensors
        return grad * share, grad * (1 - share)


class Where(InternalFunction):
    @staticmethod
    def forward(ctx, condition, a, b):
        ctx.save_for_backward(condition)
        return ctx.xp.where(condition, a, b)

    @staticmethod
    def backward(ctx, grad):
        condition, = ctx.saved_tensors
        zero = grad.dtype.type(0)
        return (None,
                where(condition, grad, zero) if ctx.needs_input_grad[1] else None,
                where(condition, zero, grad) if ctx.needs_input_grad[2] else None)


# -- copies and casts --------------------------------------------------------------

class ToCopy(InternalFunction):
    """Cast and/or move across devices; the gradient goes back the same way."""

    @staticmethod
    def forward(ctx, x, dtype, device):
        ctx.source = (x.dtype, backend.device_of(x))
        moved = backend.to_device(x, device)
        out = moved.astype(dtype, copy=False)
        return out.copy() if out is x else out

    @staticmethod
    def backward(ctx, grad):
        dtype, device = ctx.source
        return grad.to(device=device, dtype=dtype), None, None


class Clone(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        return ctx.xp.array(x, copy=True, order="C")

    @staticmethod
    def backward(ctx, grad):
        return grad


class CopyFrom(InternalFunction):
    """The value ``dst.copy_(src)`` writes: src broadcast to dst's shape and dtype."""

    @staticmethod
    def forward(ctx, dst, src):
        out = ctx.xp.empty_like(dst)
        out[...] = src
        return out

    @staticmethod
    def backward(ctx, grad):
        return None, grad


# -- public functions --------------------------------------------------------------

def add(a, b, alpha=1):
    (a, b), _ = promote(a, b)
    return Add.apply(a, b, alpha)


def sub(a, b, alpha=1):
    (a, b), dtype = promote(a, b)
    if dtype == dtypes.bool_:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported.")
    return Sub.apply(a, b, alpha)


def mul(a, b):
    (a, b), _ = promote(a, b)
    return Mul.apply(a, b)


def div(a, b):
    (a, b), _ = promote(a, b, floating=True)
    return Div.apply(a, b)


def pow(a, b):
    (a, b), _ = promote(a, b)
    return Pow.apply(a, b)


def floor_divide(a, b):
    (a, b), _ = promote(a, b)
    return _no_grad_binary("floor_divide", a, b)


def remainder(a, b):
    (a, b), _ = promote(a, b)
    return _no_grad_binary("remainder", a, b)


def neg(x):
    if x.dtype == dtypes.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported.")
    return Neg.apply(x)


def abs(x):
    return Abs.apply(x)


def sign(x):
    return Sign.apply(x)


def _floating(x):
    return x if x.dtype.kind == "f" else x.to(dtypes.get_default_dtype())


def exp(x):
    return Exp.apply(_floating(x))


def log(x):
    return Log.apply(_floating(x))


def log1p(x):
    return Log1p.apply(_floating(x))


def expm1(x):
    return Expm1.apply(_floating(x))


def sqrt(x):
    return Sqrt.apply(_floating(x))


def rsqrt(x):
    return Rsqrt.apply(_floating(x))


def sin(x):
    return Sin.apply(_floating(x))


def cos(x):
    return Cos.apply(_floating(x))


def tan(x):
    return Tan.apply(_floating(x))


def tanh(x):
    return Tanh.apply(_floating(x))


def sigmoid(x):
    return Sigmoid.apply(_floating(x))


def relu(x):
    return Relu.apply(x)


def erf(x):
    return Erf.apply(_floating(x))


def gelu(x, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(_floating(x), approximate)


def softplus(x, beta=1.0, threshold=20.0):
    return Softplus.apply(_floating(x), beta, threshold)


def clamp(x, min=None, max=None):
    """Limit x to [min, max]; either bound may be None, a number or a tensor."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x
        if min is not None:
            out = where(out < min, min, out)
        if max is not None:
            out = where(out > max, max, out)
        return out
    cast = x.dtype.type
    return Clamp.apply(x, None if min is None else cast(min), None if max is None else cast(max))


def maximum(a, b):
    (a, b), _ = promote(a, b)
    return Maximum.apply(a, b)


def minimum(a, b):
    (a, b), _ = promote(a, b)
    return Minimum.apply(a, b)


def where(condition, a, b):
    """Elements of ``a`` where ``condition`` holds, else of ``b`` (either may be a scalar)."""
    if not isinstance(condition, Tensor):
        like = a if isinstance(a, Tensor) else b
        condition = Tensor._make(like.xp.asarray(condition))
    if condition.dtype != dtypes.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {condition.dtype}")
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        dtype = dtypes.result_type(a, b)
        a, b = dtype.type(a), dtype.type(b)
    else:
        (a, b), _ = promote(a, b)
    return Where.apply(condition, a, b)


def masked_fill(x, mask, value):
    """x with ``value`` where ``mask`` (a bool tensor broadcastable to x) is True."""
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"masked_fill only supports a 0-dimensional value tensor, "
                               f"but got tensor with {value.ndim} dimension(s).")
        value = value.to(x.dtype)
    else:
        value = x.dtype.type(value)
    out = where(mask, value, x)
    if out.shape != x.shape:
        raise RuntimeError(f"masked_fill: mask of shape {list(mask.shape)} does not broadcast to "
                           f"the input's shape {list(x.shape)}")
    return out


def copy_from(dst, src):
    if isinstance(src, Tensor):
        if src.device != dst.device:
            src = src.to(dst.device)
    else:
        src = dst.dtype.type(src)
    return CopyFrom.apply(dst, src)


# -- comparisons and logic: no gradient --------------------------------------------

def _no_grad_binary(name, a, b):
    data = [o.data if isinstance(o, Tensor) else o for o in (a, b)]
    xp = (a if isinstance(a, Tensor) else b).xp
    out = getattr(xp, name)(*data)
    return Tensor._make(xp.asarray(out))


def _compare(name, a, b):
    if not isinstance(b, (Tensor, bool, int, float, numpy.generic, numpy.ndarray)) and \
            not backend.is_cupy_array(b):
        return NotImplemented
    (a, b), _ = promote(a, b)
    return _no_grad_binary(name, a, b)


def eq(a, b):
    return _compare("equal", a, b)


def ne(a, b):
    return _compare("not_equal", a, b)


def lt(a, b):
    return _compare("less", a, b)


def le(a, b):
    return _compare("less_equal", a, b)


def gt(a, b):
    return _compare("greater", a, b)


def ge(a, b):
    return _compare("greater_equal", a, b)


def logical_op(name, a, b):
    (a, b), dtype = promote(a, b)
    if dtype.kind == "f":
        raise TypeError(f"{name} is only supported for integer and bool tensors, got {dtype}")
    return _no_grad_binary(name, a, b)


def logical_not(x):
    return Tensor._make(x.xp.logical_not(x.data))


def bitwise_not(x):
    return Tensor._make(x.xp.invert(x.data))


def isnan(x):
    return Tensor._make(x.xp.isnan(x.data))


def isinf(x):
    return Tensor._make(x.xp.isinf(x.data))


def isfinite(x):
    return Tensor._make(x.xp.isfinite(x.data))
