"""dtypes and torch's type-promotion rules.

gpugrad's dtypes are NumPy dtypes (``gpugrad.float32 == numpy.float32``), so
arrays never need converting between two dtype systems; ``bfloat16`` is
``ml_dtypes.bfloat16``, which NumPy and CuPy both understand.  What differs
from NumPy is promotion, which follows torch: a Python scalar or a zero-dim
tensor does not widen a dimensioned tensor of the same category
(``float32_tensor * 2.0`` stays float32), an integer tensor meeting a float
becomes the default float dtype, and float16 with bfloat16 gives float32.
"""

import functools

import ml_dtypes
import numpy

float16 = half = numpy.dtype("float16")
bfloat16 = numpy.dtype(ml_dtypes.bfloat16)
float32 = numpy.dtype("float32")
float64 = double = numpy.dtype("float64")
int8 = numpy.dtype("int8")
int16 = short = numpy.dtype("int16")
int32 = numpy.dtype("int32")
int64 = long = numpy.dtype("int64")
uint8 = numpy.dtype("uint8")
bool_ = numpy.dtype("bool")

FLOATING = (float16, bfloat16, float32, float64)
SUPPORTED = FLOATING + (int8, int16, int32, int64, uint8, bool_)
FLOATING_SET = frozenset(FLOATING)
_LOW_PRECISION = frozenset((float16, bfloat16))

_default_float = float32


def is_floating_point(dtype):
    """True for float16, bfloat16, float32 and float64 (bfloat16's NumPy kind is 'V')."""
    return dtype in FLOATING_SET


def accumulate_dtype(dtype):
    """The dtype reductions and the fused kernels accumulate in: float32 for
    float16 and bfloat16 (as torch does), the dtype itself otherwise."""
    return float32 if dtype in _LOW_PRECISION else dtype


def get_default_dtype():
    """The dtype of float tensors made from Python numbers (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype):
    """Set the dtype of float tensors made from Python numbers (a floating dtype)."""
    global _default_float
    dtype = as_dtype(dtype)
    if not is_floating_point(dtype):
        raise TypeError(f"only floating-point types are supported as the default type, got {dtype}")
    _default_float = dtype


_NAMES = {"float": float32, "double": float64, "half": float16, "long": int64, "int": int32,
          "short": int16, "bool": bool_, "bfloat16": bfloat16}


def as_dtype(dtype):
    """Normalise a dtype-like (numpy dtype, type, string such as 'float32' or
    'bfloat16') to a supported dtype; None stays None.  TypeError otherwise."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        dtype = _NAMES.get(dtype.removeprefix("torch.").removeprefix("gpugrad."), dtype)
    try:
        dtype = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"{dtype!r} is not a dtype") from None
    if dtype not in SUPPORTED:
        raise TypeError(f"unsupported dtype {dtype}: gpugrad supports "
                        + ", ".join(str(d) for d in SUPPORTED))
    return dtype


def category(dtype):
    """0 for bool, 1 for integers, 2 for floating point."""
    if dtype in FLOATING_SET:
        return 2
    return 0 if dtype == bool_ else 1


def scalar_category(value):
    """category() of a Python or NumPy scalar; TypeError for anything else."""
    if isinstance(value, (bool, numpy.bool_)):
        return 0
    if isinstance(value, (int, numpy.integer)):
        return 1
    if isinstance(value, (float, numpy.floating)) or type(value) is bfloat16.type:
        return 2
    raise TypeError(f"unsupported operand type {type(value).__name__}")


def default_dtype_for_category(cat):
    return (bool_, int64, _default_float)[cat]


def promote_types(a, b):
    """torch.promote_types: NumPy's rules, except that float16 with bfloat16
    gives float32 and bfloat16 wins over every integer."""
    if a == b:
        return a
    if a == bfloat16 or b == bfloat16:
        other = b if a == bfloat16 else a
        if other in FLOATING_SET:
            return float32 if other == float16 else other
        return bfloat16
    return numpy.promote_types(a, b)


def result_type(*operands):
    """torch.result_type over Tensors and Python scalars.

    Three tiers: dimensioned tensors, then zero-dim tensors, then Python
    scalars.  The highest category present wins; within it, the first tier
    that has an operand of that category decides the width.
    """
    dims, zeros, scalar_cat = [], [], -1
    for op in operands:
        dtype = getattr(op, "dtype", None)
        if dtype is None or isinstance(op, numpy.generic):
            scalar_cat = max(scalar_cat, scalar_category(op))
        elif op.ndim:
            dims.append(dtype)
        else:
            zeros.append(dtype)
    best = max([category(d) for d in dims + zeros] + [scalar_cat])
    for tier in (dims, zeros):
        candidates = [d for d in tier if category(d) == best]
        if candidates:
            return functools.reduce(promote_types, candidates)
    return default_dtype_for_category(best)


def dtype_name(dtype):
    """'float32' for numpy.float32, as torch prints it after 'torch.'."""
    return "bool" if dtype == bool_ else dtype.name


def finfo(dtype):
    """Machine limits of a floating dtype (``eps``, ``max``, ``min``, ``tiny``), bfloat16 included."""
    return ml_dtypes.finfo(as_dtype(dtype))


def iinfo(dtype):
    """Machine limits of an integer dtype."""
    return numpy.iinfo(as_dtype(dtype))
