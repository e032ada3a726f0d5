"""Elementwise ops: each a Function (forward on arrays, backward in Tensor
ops, side by side) followed by its public function.

Binary ops broadcast; their backward returns the gradient of the broadcast
result and the engine sums it back to each input's shape.  Operands are
promoted with torch's rules first (``ops/_promote.py``).  Where a backward
formula would take several Tensor ops, it is one Function of its own
(``TanhBackward``...), itself differentiable, so a backward node costs one
dispatch and ``create_graph=True`` still works.
"""

import builtins
import math

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import layers
from gpugrad.ops._promote import floating, promote, rounded, scalar_of
from gpugrad.ops.linalg import Linear
from gpugrad.tensor import Tensor


def _unary_input(x, name):
    if isinstance(x, Tensor) and x.array.dtype in _FLOATING:     # the common case: no further call
        return x
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be a Tensor, not {type(x).__name__}")
    return floating(x)


_FLOATING = dtypes.FLOATING_SET


# -- arithmetic ---------------------------------------------------------------

class Add(InternalFunction):
    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        return a + b if alpha == 1 else a + b * alpha

    @staticmethod
    def backward(ctx, grad):
        return grad, grad if ctx.alpha == 1 else grad * ctx.alpha, None


def _half_addend(value, dtype):
    # torch (CPU) rounds a number added to a half-precision tensor to its dtype first
    # (it multiplies and divides with the number in float32)
    if dtype in _HALF and not isinstance(value, Tensor):
        return numpy.float32(dtype.type(value))
    return value


_HALF = (dtypes.float16, dtypes.bfloat16)


def _mixed_floats(function, input, other):
    """``function`` (Add, Sub) of two tensors of one shape and two floating dtypes, one of them the
    result's (float32 and bfloat16: the residual stream under autocast): the narrower one read as
    it is, not cast first (a launch of its own on the GPU; the sum is the same, the widening
    exact), its gradient cast back by the engine; else promoted as any operands."""
    dtype = dtypes.result_type(input, other)
    if dtype != input.array.dtype and dtype != other.array.dtype:
        (input, other), dtype = promote(input, other)
    return rounded(function.apply(input, other, 1), dtype)


def _check_alpha(alpha, dtype):
    if alpha == 1 and not isinstance(alpha, bool):
        return
    if isinstance(alpha, bool) and dtype != dtypes.bool_:
        raise RuntimeError("Boolean alpha only supported for Boolean results.")
    if isinstance(alpha, float) and not dtypes.is_floating_point(dtype):
        raise RuntimeError("For integral input tensors, argument alpha must not be a floating point number.")


def add(input, other, *, alpha=1):
    """input + alpha * other, broadcasting, with torch's type promotion."""
    if type(input) is Tensor and type(other) is Tensor and alpha == 1 and type(alpha) is not bool:
        a, b = input.array, other.array
        if a.dtype is b.dtype and a.shape == b.shape and a.dtype in _FLOATING:
            # same floating dtype and shape (the hot case): promote, the alpha check, the half
            # addend and rounded change nothing; the device is checked by apply
            return Add.apply(input, other, 1)
        if a.shape == b.shape and a.dtype in _FLOATING and b.dtype in _FLOATING:
            return _mixed_floats(Add, input, other)
    (a, b), dtype = promote(input, other)
    _check_alpha(alpha, dtype)
    return rounded(Add.apply(_half_addend(a, dtype), _half_addend(b, dtype), alpha), dtype)


class Sub(InternalFunction):
    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        return a - b if alpha == 1 else a - b * alpha

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad if ctx.alpha == 1 else grad * -ctx.alpha, None


def sub(input, other, *, alpha=1):
    """input - alpha * other (not defined for two bool tensors)."""
    if type(input) is Tensor and type(other) is Tensor and alpha == 1 and type(alpha) is not bool:
        a, b = input.array, other.array
        if a.dtype is b.dtype and a.shape == b.shape and a.dtype in _FLOATING:
            return Sub.apply(input, other, 1)      # as add's fast path
        if a.shape == b.shape and a.dtype in _FLOATING and b.dtype in _FLOATING:
            return _mixed_floats(Sub, input, other)
    if isinstance(input, bool) or isinstance(other, bool) or any(
            isinstance(t, Tensor) and t.dtype == dtypes.bool_ for t in (input, other)):
        both = all(isinstance(t, Tensor) and t.dtype == dtypes.bool_ for t in (input, other))
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead." if both else
                           "Subtraction, the `-` operator, with a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    (a, b), dtype = promote(input, other)
    _check_alpha(alpha, dtype)
    return rounded(Sub.apply(_half_addend(a, dtype), _half_addend(b, dtype), alpha), dtype)


def rsub(input, other, *, alpha=1):
    """other - alpha * input."""
    return sub(other, input, alpha=alpha)


class Mul(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None,
                              b if ctx.needs_input_grad[0] else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        if ctx.needs_input_grad[0] and ctx.needs_input_grad[1]:
            return MulBackward.apply(grad, a, b)
        return (grad * b if ctx.needs_input_grad[0] else None,
                grad * a if ctx.needs_input_grad[1] else None)

    @staticmethod
    def constant_gradient(ctx, value):
        # engine.known_upstream: a tensor times a number hands grad * number to the tensor
        needs = ctx.needs_input_grad
        index = 1 if needs[1] else 0
        number = _saved_number(ctx, 1 - index)
        if needs[1 - index] or number is None:
            return None
        return index, _scalar_op(numpy.multiply, value, number)


def _saved_number(ctx, index):
    """The NumPy scalar (a Python number's, from promote) ctx saved at
    ``index``, or None (a tensor, nothing saved, released)."""
    saved = ctx._saved
    entry = saved[index] if saved is not None and index < len(saved) else None
    # a saved value is (kind, value, version counter, version, output nr): gpugrad/autograd/function.py
    if entry is None or entry[0] != "constant" or not isinstance(entry[1], numpy.generic):
        return None
    return entry[1]


def _scalar_op(op, value, number):
    """op(grad, number) for a gradient of one element whose host value is the
    NumPy scalar ``value``, as the backward's Tensor op computes it: the number
    as promote makes it, the result rounded to grad's dtype (IEEE arithmetic,
    the same bits on either device)."""
    return value.dtype.type(op(value, scalar_of(value.dtype, number)))


class MulBackward(InternalFunction):
    """(grad * b, grad * a) in one dispatch; differentiable again."""

    @staticmethod
    def forward(ctx, grad, a, b):
        ctx.save_for_backward(grad, a, b)
        return grad * b, grad * a

    @staticmethod
    def backward(ctx, grad_a, grad_b):
        grad, a, b = ctx.saved_tensors
        return grad_a * b + grad_b * a, grad_b * grad, grad_a * grad


def mul(input, other):
    """input * other, broadcasting."""
    if type(input) is Tensor and type(other) is Tensor:
        a, b = input.array, other.array
        if a.dtype is b.dtype and a.shape == b.shape and a.dtype in _FLOATING:
            return Mul.apply(input, other)         # as add's fast path
    (a, b), dtype = promote(input, other)
    return rounded(Mul.apply(a, b), dtype)


class Div(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        # torch's div backward: grad / b and -grad * ((a / b) / b), nan and inf where torch's are
        return (grad / b if ctx.needs_input_grad[0] else None,
                -grad * ((a / b) / b) if ctx.needs_input_grad[1] else None)

    @staticmethod
    def constant_gradient(ctx, value):
        # engine.known_upstream: a tensor over a number hands grad / number to the tensor
        number = _saved_number(ctx, 1)
        if ctx.needs_input_grad[1] or not ctx.needs_input_grad[0] or number is None:
            return None
        return 0, _scalar_op(numpy.divide, value, number)


def div(input, other, *, rounding_mode=None):
    """True division (integers give floats); ``rounding_mode='trunc'`` or
    ``'floor'`` rounds the quotient (and keeps integer dtypes)."""
    if rounding_mode is None:
        (a, b), dtype = promote(input, other, floating=True)
        return rounded(Div.apply(a, b), dtype)
    if rounding_mode not in ("floor", "trunc"):
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found "
                           f"'{rounding_mode}'")
    (a, b), dtype = promote(input, other)
    _check_integer_division(a, b, dtype, f"div_{rounding_mode}_cpu")
    return rounded(RoundedDiv.apply(a, b, rounding_mode), dtype)


def _check_integer_division(a, b, dtype, kernel):
    """torch's errors for an integer division: none for bool, none by zero
    (raised by its kernel's loop: not for an empty result)."""
    if dtype == dtypes.bool_:
        raise validation.not_implemented(kernel, dtype)
    if dtypes.is_floating_point(dtype) or isinstance(a, Tensor) and a.numel() == 0:
        return
    zero = (b == 0) if not isinstance(b, Tensor) else bool((b.array == 0).any())
    if zero:
        raise RuntimeError("ZeroDivisionError")


def _floating_operands(a, b):
    """(a, b) for torch's floating formulas below (float16 and bfloat16 in float32, as torch's kernels
    compute them; the caller rounds the result), or None when neither is floating point."""
    if a.dtype.kind != "f" and b.dtype.kind != "f":
        return None
    return tuple(v.astype(numpy.float32) if v.dtype in (dtypes.float16, dtypes.bfloat16) else v for v in (a, b))


def _floor_divide(xp, a, b):
    """floor(a / b) as torch's div_floor_floating (c10/util/generic_math.h, NumPy's floor_divide alike):
    from the exact (a - fmod(a, b)) / b, so 1 // 0.1 is 9 and inf // 2 nan.  CuPy's floating floor_divide
    is floor(a / b) (10 and inf), and its remainder a - floor(a / b) * b."""
    pair = _floating_operands(a, b)
    if pair is None:
        return xp.floor_divide(a, b)
    a, b = pair
    mod = xp.fmod(a, b)
    div = (a - mod) / b
    div = xp.where((mod != 0) & xp.not_equal(mod < 0, b < 0), div - 1, div)
    floor = xp.floor(div)
    floor = xp.where(div - floor > 0.5, floor + 1, floor)
    floor = xp.where(div != 0, floor, xp.copysign(0, a / b))
    if not isinstance(b, xp.ndarray):   # a number
        return a / b if b == 0 else floor
    return xp.where(b == 0, a / b, floor)


def _remainder(xp, a, b):
    """a - b * floor(a / b) as torch's remainder kernel: fmod(a, b), plus b where the signs differ."""
    pair = _floating_operands(a, b)
    if pair is None:
        return xp.remainder(a, b)
    a, b = pair
    mod = xp.fmod(a, b)
    return xp.where((mod != 0) & xp.not_equal(mod < 0, b < 0), mod + b, mod)


def _trunc_divide(xp, x, y):
    if x.dtype.kind == "f" or getattr(y, "dtype", None) is not None and y.dtype.kind == "f":
        return xp.trunc(x / y)
    quotient = xp.floor_divide(x, y)
    remainder = x - quotient * y
    return quotient + ((remainder != 0) & ((x < 0) != (y < 0)))


class RoundedDiv(InternalFunction):
    """div with rounding_mode 'floor' or 'trunc': piecewise constant, so its
    gradient is 0 (torch's DivBackward2)."""

    @staticmethod
    def forward(ctx, a, b, mode):
        xp = ctx.xp
        ctx.shapes = (getattr(a, "shape", ()), getattr(b, "shape", ()))
        if mode == "floor":
            return _floor_divide(xp, a, b)
        return _trunc_divide(xp, a, b)

    @staticmethod
    def backward(ctx, grad):
        return zeros_of(grad), zeros_of(grad), None


class Pow(InternalFunction):
    """a ** b where either side may be a scalar."""

    @staticmethod
    def forward(ctx, a, b):
        xp = ctx.xp
        dtype = getattr(a, "dtype", None) if getattr(a, "dtype", None) is not None else b.dtype
        if dtype.kind in "iu" and isinstance(b, xp.ndarray) and bool((b < 0).any()):
            # integer powers with negative exponents, as torch's: 1 for 1, +-1 for -1, 0 otherwise
            out = xp.power(a, xp.where(b < 0, 0, b))
            odd = (xp.abs(b) % 2) == 1
            out = xp.where(b < 0, xp.where(a == 1, 1, xp.where(a == -1, xp.where(odd, -1, 1), 0)), out)
            out = out.astype(dtype, copy=False)
        elif not isinstance(b, xp.ndarray) and dtype.kind == "f" and (b == 0.5 or b == -0.5):
            # torch's pow_tensor_scalar: sqrt and rsqrt for these exponents (sqrt(-inf) is nan, pow's inf)
            out = xp.sqrt(a)
            if b < 0:
                out = xp.divide(1, out, out=out if isinstance(out, xp.ndarray) else None).astype(dtype, copy=False)
        else:
            out = xp.power(a, b)
        # the result only for the exponent's gradient, as torch's (pow_ then an in-place change is fine)
        ctx.save_for_backward(a, b, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        grad_a = grad_b = None
        # torch's pow_backward_self / pow_backward_exponent, nan and inf included: the
        # exponent's gradient at a = 0 is 0 for b >= 0 and -inf * grad below
        if ctx.needs_input_grad[0]:
            if isinstance(b, Tensor):
                if b.dtype == dtypes.bool_:      # torch's formula subtracts 1 from the exponent
                    raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. If you "
                                       "are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
                grad_a = where(b == 0, 0.0, grad * (b * a ** (b - 1)))
            else:
                if isinstance(b, numpy.bool_):      # torch's bool exponent is no number 0: the formula
                    b = a.dtype.type(b)
                    grad_a = grad * (b * a ** (b - 1))
                else:
                    grad_a = zeros_of(grad) if b == 0 else grad * (b * a ** (b - 1))
        if ctx.needs_input_grad[1]:
            if isinstance(a, Tensor):
                grad_b = grad * where((a == 0) & (b >= 0), 0.0, out * a.log())
            elif a == 0:
                grad_b = grad * where(b >= 0, 0.0, out * -math.inf)
            else:
                grad_b = grad * (out * math.log(a) if a > 0 else out * math.nan)
        return grad_a, grad_b


@autocast_mode.float32
def pow(input, exponent):
    """input ** exponent (either may be a number); integer tensors to a
    negative integer power raise, as in torch."""
    (a, b), dtype = promote(input, exponent)
    if dtype == dtypes.bool_:
        if isinstance(exponent, bool):       # torch: x ** True is x, x ** False is True
            return clone(input) if exponent else Tensor._make(input.xp.ones(input.shape, dtype=dtypes.bool_))
        raise validation.not_implemented("pow", dtype)
    if not dtypes.is_floating_point(dtype) and not isinstance(b, Tensor) and b < 0:
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    if isinstance(exponent, bool) and dtypes.is_floating_point(dtype):
        b = numpy.bool_(exponent)
    if isinstance(exponent, Tensor) and exponent.dtype == dtypes.bool_ and dtypes.is_floating_point(dtype):
        b = exponent          # kept bool, as torch's (whose gradient then fails on it)
    return rounded(Pow.apply(a, b), dtype)


class FloorDivide(InternalFunction):
    """floor(a / b); torch defines no derivative for it (its backward raises, as torch's)."""

    @staticmethod
    def forward(ctx, a, b):
        return _floor_divide(ctx.xp, a, b)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("derivative for aten::floor_divide is not implemented")


def floor_divide(input, other):
    """floor(input / other), elementwise (torch defines no gradient: backward raises)."""
    (a, b), dtype = promote(input, other)
    _check_integer_division(a, b, dtype, "div_floor_cpu")
    return rounded(FloorDivide.apply(a, b), dtype)


class Remainder(InternalFunction):
    """a - b * floor(a / b) (``fmod``: trunc instead of floor); the gradient is
    1 to a and -floor(a / b) (-trunc(a / b)) to b, as torch's."""

    rounding = "floor"

    @classmethod
    def forward(cls, ctx, a, b):
        xp = ctx.xp
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(a, b)
        return _remainder(xp, a, b) if cls.rounding == "floor" else xp.fmod(a, b)

    @classmethod
    def backward(cls, ctx, grad):
        grad_b = None
        if ctx.needs_input_grad[1]:
            a, b = ctx.saved_tensors
            if not isinstance(a, Tensor):     # torch's remainder(Scalar, Tensor) has no derivative
                raise RuntimeError("derivative for aten::remainder is not implemented")
            quotient = div(a, b, rounding_mode=cls.rounding).detach()
            grad_b = grad * -quotient
        return grad, grad_b


class Fmod(Remainder):
    rounding = "trunc"


def remainder(input, other):
    """Python's modulus (the sign of the divisor), elementwise; gradient 1 to
    input, -floor(input / other) to other."""
    (a, b), dtype = promote(input, other)
    _check_integer_division(a, b, dtype, "remainder_cpu")
    return rounded(Remainder.apply(a, b), dtype)


def fmod(input, other):
    """C's fmod (the sign of the dividend), elementwise; gradient 1 to input,
    -trunc(input / other) to other."""
    (a, b), dtype = promote(input, other)
    _check_integer_division(a, b, dtype, "fmod_cpu")
    return rounded(Fmod.apply(a, b), dtype)


class Neg(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad

    @staticmethod
    def constant_gradient(ctx, value):
        return 0, -value          # engine.known_upstream


def neg(input):
    """-input (not defined for bool tensors)."""
    if input.dtype == dtypes.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you are "
                           "trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    return Neg.apply(input)


negative = neg


class Abs(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        if ctx.needs_input_grad[0]:     # x itself, as torch's (an in-place change of x is caught)
            ctx.save_for_backward(x)
        return ctx.xp.abs(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors          # sign(x), 0 at 0 and at nan (torch's gradient)
        a = x.array
        return grad * Tensor._make((a > 0).astype(a.dtype) - (a < 0).astype(a.dtype))


def abs(input):
    """|input|; the gradient at 0 (and at nan) is 0, as in torch."""
    if input.dtype == dtypes.bool_:
        raise validation.not_implemented("abs_cpu", input.dtype)
    return Abs.apply(input)


absolute = abs


def zeros_of(grad):
    """The zero gradient of a piecewise-constant op (zeros, even where grad is nan or inf, as torch's)."""
    return Tensor._make(grad.xp.zeros(grad.shape, dtype=grad.dtype))


class Sign(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        if x.dtype == dtypes.bool_:
            return x.copy()
        # 0 at nan, as torch (NumPy's sign gives nan)
        return (x > 0).astype(x.dtype) - (x < 0).astype(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return zeros_of(grad)


def sign(input):
    """-1, 0 or 1 by the sign of each element (0 at nan, as torch; gradient 0)."""
    return Sign.apply(input)


class _Rounding(InternalFunction):
    """floor, ceil, round, trunc: piecewise constant, gradient 0."""
    function = None

    @classmethod
    def forward(cls, ctx, x):
        return getattr(ctx.xp, cls.function)(x)

    @staticmethod
    def backward(ctx, grad):
        return zeros_of(grad)


class Floor(_Rounding):
    function = "floor"


class Ceil(_Rounding):
    function = "ceil"


class Round(_Rounding):
    function = "round"     # half to even, as torch.round


class Trunc(_Rounding):
    function = "trunc"


def _rounding(function, input, kernel):
    """An integer tensor rounds to a copy of itself; bool has no kernel (torch's NotImplementedError)."""
    if dtypes.is_floating_point(input.dtype):
        return function.apply(input)
    if input.dtype == dtypes.bool_:
        raise validation.not_implemented(kernel, input.dtype)
    return clone(input)


def floor(input):
    """The largest integer <= each element (integer tensors: a copy)."""
    return _rounding(Floor, input, "floor_vml_cpu")


def ceil(input):
    """The smallest integer >= each element."""
    return _rounding(Ceil, input, "ceil_vml_cpu")


def round(input, *, decimals=None):
    """Round half to even (to ``decimals`` places)."""
    if not dtypes.is_floating_point(input.dtype):
        if decimals is not None:
            raise validation.not_implemented("round_cpu", input.dtype)
        return _rounding(Round, input, "round_vml_cpu")
    if decimals:
        scale = 10.0 ** decimals
        return Round.apply(input * scale) / scale
    return Round.apply(input)


def trunc(input):
    """Round towards zero."""
    return _rounding(Trunc, input, "trunc_vml_cpu")


fix = trunc


def frac(input):
    """input - trunc(input) (floating point only)."""
    validation.floating_only("frac_cpu", input.dtype)
    return input - trunc(input).detach()


# -- transcendental ---------------------------------------------------------------

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


@autocast_mode.float32
def exp(input):
    """e ** input."""
    return Exp.apply(_unary_input(input, "exp"))


def exp2(input):
    """2 ** input."""
    return pow(2.0, _unary_input(input, "exp2"))


class Log(InternalFunction):
    """The logarithm in base e (log2, log10: in their base, one node each)."""

    function, scale = "log", 1.0

    @classmethod
    def forward(cls, ctx, x):
        ctx.save_for_backward(x)
        return getattr(ctx.xp, cls.function)(x)

    @classmethod
    def backward(cls, ctx, grad):
        x, = ctx.saved_tensors
        return grad / x if cls.scale == 1.0 else grad / (x * cls.scale)


class Log2(Log):
    function, scale = "log2", math.log(2)


class Log10(Log):
    function, scale = "log10", math.log(10)


@autocast_mode.float32
def log(input):
    """The natural logarithm (-inf at 0, nan below)."""
    return Log.apply(_unary_input(input, "log"))


@autocast_mode.float32
def log2(input):
    """The base-2 logarithm."""
    return Log2.apply(_unary_input(input, "log2"))


@autocast_mode.float32
def log10(input):
    """The base-10 logarithm."""
    return Log10.apply(_unary_input(input, "log10"))


class Log1p(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log1p(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad / (x + 1)


@autocast_mode.float32
def log1p(input):
    """log(1 + input), accurate for small input."""
    return Log1p.apply(_unary_input(input, "log1p"))


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


@autocast_mode.float32
def expm1(input):
    """exp(input) - 1, accurate for small input."""
    return Expm1.apply(_unary_input(input, "expm1"))


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


def sqrt(input):
    """The square root (the gradient at 0 is inf, as in torch)."""
    return Sqrt.apply(_unary_input(input, "sqrt"))


class Rsqrt(InternalFunction):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x):
        y = 1 / ctx.xp.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return grad * (-0.5 * y * y * y)


@autocast_mode.float32
def rsqrt(input):
    """1 / sqrt(input)."""
    return Rsqrt.apply(_unary_input(input, "rsqrt"))


def square(input):
    """input * input (bool tensors give int64, as torch)."""
    if input.dtype == dtypes.bool_:
        input = input.to(dtypes.int64)
    return mul(input, input)


@autocast_mode.float32
def reciprocal(input):
    """1 / input."""
    return div(1.0, _unary_input(input, "reciprocal"))


class Sin(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sin(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * x.cos()


def sin(input):
    """The sine, elementwise."""
    return Sin.apply(_unary_input(input, "sin"))


class Cos(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cos(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * -x.sin()


def cos(input):
    """The cosine, elementwise."""
    return Cos.apply(_unary_input(input, "cos"))


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


@autocast_mode.float32
def tan(input):
    """The tangent, elementwise."""
    return Tan.apply(_unary_input(input, "tan"))


class Atan(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arctan(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad / (1 + x * x)


def atan(input):
    """The arctangent, elementwise."""
    return Atan.apply(_unary_input(input, "atan"))


arctan = atan


class Atan2(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.arctan2(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        # torch's: grad * other / (self^2 + other^2), grad * -self / (...), 0 at the origin
        squared = a * a + b * b
        scale = where(squared == 0, 0.0, reciprocal(squared))
        return (grad * b * scale if ctx.needs_input_grad[0] else None,
                grad * -a * scale if ctx.needs_input_grad[1] else None)


def atan2(input, other):
    """The angle of the point (other, input) (arctan(input / other) in the right
    quadrant), elementwise, broadcasting; integers give the default float dtype."""
    (a, b), dtype = _tensor_pair("atan2", input, other, floating=True)
    return rounded(Atan2.apply(a, b), dtype)


arctan2 = atan2


@autocast_mode.float32
def sinh(input):
    """The hyperbolic sine, elementwise."""
    x = _unary_input(input, "sinh")
    return (x.exp() - (-x).exp()) * 0.5


@autocast_mode.float32
def cosh(input):
    """The hyperbolic cosine, elementwise."""
    x = _unary_input(input, "cosh")
    return (x.exp() + (-x).exp()) * 0.5


class Tanh(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return TanhBackward.apply(grad, y)


class TanhBackward(InternalFunction):
    """grad * (1 - y^2) in one dispatch; differentiable again."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, grad, y):
        ctx.save_for_backward(grad, y)
        if layers.supports(grad, y):     # CUDA: one kernel
            return layers.output_backward("tanh", grad, y)
        return grad * (1 - y * y)

    @staticmethod
    def backward(ctx, grad_grad):
        grad, y = ctx.saved_tensors
        return grad_grad * (1 - y * y), grad_grad * grad * -2 * y


def tanh(input):
    """The hyperbolic tangent, elementwise."""
    if type(input) is Tensor and input.array.dtype in _FLOATING:     # _unary_input's common case, inline
        return Tanh.apply(input)
    return Tanh.apply(_unary_input(input, "tanh"))


class Sigmoid(InternalFunction):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        if xp is numpy:
            y = backend.keep_array(backend.expit(x))       # one pass (float32 / float64: half_in_float32)
        elif layers.supports(x):                           # CUDA: one kernel, torch's formula in Acc
            y = layers.sigmoid_forward(x)
        else:
            # torch's 1 / (1 + exp(-x)), in place after the first op: exp(-x) = inf gives 0 exactly
            y = xp.negative(x)
            xp.exp(y, out=y)
            y += 1
            xp.reciprocal(y, out=y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return SigmoidBackward.apply(grad, y)


class SigmoidBackward(InternalFunction):
    """grad * y (1 - y) in one dispatch; differentiable again."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, grad, y):
        ctx.save_for_backward(grad, y)
        if layers.supports(grad, y):     # CUDA: one kernel
            return layers.output_backward("sigmoid", grad, y)
        return grad * (y * (1 - y))

    @staticmethod
    def backward(ctx, grad_grad):
        grad, y = ctx.saved_tensors
        return grad_grad * y * (1 - y), grad_grad * grad * (1 - 2 * y)


def sigmoid(input):
    """1 / (1 + exp(-input))."""
    if type(input) is Tensor and input.array.dtype in _FLOATING:     # _unary_input's common case, inline
        return Sigmoid.apply(input)
    return Sigmoid.apply(_unary_input(input, "sigmoid"))


class Relu(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        y = ctx.xp.maximum(x, 0)
        ctx.save_for_backward(y)        # the result, as torch's (y > 0 where x > 0; an in-place change of y is caught)
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return ThresholdBackward.apply(grad, y, 0.0)


class ThresholdBackward(InternalFunction):
    """grad where x > threshold, else 0 (nan counts as above, as in torch)."""

    @staticmethod
    def forward(ctx, grad, x, threshold):
        ctx.save_for_backward(x)
        ctx.threshold = threshold
        return backend.keep_where(~(x <= threshold), grad)

    @staticmethod
    def backward(ctx, grad_grad):
        x, = ctx.saved_tensors
        return ThresholdBackward.apply(grad_grad, x, ctx.threshold), None, None


def relu(input):
    """max(input, 0); the gradient at 0 is 0."""
    if input.dtype == dtypes.bool_:
        raise RuntimeError("Boolean inputs not supported for relu")
    return Relu.apply(input)


class Erf(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return _erf(x)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return grad * ((2 / math.sqrt(math.pi)) * (-(x * x)).exp())


def _erf(x):
    """erf of an array in float32 or wider, back in x's dtype."""
    return backend.erf(x.astype(dtypes.accumulate_dtype(x.dtype), copy=False)).astype(x.dtype, copy=False)


def erf(input):
    """The error function."""
    return Erf.apply(_unary_input(input, "erf"))


_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_GELU_C = 0.044715


class Gelu(InternalFunction):
    """x * Phi(x), exactly (erf) or with torch's tanh approximation.  The
    forward keeps x (and on the CPU, where erf is compute-bound, Phi(x) as
    well: the GPU recomputes it rather than hold another array); the backward
    is one Function.  On CUDA each is one kernel (kernels/elementwise.cu)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, approximate, linear=None):
        ctx.approximate = approximate
        ctx.linear = linear
        xp = ctx.xp
        if layers.supports(x):           # CUDA: one kernel
            ctx.save_for_backward(x, None)
            return layers.gelu_forward(x, approximate == "tanh")
        if approximate == "tanh":
            ctx.save_for_backward(x, None)
            inner = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x * x * x))
            inner += 1
            inner *= 0.5
        else:
            inner = _erf(x * x.dtype.type(_INV_SQRT_2))
            inner += 1
            inner *= 0.5                 # Phi(x)
            ctx.save_for_backward(x, None if backend.is_cupy_array(x) else inner)
        out = inner * x
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, cdf = ctx.saved_tensors
        if ctx.linear is not None and not is_grad_enabled() and layers.supports(grad.array, x.array):
            # CUDA, x the output of a Linear whose bias needs a gradient: the sums of dx over the
            # rows (that gradient) come from the same kernel, not a reduction of the Linear's
            dx, sums = layers.gelu_backward_bias(grad.array, x.array, ctx.approximate == "tanh")
            dx = Tensor._make(dx)
            Linear.offer_bias_grad(ctx.linear, dx, sums)
            return dx, None, None
        return GeluBackward.apply(grad, x, ctx.approximate, cdf), None, None


class GeluBackward(InternalFunction):
    """grad * gelu'(x), one pass for erf (Phi(x) from the forward when it kept
    it); differentiable again."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, grad, x, approximate, cdf=None):
        ctx.save_for_backward(grad, x)
        ctx.approximate = approximate
        xp = ctx.xp
        if layers.supports(grad, x):     # CUDA: one kernel
            return layers.gelu_backward(grad, x, approximate == "tanh")
        if approximate == "tanh":
            x2 = x * x
            t = xp.tanh(_SQRT_2_OVER_PI * (x + _GELU_C * x2 * x))
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x2)
        else:
            if cdf is None:
                slope = _erf(x * x.dtype.type(_INV_SQRT_2))
                slope += 1
                slope *= 0.5
            else:
                slope = cdf.copy()
            pdf = xp.exp(-0.5 * x * x)
            pdf *= _INV_SQRT_2PI
            pdf *= x
            slope += pdf
        slope *= grad
        return slope.astype(grad.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad_grad):
        grad, x = ctx.saved_tensors
        if ctx.approximate == "tanh":
            x2 = x * x
            u = _SQRT_2_OVER_PI * (x + _GELU_C * x2 * x)
            t = u.tanh()
            du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_C * x2)
            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du
            curvature = (1 - t * t) * du + 0.5 * x * (-2 * t * (1 - t * t) * du * du
                                                         + (1 - t * t) * _SQRT_2_OVER_PI * 6 * _GELU_C * x)
        else:
            pdf = (-0.5 * x * x).exp() * _INV_SQRT_2PI
            slope = 0.5 * (1 + (x * _INV_SQRT_2).erf()) + x * pdf
            curvature = pdf * (2 - x * x)
        return grad_grad * slope, grad_grad * grad * curvature, None, None


def gelu(input, approximate="none"):
    """x * Phi(x) (``approximate='tanh'``: torch's tanh approximation)."""
    if approximate not in ("none", "tanh"):
        raise RuntimeError("approximate argument must be either none or tanh.")
    x = _unary_input(input, "gelu")
    return Gelu.apply(x, approximate, None if x.grad_fn is None or x.is_cpu else Linear.wants_bias_sums(x))


class PhiloxDropout(InternalFunction):
    """x * (keep ? scale : 0) on CUDA in one kernel, the mask drawn by the
    counter-based Philox generator from (seed, offset) and never stored: the
    backward applies the same mask to the gradient (the same Function, so it
    is differentiable again)."""

    @staticmethod
    def forward(ctx, x, p, seed, offset, scale):
        ctx.mask = (p, seed, offset, scale)
        return layers.dropout(x, p, seed, offset, scale)

    @staticmethod
    def backward(ctx, grad):
        return PhiloxDropout.apply(grad, *ctx.mask), None, None, None, None


class Silu(InternalFunction):
    """x * sigmoid(x) (``Mish``: x * tanh(softplus(x))); the backward is
    torch's infinitely differentiable formula in Tensor ops, so the second
    derivative (nan and inf included) is autograd's through it, as torch's."""

    half_in_float32 = True

    @classmethod
    def forward(cls, ctx, x):
        xp = ctx.xp
        ctx.save_for_backward(x)
        gate = xp.reciprocal(1 + xp.exp(-x))
        if cls is Mish:
            gate = xp.tanh(xp.where(x > 20, x, xp.log1p(xp.exp(xp.minimum(x, 20)))))
        return (x * gate).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        sigmoid_x = x.sigmoid()
        return grad * sigmoid_x * (1.0 + x * (1.0 - sigmoid_x))


class Mish(Silu):
    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        tanh_softplus = softplus(x).tanh()
        return grad * (tanh_softplus + x * x.sigmoid() * (1.0 - tanh_softplus * tanh_softplus))


def silu(input):
    """x * sigmoid(x)."""
    return Silu.apply(_unary_input(input, "silu"))


def mish(input):
    """x * tanh(softplus(x))."""
    return Mish.apply(_unary_input(input, "mish"))


class Softplus(InternalFunction):
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, beta, threshold):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.beta, ctx.threshold = beta, threshold
        bx = x * beta
        return xp.where(bx > threshold, x, xp.log1p(xp.exp(xp.minimum(bx, threshold))) / beta).astype(
            x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return SoftplusBackward.apply(grad, x, ctx.beta, ctx.threshold), None, None


class SoftplusBackward(InternalFunction):
    """torch's softplus_backward (grad where beta x > threshold, else grad *
    sigmoid(beta x)) and its double backward (sigmoid's slope where beta x
    < threshold: 0 at the threshold itself, as torch's)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, grad, x, beta, threshold):
        xp = ctx.xp
        ctx.save_for_backward(grad, x)
        ctx.beta, ctx.threshold = beta, threshold
        bx = x * beta
        z = xp.exp(xp.minimum(bx, threshold))
        return xp.where(bx > threshold, grad, grad * z / (z + 1)).astype(grad.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad_grad):
        grad, x = ctx.saved_tensors
        beta, threshold = ctx.beta, ctx.threshold
        bx = x * beta
        s = bx.sigmoid()
        grad_x = grad_grad * grad * s * (1 - s) * (bx < threshold).to(x.dtype) * beta
        return SoftplusBackward.apply(grad_grad, x, beta, threshold), grad_x, None, None


@autocast_mode.float32
def softplus(input, beta=1.0, threshold=20.0):
    """log(1 + exp(beta * input)) / beta (linear above threshold)."""
    return Softplus.apply(_unary_input(input, "softplus"), beta, threshold)


# -- selection ----------------------------------------------------------------

class ClampTensor(InternalFunction):
    """clamp with tensor bounds (broadcast): min(max(x, low), high), nan in
    any operand propagating.  The gradient goes to x where low <= x <= high,
    to low where x < low < high, to high where x > high or high < low (torch's
    clamp_backward and clamp_backward_min_max)."""

    @staticmethod
    def forward(ctx, x, low, high):
        xp = ctx.xp
        ctx.save_for_backward(x, low, high)
        y = x if low is None else xp.maximum(x, low)
        return y if high is None else xp.minimum(y, high)

    @staticmethod
    def backward(ctx, grad):
        x, low, high = ctx.saved_tensors
        needs = ctx.needs_input_grad
        if low is not None and high is not None:
            inside = (x >= low) & (x <= high)
        else:
            inside = x >= low if low is not None else x <= high
        grad_low = grad_high = None
        if needs[1]:
            grad_low = where((x < low) & (low < high) if high is not None else x < low, grad, 0.0)
        if needs[2]:
            grad_high = where((x > high) | (high < low) if low is not None else x > high, grad, 0.0)
        return where(inside, grad, 0.0) if needs[0] else None, grad_low, grad_high


class Clamp(InternalFunction):
    @staticmethod
    def forward(ctx, x, low, high):
        xp = ctx.xp
        y = x if low is None else xp.maximum(x, low)
        y = y if high is None else xp.minimum(y, high)
        if ctx.needs_input_grad[0]:
            inside = (x >= low) if low is not None else ~xp.isnan(x)
            if high is not None:
                inside &= x <= high
            ctx.save_for_backward(inside)
        return y.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return where(inside, grad, 0.0), None, None


def clamp(input, min=None, max=None):
    """Limit input to [min, max]; either bound may be None, a number or a
    tensor.  The gradient passes where min <= input <= max."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if not all(b is None or isinstance(b, Tensor) for b in (min, max)):
            raise TypeError("clamp() received an invalid combination of arguments: min and max must both be "
                            "Tensors or both be Numbers")
        bounds = [b for b in (min, max) if b is not None]
        operands, dtype = promote(input, *bounds)
        low = operands[1] if min is not None else None
        high = operands[-1] if max is not None else None
        return rounded(ClampTensor.apply(operands[0], low, high), dtype)
    bounds = [b for b in (min, max) if b is not None]
    dtype = dtypes.result_type(input, *bounds)
    x = input if input.dtype == dtype else input.to(dtype)
    return Clamp.apply(x, None if min is None else scalar_of(dtype, min),
                       None if max is None else scalar_of(dtype, max))


clip = clamp


class Hardtanh(InternalFunction):
    """x clamped to [low, high]; unlike clamp's, the gradient passes only
    strictly inside (torch's hardtanh, relu6)."""

    @staticmethod
    def forward(ctx, x, low, high):
        xp = ctx.xp
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((x > low) & (x < high))
        return xp.minimum(xp.maximum(x, low), high).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return where(inside, grad, 0.0), None, None


def hardtanh(input, min_val=-1.0, max_val=1.0):
    """input clamped to [min_val, max_val]; gradient 1 strictly inside, else 0."""
    x = _unary_input(input, "hardtanh")
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    return Hardtanh.apply(x, scalar_of(x.dtype, min_val), scalar_of(x.dtype, max_val))


class Elu(InternalFunction):
    """scale * x for x > 0, scale * alpha * (exp(x * input_scale) - 1) else
    (elu, selu, celu); torch's elu_backward and elu_double_backward: the
    slope at 0 is the exponential side's, the curvature at 0 (and nan) is 0."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x, alpha, scale, input_scale):
        xp = ctx.xp
        ctx.save_for_backward(x)
        ctx.constants = (alpha, scale, input_scale)
        negative = xp.expm1(xp.minimum(x, 0) * input_scale) * (alpha * scale)
        return xp.where(x > 0, x * scale, negative).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return (EluBackward.apply(grad, x, *ctx.constants),) + (None,) * 3


class EluBackward(InternalFunction):
    half_in_float32 = True

    @staticmethod
    def forward(ctx, grad, x, alpha, scale, input_scale):
        xp = ctx.xp
        ctx.save_for_backward(grad, x)
        ctx.constants = (alpha, scale, input_scale)
        # torch's vector loop: nan takes the exponential side (a nan gradient)
        negative = grad * (input_scale * alpha * scale) * xp.exp(xp.where(x > 0, 0, x) * input_scale)
        return xp.where(x > 0, grad * scale, negative).astype(grad.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad_grad):
        grad, x = ctx.saved_tensors
        alpha, scale, input_scale = ctx.constants
        grad_x = EluBackward.apply(grad_grad * grad * input_scale, x, *ctx.constants) * (x < 0).to(x.dtype)
        return (EluBackward.apply(grad_grad, x, *ctx.constants), grad_x) + (None,) * 3


def elu(input, alpha=1.0, scale=1.0, input_scale=1.0):
    """scale * (x > 0 ? x : alpha * (exp(x * input_scale) - 1)): torch's elu family in one node."""
    return Elu.apply(_unary_input(input, "elu"), float(alpha), float(scale), float(input_scale))


class LeakyRelu(InternalFunction):
    """x for x > 0, slope * x else (nan takes the slope side, as torch's)."""

    @staticmethod
    def forward(ctx, x, slope, in_place):
        ctx.save_for_backward(x)
        ctx.slope, ctx.in_place = slope, in_place
        return ctx.xp.where(x > 0, x, x * x.dtype.type(slope)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        if ctx.in_place and ctx.slope < 0:
            raise RuntimeError("In-place leakyReLu backward calculation is triggered with a negative slope which is "
                               "not supported. This is caused by calling in-place forward function with a negative "
                               "slope, please call out-of-place version instead. File an issue at "
                               "https://github.com/pytorch/pytorch if you do require supporting in-place leakRelu "
                               "backward calculation with negative slope")
        return where(x > 0, grad, grad * ctx.slope), None, None


def leaky_relu(input, negative_slope=0.01, in_place=False):
    """x where x > 0, negative_slope * x elsewhere (``in_place``: torch's in-place form,
    whose backward refuses a negative slope)."""
    return LeakyRelu.apply(input, float(negative_slope), in_place)


class Prelu(InternalFunction):
    """x for x > 0, w x else, with w broadcast to x (torch's _prelu_kernel):
    the input's gradient at 0 is w's; the cross second derivatives only
    where x < 0 or nan, as torch's double backward has them."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return ctx.xp.where(x > 0, x, w * x).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        negative = ~(x >= 0)         # (nan counts: torch's double backward tests x < 0 || x != x)
        grad_x = where(x > 0, grad, where(negative, w, w.detach()) * grad)
        grad_w = where(x > 0, 0.0, where(negative, x, x.detach()) * grad)
        return grad_x, grad_w.sum_to_size(w.shape)


def prelu(input, weight):
    """x where x > 0, weight x elsewhere; ``weight`` already shaped to broadcast against input."""
    return Prelu.apply(input, weight)


class Hardsigmoid(InternalFunction):
    """clamp(x / 6 + 1/2, 0, 1); gradient 1/6 strictly inside (-3, 3)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        if ctx.needs_input_grad[0]:
            ctx.save_for_backward((x > -3) & (x < 3))
        return xp.clip(x / scalar_of(x.dtype, 6) + scalar_of(x.dtype, 0.5), 0, 1).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        inside, = ctx.saved_tensors
        return where(inside, grad / 6, 0.0)


def hardsigmoid(input):
    """clamp(input / 6 + 1/2, 0, 1)."""
    return Hardsigmoid.apply(_unary_input(input, "hardsigmoid"))


class Hardswish(InternalFunction):
    """x * hardsigmoid(x); gradient 0 for x <= -3, 1 for x >= 3, x / 3 + 1/2
    between (torch's)."""

    half_in_float32 = True

    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        ctx.save_for_backward(x)
        gate = xp.clip(x / scalar_of(x.dtype, 6) + scalar_of(x.dtype, 0.5), 0, 1)
        return (x * gate).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        # torch's hardswish_backward: 0 up to -3, x / 3 + 1/2 below 3, 1 from 3 (and at nan)
        return grad * where(x <= -3, 0.0, where(x < 3, x / 3 + 0.5, 1.0))


def hardswish(input):
    """input * hardsigmoid(input)."""
    return Hardswish.apply(_unary_input(input, "hardswish"))


class ClampMinValue(InternalFunction):
    """max(x, low) in value, the identity in gradient (torch's cosine_similarity
    clamps the norms in place under no_grad: their gradient stays the norm's)."""

    @staticmethod
    def forward(ctx, x, low):
        return ctx.xp.maximum(x, low).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def clamp_min_value(input, low):
    """max(input, low), with the gradient of input itself (see ClampMinValue)."""
    return ClampMinValue.apply(input, scalar_of(input.dtype, low))


def clamp_min(input, min):
    """max(input, min), elementwise (clamp with a lower bound only)."""
    if min is None:
        raise TypeError("clamp_min() received an invalid combination of arguments - got (min=NoneType, )")
    return clamp(input, min=min)


def clamp_max(input, max):
    """min(input, max), elementwise (clamp with an upper bound only)."""
    if max is None:
        raise TypeError("clamp_max() received an invalid combination of arguments - got (max=NoneType, )")
    return clamp(input, max=max)


class Maximum(InternalFunction):
    """max(a, b) elementwise, nan propagating; ties split the gradient evenly,
    and a nan sends the full gradient to both sides, as in torch."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        half = where(a == b, grad * 0.5, grad)
        return (where(a < b, 0.0, half) if ctx.needs_input_grad[0] else None,
                where(a > b, 0.0, half) if ctx.needs_input_grad[1] else None)


class Minimum(InternalFunction):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        half = where(a == b, grad * 0.5, grad)
        return (where(a > b, 0.0, half) if ctx.needs_input_grad[0] else None,
                where(a < b, 0.0, half) if ctx.needs_input_grad[1] else None)


def maximum(input, other):
    """The elementwise maximum (nan propagates)."""
    (a, b), dtype = _tensor_pair("maximum", input, other)
    return rounded(Maximum.apply(a, b), dtype)


def minimum(input, other):
    """The elementwise minimum (nan propagates)."""
    (a, b), dtype = _tensor_pair("minimum", input, other)
    return rounded(Minimum.apply(a, b), dtype)


class Fmax(InternalFunction):
    """max(a, b) ignoring nan; the gradient goes to a where a >= b or b is nan,
    else to b (no tie splitting: torch's)."""

    largest = True

    @classmethod
    def forward(cls, ctx, a, b):
        ctx.save_for_backward(a, b)
        return (ctx.xp.fmax if cls.largest else ctx.xp.fmin)(a, b)

    @classmethod
    def backward(cls, ctx, grad):
        a, b = ctx.saved_tensors
        to_a = ((a >= b) if cls.largest else (a <= b)) | b.isnan()
        return (where(to_a, grad, 0.0) if ctx.needs_input_grad[0] else None,
                where(to_a, 0.0, grad) if ctx.needs_input_grad[1] else None)


class Fmin(Fmax):
    largest = False


def _tensor_pair(name, input, other, floating=False):
    validation.tensor_argument(input, name, "input", 1)
    validation.tensor_argument(other, name, "other", 2)
    return promote(input, other, floating=floating)


def fmax(input, other):
    """The elementwise maximum, ignoring nan (nan only where both are)."""
    (a, b), dtype = _tensor_pair("fmax", input, other)
    return rounded(Fmax.apply(a, b), dtype)


def fmin(input, other):
    """The elementwise minimum, ignoring nan."""
    (a, b), dtype = _tensor_pair("fmin", input, other)
    return rounded(Fmin.apply(a, b), dtype)


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
                Where.apply(condition, grad, zero) if ctx.needs_input_grad[1] else None,
                Where.apply(condition, zero, grad) if ctx.needs_input_grad[2] else None)


def where(condition, input=None, other=None):
    """Elements of ``input`` where ``condition`` holds, else of ``other``
    (either may be a number); ``where(condition)`` gives the indices of the
    True elements (as nonzero(as_tuple=True))."""
    if input is None and other is None:
        return nonzero(condition, as_tuple=True)
    if not isinstance(condition, Tensor):
        like = input if isinstance(input, Tensor) else other
        condition = Tensor._make(like.xp.asarray(condition))
    validation.broadcast_shapes(*[t.shape for t in (condition, input, other) if isinstance(t, Tensor)])
    if condition.dtype != dtypes.bool_:
        raise RuntimeError(f"where expected condition to be a boolean tensor, but got a tensor "
                           f"with dtype {dtypes.dtype_name(condition.dtype)}")
    if not isinstance(input, Tensor) and not isinstance(other, Tensor):
        dtype = dtypes.result_type(input, other)
        input, other = dtype.type(input), dtype.type(other)
        return Where.apply(condition, input, other)
    (a, b), dtype = promote(input, other)
    if not isinstance(a, Tensor):
        a = dtype.type(a)
    if not isinstance(b, Tensor):
        b = dtype.type(b)
    return Where.apply(condition, a, b)


def masked_fill(input, mask, value):
    """input with ``value`` where ``mask`` (a bool tensor broadcastable to input) is True."""
    if not isinstance(mask, Tensor) or mask.dtype != dtypes.bool_:
        raise RuntimeError("masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{getattr(mask, 'dtype', type(mask).__name__)}")
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"masked_fill_ only supports a 0-dimensional value tensor, "
                               f"but got tensor with {value.ndim} dimension(s).")
        validation.differentiable_dtype(is_grad_enabled() and value.requires_grad, input.dtype)
        value = value.to(input.dtype)
    else:
        value = input.dtype.type(validation.number_for(input.dtype, value))
    validation.broadcast_shapes(mask.shape, input.shape)      # out of place, both broadcast (torch's)
    return Where.apply(mask, value, input)


masked_fill.reads_value_first = True     # in place, torch checks no overlap of the value with the input


class Xlogy(InternalFunction):
    """x * log(y), 0 where x is 0 (nan where y is nan), as torch.xlogy; its
    gradients are torch's: xlogy(x != 0, y) to x and x / y to y."""

    @staticmethod
    def forward(ctx, x, y):
        xp = ctx.xp
        ctx.save_for_backward(x, y)
        out = xp.where(x == 0, 0, x * xp.log(y))
        return xp.where(xp.isnan(y), xp.nan, out).astype(xp.result_type(x, y), copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        needs = ctx.needs_input_grad
        return (grad * xlogy((x != 0).to(grad.dtype), y) if needs[0] else None,
                grad * x / y if needs[1] else None)


def xlogy(input, other):
    """input * log(other), 0 where input is 0 (torch.xlogy; used by kl_div)."""
    (x, y), dtype = promote(input, other, floating=True)
    return rounded(Xlogy.apply(x, y), dtype)


class Addcdiv(InternalFunction):
    """input + value * t1 / t2 (``Addcmul``: * t2) in one node, torch's
    gradients: value / t2 to t1, -value t1 / t2^2 to t2 (value t2, value t1)."""

    multiply = False

    @classmethod
    def forward(cls, ctx, x, t1, t2, value):
        ctx.save_for_backward(t1, t2)
        ctx.value = value
        return x + value * (t1 * t2 if cls.multiply else t1 / t2)

    @classmethod
    def backward(cls, ctx, grad):
        t1, t2 = ctx.saved_tensors
        needs, value = ctx.needs_input_grad, ctx.value
        if cls.multiply:
            return (grad if needs[0] else None, grad * (t2 * value) if needs[1] else None,
                    grad * (t1 * value) if needs[2] else None, None)
        return (grad if needs[0] else None, grad * (value / t2) if needs[1] else None,
                -grad * (value * t1 / (t2 * t2)) if needs[2] else None, None)


class Addcmul(Addcdiv):
    multiply = True


def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2 (broadcast, promoted)."""
    (x, t1, t2), dtype = promote(input, tensor1, tensor2)
    if not dtypes.is_floating_point(dtype):
        raise RuntimeError("Integer division with addcdiv is no longer supported, and in a future release addcdiv "
                           "will perform a true division of tensor1 and tensor2.")
    return rounded(Addcdiv.apply(x, t1, t2, scalar_of(dtype, value)), dtype)


def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2 (broadcast, promoted)."""
    (x, t1, t2), dtype = promote(input, tensor1, tensor2)
    return rounded(Addcmul.apply(x, t1, t2, scalar_of(dtype, value)), dtype)


class Lerp(InternalFunction):
    """input + weight (end - input), computed as torch does: from the nearer
    end (end - (end - input)(1 - weight) for weight >= 1/2), so inf and nan
    land where torch's do; the gradient is the plain formula's."""

    @staticmethod
    def forward(ctx, start, end, weight):
        xp = ctx.xp
        ctx.save_for_backward(start, end, weight)
        diff = end - start
        low = start + weight * diff
        high = end - diff * (1 - weight)
        if isinstance(weight, (float, numpy.floating)):
            return low if builtins.abs(weight) < 0.5 else high
        return xp.where(xp.abs(weight) < 0.5, low, high).astype(diff.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        start, end, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        return (grad * (1 - weight) if needs[0] else None, grad * weight if needs[1] else None,
                grad * (end - start) if needs[2] else None)


def lerp(input, end, weight):
    """input + weight * (end - input) (weight a number or a tensor; input and end of one dtype)."""
    validation.tensor_argument(end, "lerp", "end", 2)
    if end.dtype != input.dtype:
        raise RuntimeError(f"expected dtype {dtypes.dtype_name(input.dtype)} for `end` but got dtype "
                           f"{dtypes.dtype_name(end.dtype)}")
    validation.floating_only("lerp_kernel_scalar" if not isinstance(weight, Tensor) else "lerp_kernel_tensor",
                             input.dtype)
    if isinstance(weight, Tensor):
        if weight.dtype != input.dtype:
            weight = weight.to(input.dtype)
        validation.broadcast_shapes(input.shape, end.shape, weight.shape)
    else:
        validation.broadcast_shapes(input.shape, end.shape)
        weight = scalar_of(input.dtype, weight)
    return rounded(Lerp.apply(input, end, weight), input.dtype)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """nan, +inf and -inf replaced (by 0, the dtype's largest and its lowest by default)."""
    if not dtypes.is_floating_point(input.dtype):
        return clone(input)
    info = dtypes.finfo(input.dtype)
    out = where(input.isnan(), nan, input)
    out = where(out == math.inf, info.max if posinf is None else posinf, out)
    return where(out == -math.inf, info.min if neginf is None else neginf, out)


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

    @staticmethod
    def constant_gradient(ctx, value):
        return 0, value           # engine.known_upstream (cast to the source's dtype by the engine)


class Clone(InternalFunction):
    @staticmethod
    def forward(ctx, x):
        return ctx.xp.array(x, copy=True, order="C")

    @staticmethod
    def backward(ctx, grad):
        return grad


def clone(input, memory_format=None):
    """A copy with its own memory; gradients flow back to the original."""
    return Clone.apply(input)


class CopyFrom(InternalFunction):
    """The value ``dst.copy_(src)`` writes: src broadcast to dst's shape and dtype."""

    @staticmethod
    def forward(ctx, dst, src):
        out = ctx.xp.empty_like(dst)
        out[...] = src
        return out

    @staticmethod
    def backward(ctx, grad):
        # zeros to what was overwritten, as torch's (its graph still runs: a saved tensor changed since is caught)
        return (zeros_of(grad) if ctx.needs_input_grad[0] else None), grad


def copy_from(dst, src):
    """What ``dst.copy_(src)`` writes (src cast, moved and broadcast to dst)."""
    if isinstance(src, Tensor) or backend.is_array(src):
        validation.expandable(src.shape, dst.shape)
    if isinstance(src, Tensor):
        if src.device != dst.device:
            src = src.to(dst.device)
        if src.dtype != dst.dtype:
            src = src.to(dst.dtype)
    elif backend.is_array(src):
        src = Tensor._make(backend.to_device(src, dst.device))
    else:
        src = dst.dtype.type(validation.number_for(dst.dtype, src))
    return CopyFrom.apply(dst, src)


# -- comparisons and logic: no gradient --------------------------------------------

def _no_grad_binary(compute, a, b):
    xp = (a if isinstance(a, Tensor) else b).xp
    x = a.array if isinstance(a, Tensor) else a
    y = b.array if isinstance(b, Tensor) else b
    return Tensor._make(xp.asarray(compute(xp, x, y)))


_COMPARABLE = (Tensor, bool, int, float, numpy.generic)


def _compare(name, a, b):
    if not isinstance(b, _COMPARABLE) and not backend.is_array(b):
        return NotImplemented
    (a, b), _ = promote(a, b)
    return _no_grad_binary(lambda xp, x, y: getattr(xp, name)(x, y), a, b)


def eq(input, other):
    """input == other, elementwise (a bool tensor)."""
    return _compare("equal", input, other)


def ne(input, other):
    """input != other, elementwise (a bool tensor)."""
    return _compare("not_equal", input, other)


def lt(input, other):
    """input < other, elementwise (a bool tensor)."""
    return _compare("less", input, other)


def le(input, other):
    """input <= other, elementwise (a bool tensor)."""
    return _compare("less_equal", input, other)


def gt(input, other):
    """input > other, elementwise (a bool tensor)."""
    return _compare("greater", input, other)


def ge(input, other):
    """input >= other, elementwise (a bool tensor)."""
    return _compare("greater_equal", input, other)


greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


_KERNELS = {"left_shift": "lshift_cpu", "right_shift": "rshift_cpu"}


def _bitwise(name, a, b):
    (a, b), dtype = promote(a, b)
    if dtypes.is_floating_point(dtype):
        raise validation.not_implemented(_KERNELS.get(name, f"{name}_cpu"), dtype)
    return _no_grad_binary(lambda xp, x, y: getattr(xp, name)(x, y), a, b)


def bitwise_and(input, other):
    """input & other for integer and bool tensors."""
    return _bitwise("bitwise_and", input, other)


def bitwise_or(input, other):
    """input | other for integer and bool tensors."""
    return _bitwise("bitwise_or", input, other)


def bitwise_xor(input, other):
    """input ^ other for integer and bool tensors."""
    return _bitwise("bitwise_xor", input, other)


def bitwise_left_shift(input, other):
    """input << other for integer tensors."""
    return _bitwise("left_shift", input, other)


def bitwise_right_shift(input, other):
    """input >> other for integer tensors."""
    return _bitwise("right_shift", input, other)


def bitwise_not(input):
    """~input: logical not for bool tensors, bitwise not for integers."""
    if dtypes.is_floating_point(input.dtype):
        raise validation.not_implemented("bitwise_not_cpu", input.dtype)
    return Tensor._make(input.xp.logical_not(input.array) if input.dtype == dtypes.bool_
                        else input.xp.invert(input.array))


def logical_not(input):
    """not input, elementwise (a bool tensor)."""
    return Tensor._make(input.xp.logical_not(input.array))


def _logical(name, a, b):
    (a, b), _ = _tensor_pair(name, a, b)
    return _no_grad_binary(lambda xp, x, y: getattr(xp, name)(x, y), a, b)


def logical_and(input, other):
    """input and other, elementwise (a bool tensor)."""
    return _logical("logical_and", input, other)


def logical_or(input, other):
    """input or other, elementwise (a bool tensor)."""
    return _logical("logical_or", input, other)


def logical_xor(input, other):
    """input xor other, elementwise (a bool tensor)."""
    return _logical("logical_xor", input, other)


def isnan(input):
    """Where input is nan (a bool tensor)."""
    return Tensor._make(input.xp.isnan(input.array))


def isinf(input):
    """Where input is +inf or -inf (a bool tensor)."""
    return Tensor._make(input.xp.isinf(input.array))


def isfinite(input):
    """Where input is neither nan nor infinite (a bool tensor)."""
    return Tensor._make(input.xp.isfinite(input.array))


def isposinf(input):
    """Where input is +inf (a bool tensor)."""
    return Tensor._make(input.xp.isposinf(input.array))


def isneginf(input):
    """Where input is -inf (a bool tensor)."""
    return Tensor._make(input.xp.isneginf(input.array))


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol * |other|, elementwise (a bool tensor);
    infinities are close only to themselves, nan to nan only with equal_nan.
    Both tensors of one dtype, as torch requires."""
    validation.tensor_argument(input, "isclose", "input", 1)
    validation.tensor_argument(other, "isclose", "other", 2)
    if input.dtype != other.dtype:
        raise RuntimeError(f"{validation.type_name(input.dtype)} did not match {validation.type_name(other.dtype)}")
    if rtol < 0:
        raise RuntimeError(f"rtol must be greater than or equal to zero, but got {rtol}")
    if atol < 0:
        raise RuntimeError(f"atol must be greater than or equal to zero, but got {atol}")
    validation.broadcast_shapes(input.shape, other.shape)
    xp = input.xp
    x, y = input.array, backend.to_device(other.array, input.device)
    close = x == y
    if equal_nan and dtypes.is_floating_point(input.dtype):
        close |= xp.isnan(x) & xp.isnan(y)
    if rtol == 0 and atol == 0:
        return Tensor._make(close)
    acc = dtypes.accumulate_dtype(input.dtype) if dtypes.is_floating_point(input.dtype) else dtypes.float64
    x, y = x.astype(acc), y.astype(acc)
    error = xp.abs(x - y)
    close |= xp.isfinite(error) & (error <= atol + xp.abs(rtol * y))
    return Tensor._make(close)


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """True when every element is close (isclose), as a Python bool."""
    return builtins.bool(isclose(input, other, rtol, atol, equal_nan).array.all())


def equal(input, other):
    """True when both have the same shape and elements, as a Python bool."""
    validation.tensor_argument(input, "equal", "input", 1)
    validation.tensor_argument(other, "equal", "other", 2)
    return input.shape == other.shape and builtins.bool((input.array == backend.to_device(
        other.array, input.device)).all())


def nonzero(input, *, as_tuple=False):
    """Indices of the non-zero elements: an (n, ndim) int64 tensor, or a tuple
    of ndim 1-D tensors with ``as_tuple=True``."""
    xp = input.xp
    if input.ndim == 0:      # torch: (n, 0) indices, or as a tuple the positions in a 1-element vector
        n = int(bool(input.array != 0))
        if as_tuple:
            return (Tensor._make(xp.zeros(n, dtype=dtypes.int64)),)
        return Tensor._make(xp.zeros((n, 0), dtype=dtypes.int64))
    index = [i.astype(dtypes.int64, copy=False) for i in xp.nonzero(input.array)]
    if as_tuple:
        return tuple(Tensor._make(i) for i in index)
    return Tensor._make(xp.stack(index, axis=1))


def argwhere(input):
    """The indices of the non-zero elements, (n, ndim) int64 (as nonzero)."""
    return nonzero(input)
