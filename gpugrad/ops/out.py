"""``out=`` on the functions of the gpugrad namespace (torch.add(a, b,
out=c)): the result is computed as without it, then written into ``out``
with torch's rules: the result's dtype must cast to out's without leaving
its kind (bool, integer, floating), out is resized (with torch's warning
when it held elements) where the shapes differ, and no argument may require
grad while grad mode is on.  Functions returning (values, indices) take a
pair of outs."""

import functools
import warnings

from gpugrad import validation
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.tensor import Tensor

# the namespace functions that take out= (gpugrad/__init__.py wraps them)
NAMES = (
    "abs", "absolute", "add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "floor_divide",
    "remainder", "fmod", "pow", "neg", "negative", "sign", "floor", "ceil", "round", "trunc", "fix", "frac", "exp",
    "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "square", "reciprocal", "sin", "cos", "tan",
    "atan", "arctan", "atan2", "arctan2", "sinh", "cosh", "tanh", "sigmoid", "erf", "clamp", "clip", "clamp_min",
    "clamp_max", "maximum", "minimum", "fmax", "fmin", "lerp", "nan_to_num", "where", "eq", "ne", "lt", "le", "gt",
    "ge", "greater", "greater_equal", "less", "less_equal", "not_equal", "logical_and", "logical_or", "logical_xor",
    "logical_not", "bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not", "isclose",
    "sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin", "any", "all", "std", "var", "norm",
    "logsumexp", "cumsum", "cumprod", "sort", "argsort", "topk", "kthvalue", "median",
    "matmul", "mm", "bmm", "mv", "dot", "outer", "ger", "inner", "addmm", "einsum",
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "gather", "index_select", "masked_select",
    "take_along_dim", "tril", "triu", "diag", "flip", "roll", "index_add", "scatter", "scatter_add",
    "scatter_reduce", "bucketize", "searchsorted", "histc", "nonzero",
)

_KIND = {"b": 0, "u": 1, "i": 1, "f": 2, "V": 2}     # 'V': ml_dtypes' bfloat16


def _requires_grad(value):
    if isinstance(value, Tensor):
        return value.requires_grad
    if isinstance(value, (list, tuple)):
        return any(_requires_grad(v) for v in value)
    return False


def write(out, result, name):
    """Write ``result`` into ``out`` (torch's out= rules); returns out."""
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): argument 'out' must be Tensor, not {type(out).__name__}")
    if _KIND[result.dtype.kind] > _KIND[out.dtype.kind]:
        raise RuntimeError(f"result type {validation.type_name(result.dtype)} can't be cast to the desired output "
                           f"type {validation.type_name(out.dtype)}")
    if out.device != result.device:
        raise RuntimeError(f"Expected out tensor to have device {result.device}, but got {out.device} instead")
    value = result.array.astype(out.dtype, copy=False)
    if tuple(out.shape) != tuple(result.shape):
        if out.numel():
            warnings.warn(f"An output with one or more elements was resized since it had shape {list(out.shape)}, "
                          f"which does not match the required output shape {list(result.shape)}. This behavior is "
                          "deprecated, and in a future PyTorch release outputs will not be resized unless they have "
                          "zero elements. You can explicitly reuse an out tensor t by resizing it, inplace, to zero "
                          "elements with t.resize_(0).", UserWarning, stacklevel=3)
        out.data = Tensor._make(value.copy())
    else:
        out.array[...] = value
    out.increment_version()
    return out


def out_variant(function, name=None):
    """``function`` with torch's ``out=`` keyword."""
    name = name or function.__name__

    @functools.wraps(function)
    def with_out(*args, out=None, **kwargs):
        if out is None:
            return function(*args, **kwargs)
        if is_grad_enabled() and (_requires_grad(args) or _requires_grad(tuple(kwargs.values()))
                                  or _requires_grad(out)):
            raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic "
                               "differentiation, but one of the arguments requires grad.")
        result = function(*args, **kwargs)
        if isinstance(result, tuple):
            if not isinstance(out, (tuple, list)) or len(out) != len(result):
                raise TypeError(f"{name}(): argument 'out' must be a tuple of {len(result)} Tensors")
            written = [write(o, r, name) for o, r in zip(out, result)]
            return type(result)(*written) if hasattr(result, "_fields") else tuple(written)
        return write(out, result, name)
    return with_out
