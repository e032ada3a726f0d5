"""Operand promotion shared by the op families (torch.result_type's rules).

Tensors are cast with a differentiable ``to``; Python scalars become NumPy
scalars of the result dtype, so they never widen a tensor (torch's weak
scalars).  With a float16 or bfloat16 result a scalar is kept in float32 and
the op computes in float32, rounding once, as torch does.
"""

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.tensor import Tensor

_NUMBERS = (int, float, numpy.number)
_LOW_PRECISION = (dtypes.float16, dtypes.bfloat16)


def as_operand(value, like):
    """A Tensor or a Python/NumPy scalar; arrays become tensors on ``like``'s device."""
    if isinstance(value, Tensor) or isinstance(value, (bool, int, float, numpy.generic)):
        return value
    if backend.is_array(value):
        return Tensor._make(backend.to_device(value, like.device))
    raise TypeError(f"unsupported operand type for a tensor op: {type(value).__name__}")


def scalar_of(dtype, value):
    """A Python number as a NumPy scalar an op on ``dtype`` data takes without
    widening: of ``dtype`` itself, float32 for the half types."""
    if dtype in _LOW_PRECISION:
        return numpy.float32(value)
    return dtype.type(value)


def promote(*operands, floating=False):
    """Cast operands to their torch result dtype; returns (operands, dtype).
    ``floating=True``: an integer result becomes the default float dtype (true division).
    Tensors whose shapes do not broadcast raise torch's RuntimeError."""
    if len(operands) == 2:       # fast paths: same-dtype tensors, float tensor with a number
        a, b = operands
        if type(a) is Tensor:
            dtype = a.array.dtype
            if dtype.kind == "f" or not floating:
                if type(b) is Tensor and (b.array.dtype is dtype or b.array.dtype == dtype):
                    if a.array.shape != b.array.shape:
                        validation.broadcast_shapes(a.array.shape, b.array.shape)
                    return operands, dtype
                if isinstance(b, _NUMBERS) and dtype.kind == "f" and not isinstance(b, bool):
                    return (a, scalar_of(dtype, b)), dtype
        elif type(b) is Tensor and isinstance(a, _NUMBERS) and not isinstance(a, bool):
            dtype = b.array.dtype
            if dtype.kind == "f":
                return (scalar_of(dtype, a), b), dtype
    like = next(o for o in operands if isinstance(o, Tensor))
    operands = [as_operand(o, like) for o in operands]
    validation.broadcast_shapes(*[o.shape for o in operands if isinstance(o, Tensor)])
    dtype = dtypes.result_type(*operands)
    if floating and not dtypes.is_floating_point(dtype):
        dtype = dtypes.get_default_dtype()
    out = []
    for o in operands:
        if isinstance(o, Tensor):
            out.append(o if o.dtype == dtype else o.to(dtype))
        else:
            out.append(scalar_of(dtype, o))
    return out, dtype


def floating(x):
    """``x`` itself when it is floating point, else cast to the default float
    dtype (what torch's unary float ops compute in)."""
    return x if dtypes.is_floating_point(x.array.dtype) else x.to(dtypes.get_default_dtype())


def rounded(out, dtype):
    """The op's result in ``dtype`` (a half-type op computed in float32 with a
    float32 scalar rounds here, once)."""
    result = out.array.dtype
    return out if result is dtype or result == dtype else out.to(dtype)   # `is`: NumPy's dtypes are singletons
