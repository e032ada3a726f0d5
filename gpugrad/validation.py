"""Argument errors as torch raises them: the one layer that turns a bad
argument into torch's exception type and message.

Ops call these before they touch arrays, so an error names the problem in
torch's words rather than surfacing as NumPy's (a ``ValueError`` of shapes
that do not broadcast, an ``AxisError``, an ``IndexError`` from deep inside a
forward).  Shapes: :func:`broadcast_shapes`; types of arguments:
:func:`tensor_argument`, :func:`number_argument`; dtypes a kernel does not
take: :func:`not_implemented`; sizes: :func:`non_negative`.  (Dims are read
by ``dims.wrap_dim``.)  Imports only the layers below tensors.
"""

import math
import numbers

import numpy

from gpugrad import dtypes

# torch's C++ scalar type names, as its "not implemented for 'Double'" errors print them
_TYPE_NAMES = {dtypes.float64: "Double", dtypes.float32: "Float", dtypes.float16: "Half",
               dtypes.bfloat16: "BFloat16", dtypes.int64: "Long", dtypes.int32: "Int", dtypes.int16: "Short",
               dtypes.int8: "Char", dtypes.uint8: "Byte", dtypes.bool_: "Bool"}


def type_name(dtype):
    """torch's C++ name of a dtype ('Double', 'Long', 'Bool', ...)."""
    return _TYPE_NAMES.get(dtype, str(dtype))


def broadcast_shapes(*shapes):
    """The broadcast shape of ``shapes``; torch's RuntimeError naming the two
    sizes and the dim where they clash otherwise."""
    out = ()
    for index, shape in enumerate(shapes):
        shape = tuple(shape)
        if index == 0:
            out = shape
            continue
        if shape == out:
            continue
        ndim = max(len(out), len(shape))
        a = (1,) * (ndim - len(out)) + out
        b = (1,) * (ndim - len(shape)) + shape
        merged = []
        for d, (m, n) in enumerate(zip(a, b)):
            if m != n and m != 1 and n != 1:
                raise RuntimeError(f"The size of tensor a ({m}) must match the size of tensor b ({n}) at "
                                   f"non-singleton dimension {d}")
            merged.append(n if m == 1 else m)
        out = tuple(merged)
    return out


def expandable(shape, target, what="tensor"):
    """``shape`` broadcasts to ``target`` without changing it (an in-place
    op's other operand, copy_'s source); torch's RuntimeError otherwise."""
    shape, target = tuple(shape), tuple(target)
    if shape == target:
        return
    ok = len(shape) <= len(target) and all(
        n == 1 or n == m for n, m in zip(shape[::-1], target[::-1]))
    if not ok:
        if len(shape) > len(target) or any(n != 1 and m != 1 and n != m
                                           for n, m in zip(shape[::-1], target[::-1])):
            broadcast_shapes(target, shape)
        raise RuntimeError(f"output with shape {list(target)} doesn't match the broadcast shape "
                           f"{list(broadcast_shapes(target, shape))}")


def tensor_argument(value, function, name, position):
    """TypeError (torch's argument parser) unless ``value`` is a Tensor."""
    if not hasattr(value, "array") or not hasattr(value, "grad_fn"):
        raise TypeError(f"{function}(): argument '{name}' (position {position}) must be Tensor, not "
                        f"{type(value).__name__}")
    return value


def number_argument(value, function, name):
    """TypeError unless ``value`` is a Python or NumPy number (bools count)."""
    if not isinstance(value, (numbers.Number, numpy.generic)):
        raise TypeError(f"{function}(): argument '{name}' must be Number, not {type(value).__name__}")
    return value


def int_argument(value, function, name, position=None):
    """TypeError unless ``value`` is an int (not a bool, not a float): torch's parser for int arguments."""
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)):
        where = f" (position {position})" if position is not None else ""
        raise TypeError(f"{function}(): argument '{name}'{where} must be int, not {type(value).__name__}")
    return int(value)


def not_implemented(kernel, dtype):
    """torch's NotImplementedError for a kernel without a loop for ``dtype``."""
    return NotImplementedError(f"\"{kernel}\" not implemented for '{type_name(dtype)}'")


def floating_only(kernel, dtype):
    """NotImplementedError unless ``dtype`` is floating point (torch's float-only kernels)."""
    if not dtypes.is_floating_point(dtype):
        raise not_implemented(kernel, dtype)


def differentiable_dtype(recording, dtype):
    """torch's error for an op asked (``dtype=``) for an integer result of an input that requires grad."""
    if recording and not dtypes.is_floating_point(dtype):
        raise RuntimeError(f"Autograd not support dtype: {type_name(dtype)}")


C_TYPES = {dtypes.int64: "int64_t", dtypes.int32: "int", dtypes.int16: "short", dtypes.int8: "signed char",
            dtypes.uint8: "unsigned char"}


def number_for(dtype, value):
    """A Python number for a tensor of ``dtype`` (fill, full, masked_fill):
    an integer dtype refuses nan, inf and values past its range (torch's
    RuntimeError; an unsigned type also takes the negatives of its width, wrapping)."""
    if dtype in C_TYPES and not isinstance(value, bool):
        info = numpy.iinfo(dtype)
        low = -(int(info.max) + 1) // 2 if info.min == 0 else int(info.min)
        if not math.isfinite(value) or not low <= value <= int(info.max):
            raise RuntimeError(f"value cannot be converted to type {C_TYPES[dtype]} without overflow")
        return int(value)
    return value


def non_negative(shape, what="tensor"):
    """RuntimeError for a negative size (torch's message)."""
    if any(n < 0 for n in shape):
        raise RuntimeError(f"Trying to create {what} with negative dimension {min(shape)}: {list(shape)}")
    return tuple(shape)


def finite_number(value, name, function):
    """RuntimeError unless ``value`` is finite (sampling parameters)."""
    if not math.isfinite(value):
        raise RuntimeError(f"{function} expects {name} to be finite, but got {name}={value}")
    return value
