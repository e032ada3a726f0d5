"""dtypes and torch's type-promotion rules.

gpugrad's dtypes are NumPy dtypes (``gpugrad.float32 == numpy.float32``), so
arrays never need converting between two dtype systems.  What differs from
NumPy is promotion, which follows torch: a Python scalar or a zero-dim tensor
does not widen a dimensioned tensor of the same category
(``float32_tensor * 2.0`` stays float32), and an integer tensor meeting a float
becomes the default float dtype, not float64.
"""

import functools

import numpy

float16 = half = numpy.dtype("float16")
float32 = numpy.dtype("float32")
float64 = double = numpy.dtype("float64")
int8 = numpy.dtype("int8")
int16 = short = numpy.dtype("int16")
int32 = numpy.dtype("int32")
int64 = long = numpy.dtype("int64")
uint8 = numpy.dtype("uint8")
bool_ = numpy.dtype("bool")

FLOATING = (float16, float32, float64)
SUPPORTED = (float16, float32, float64, int8, int16, int32, int64, uint8, bool_)

_default_float = float32


def get_default_dtype():
    """The dtype of float tensors made from Python numbers (float32 unless changed)."""
    return _default_float


def set_default_dtype(dtype):
    global _default_float
    dtype = as_dtype(dtype)
    if dtype not in FLOATING:
        raise TypeError(f"only floating-point types are supported as the default type, got {dtype}")
    _default_float = dtype


def as_dtype(dtype):
    """Normalise a dtype-like (numpy dtype, type, string) to a supported numpy dtype."""
    if dtype is None:
        return None
    try:
        dtype = numpy.dtype(dtype)
    except TypeError:
        raise TypeError(f"{dtype!r} is not a dtype") from None
    if dtype not in SUPPORTED:
        raise TypeError(f"unsupported dtype {dtype}: gpugrad supports "
                        + ", ".join(str(d) for d in SUPPORTED))
    return dtype


def is_floating(dtype):
    return dtype.kind == "f"


def category(dtype):
    """0 for bool, 1 for integers, 2 for floating point."""
    return {"b": 0, "i": 1, "u": 1, "f": 2}[dtype.kind]


def _scalar_category(value):
    if isinstance(value, (bool, numpy.bool_)):
        return 0
    if isinstance(value, (int, numpy.integer)):
        return 1
    if isinstance(value, (float, numpy.floating)):
        return 2
    raise TypeError(f"unsupported operand type {type(value).__name__}")


def default_dtype_for_category(cat):
    return (bool_, int64, _default_float)[cat]


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
            scalar_cat = max(scalar_cat, _scalar_category(op))
        elif op.ndim:
            dims.append(dtype)
        else:
            zeros.append(dtype)
    best = max([category(d) for d in dims + zeros] + [scalar_cat])
    for tier in (dims, zeros):
        candidates = [d for d in tier if category(d) == best]
        if candidates:
            return functools.reduce(numpy.promote_types, candidates)
    return default_dtype_for_category(best)


def dtype_name(dtype):
    """'float32' for numpy.float32, as torch prints it after 'torch.'."""
    return "bool" if dtype == bool_ else dtype.name
