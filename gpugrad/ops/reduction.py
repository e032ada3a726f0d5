"""Reductions and scans: sum, mean, prod, max/min, var/std, norm, cumsum,
cumprod, sort and topk.  (log-sum-exp, softmax and log_softmax are the fused
row reductions of ``ops/fused/``.)

Every reduction takes ``dim`` (None, an int or a tuple) and ``keepdim``
(``keepdims=`` is accepted as numpy's spelling).  Half-precision inputs
accumulate in float32, as torch does.
"""

import builtins
import math

from gpugrad import backend, dtypes, return_types, validation
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad
from gpugrad.backend import array_prod, array_sum
from gpugrad.cuda import layers
from gpugrad.dims import keepdim_shape, normalize_dims, reduced_shape, shape_arg, wrap_dim
from gpugrad.ops import shape
from gpugrad.ops.elementwise import maximum, minimum, where
from gpugrad.tensor import Tensor

_HALF = (dtypes.float16, dtypes.bfloat16)


def keepdim_arg(keepdim, keepdims):
    """``keepdim``, or numpy's ``keepdims`` where that is the one given."""
    return keepdim if keepdims is None else bool(keepdims)


# -- sum, mean, prod ----------------------------------------------------------------

class Sum(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim, dtype):
        ctx.shape, ctx.dims = x.shape, dims
        if dtype in _HALF and x.dtype == dtype and 0 < len(dims) < x.ndim and dims[-1] == len(dims) - 1 \
                and x.size and layers.supports(x) and x.flags.c_contiguous:
            # CUDA, a half type over its leading dims (a Linear's bias gradient under autocast): one
            # kernel summing in float32 and rounding once, not a float32 sum and its cast (two launches)
            kept = x.shape[len(dims):]
            sums = layers.column_sums(x.reshape(-1, math.prod(kept)))
            return sums.reshape(keepdim_shape(x.shape, dims) if keepdim else kept)
        out = array_sum(x, axis=dims, keepdims=keepdim, dtype=dtypes.accumulate_dtype(dtype))
        return out if out.dtype == dtype else out.astype(dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(keepdim_shape(ctx.shape, ctx.dims)).expand(ctx.shape), None, None, None


@autocast_mode.float32
def sum(input, dim=None, keepdim=False, *, dtype=None, keepdims=None):
    """The sum over ``dim`` (None: every element).  Integer and bool tensors sum to int64."""
    dims = normalize_dims(dim, input.ndim)
    if dtype is None:
        dtype = input.dtype if dtypes.is_floating_point(input.dtype) else dtypes.int64
    dtype = dtypes.as_dtype(dtype)
    _check_result_dtype(input, dtype)
    return Sum.apply(input, dims, keepdim_arg(keepdim, keepdims), dtype)


def _check_result_dtype(input, dtype):
    validation.differentiable_dtype(is_grad_enabled() and input.requires_grad, dtype)


class Mean(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim, count):
        ctx.shape, ctx.dims, ctx.count = x.shape, dims, count
        total = array_sum(x, axis=dims, keepdims=keepdim, dtype=dtypes.accumulate_dtype(x.dtype))
        return (total / count if count else total * math.nan).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        scaled = grad / ctx.count if ctx.count else grad * math.nan
        return scaled.reshape(keepdim_shape(ctx.shape, ctx.dims)).expand(ctx.shape), None, None, None


def mean(input, dim=None, keepdim=False, *, dtype=None, keepdims=None):
    """The mean over ``dim`` (None: every element); floating-point tensors only
    (nan over an empty dim, as in torch)."""
    if dtype is not None:
        input = input.to(dtype)
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {dtypes.dtype_name(input.dtype).capitalize()}")
    dims = normalize_dims(dim, input.ndim)
    count = math.prod(input.shape[d] for d in dims)
    return Mean.apply(input, dims, keepdim_arg(keepdim, keepdims), count)


class SumToSize(InternalFunction):
    """Sum a broadcast gradient back to ``shape`` (the engine's reduction)."""

    @staticmethod
    def forward(ctx, x, size):
        ctx.shape = x.shape
        lead = x.ndim - len(size)
        dims = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(size) if n == 1 and x.shape[lead + i] != 1)
        out = array_sum(x, axis=dims, keepdims=True, dtype=dtypes.accumulate_dtype(x.dtype)) if dims else x
        return out.astype(x.dtype, copy=False).reshape(size)

    @staticmethod
    def backward(ctx, grad):
        return grad.expand(ctx.shape), None


def sum_to_size(input, *size):
    """Sum ``input`` over the dims it was broadcast along, back to ``size``."""
    size = shape_arg(size)
    if input.shape == size:
        return input
    lead = input.ndim - len(size)
    if lead < 0 or builtins.any(n != 1 and n != input.shape[lead + i] for i, n in enumerate(size)):
        raise RuntimeError(f"size {list(size)} is not expandable to size {list(input.shape)}")
    return SumToSize.apply(input, size)


class Prod(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim, whole=False):
        ctx.shape, ctx.dims, ctx.whole = x.shape, dims, whole
        acc = dtypes.accumulate_dtype(x.dtype) if dtypes.is_floating_point(x.dtype) else dtypes.int64
        out = array_prod(x, axis=dims, keepdims=keepdim, dtype=acc)
        out = backend.keep_array(out).astype(x.dtype if dtypes.is_floating_point(x.dtype) else dtypes.int64,
                                             copy=False)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        # torch's prod_backward: grad * result / x where x holds no zero (nan and inf as that
        # quotient gives them), the product of the others (exact with zeros) where it does
        x, out = ctx.saved_tensors
        if x.ndim == 0:
            return grad, None, None, None
        grad = grad.reshape(keepdim_shape(ctx.shape, ctx.dims))
        zeros = int((x.array == 0).sum())
        if not zeros:
            return grad * (out.reshape(keepdim_shape(ctx.shape, ctx.dims)) / x), None, None, None
        if ctx.whole and zeros > 1 and not is_grad_enabled():     # torch's shortcut for prod() of all
            return Tensor._make(x.xp.zeros(x.shape, dtype=grad.dtype)), None, None, None
        if len(ctx.dims) == 1:
            return _prod_safe_zeros_backward(grad, x, ctx.dims[0]), None, None, None
        return _prod_safe_zeros_backward(grad.reshape(-1), x.reshape(-1), 0).reshape(x.shape), None, None, None


def _prod_safe_zeros_backward(grad, x, dim):
    """torch's prod_safe_zeros_backward: grad times the product of the others,
    as exclusive running products from the left and from the right (exact
    with zeros, nan and inf as torch's, differentiable again through cumprod)."""
    n = x.shape[dim]
    if x.numel() == 0:
        return grad.expand(x.shape)
    ones_shape = list(x.shape)
    ones_shape[dim] = 1
    ones = Tensor._make(x.xp.ones(tuple(ones_shape), dtype=x.dtype))
    left = shape.cat([ones, x.narrow(dim, 0, n - 1)], dim).cumprod(dim)
    right = shape.cat([ones, x.narrow(dim, 1, n - 1).flip(dim)], dim).cumprod(dim).flip(dim)
    return grad * (left * right)


@autocast_mode.float32
def prod(input, dim=None, keepdim=False, *, dtype=None, keepdims=None):
    """The product over ``dim`` (None: every element); integer tensors give int64.
    The gradient is exact with zeros, up to the second order."""
    if dim is not None and not isinstance(dim, int):
        raise TypeError("prod(): dim must be an int (torch reduces one dim at a time)")
    dims = normalize_dims(dim, input.ndim)       # (torch checks the dim before the dtype)
    if dtype is not None:
        _check_result_dtype(input, dtypes.as_dtype(dtype))
        input = input.to(dtype)
    return Prod.apply(input, dims, keepdim_arg(keepdim, keepdims), dim is None)


# -- max and min ----------------------------------------------------------------------

class Extremum(InternalFunction):
    """amax / amin: the gradient is shared evenly among tied extrema, as in torch
    (a nan result gives a nan gradient, as torch's amax does)."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, largest):
        out = (x.max if largest else x.min)(axis=dims, keepdims=True)
        if ctx.needs_input_grad[0]:
            hits = (x == out).astype(x.dtype)
            ctx.save_for_backward(hits / hits.sum(axis=dims, keepdims=True))
        ctx.shape, ctx.dims = x.shape, dims
        return out if keepdim else out.reshape(reduced_shape(x.shape, dims))

    @staticmethod
    def backward(ctx, grad):
        share, = ctx.saved_tensors
        return grad.reshape(keepdim_shape(ctx.shape, ctx.dims)) * share, None, None, None


class ExtremumAll(InternalFunction):
    """max() / min() of every element (or, given, a value such as the median):
    the gradient is shared evenly among the elements equal to the result, the
    nan elements when the result is nan (torch's evenly_distribute_backward)."""

    @staticmethod
    def forward(ctx, x, largest):
        xp = ctx.xp
        if isinstance(largest, bool):
            out = x.max() if largest else x.min()
        else:
            out = largest
        if ctx.needs_input_grad[0]:
            hits = xp.isnan(x) if xp.isnan(out) else (x == out)
            hits = hits.astype(x.dtype)
            ctx.save_for_backward(hits / hits.sum())
        return xp.asarray(out)

    @staticmethod
    def backward(ctx, grad):
        share, = ctx.saved_tensors
        return grad * share, None


def _check_reducible(x, dims, name):
    for d in dims:
        if x.shape[d] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {d} to have non-zero size.")
    if not dims and x.numel() == 0:
        raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                           "Specify the reduction dim with the 'dim' argument.")


def amax(input, dim=(), keepdim=False, *, keepdims=None):
    """The largest value over ``dim`` (() or None: every element); ties share the gradient."""
    dims = normalize_dims(None if dim == () else dim, input.ndim)
    _check_reducible(input, dims if dim not in ((), None) else (), "amax")
    return Extremum.apply(input, dims, keepdim_arg(keepdim, keepdims), True)


def amin(input, dim=(), keepdim=False, *, keepdims=None):
    """The smallest value over ``dim`` (() or None: every element)."""
    dims = normalize_dims(None if dim == () else dim, input.ndim)
    _check_reducible(input, dims if dim not in ((), None) else (), "amin")
    return Extremum.apply(input, dims, keepdim_arg(keepdim, keepdims), False)


def _max_or_min(x, dim, keepdim, largest):
    if isinstance(dim, Tensor):            # max(a, b): elementwise
        return (maximum if largest else minimum)(x, dim)
    name = "max" if largest else "min"
    if dim is None:
        _check_reducible(x, (), name)
        return ExtremumAll.apply(x, largest)
    d = wrap_dim(dim, x.ndim)
    _check_reducible(x, (d,) if x.ndim else (), name)
    index = _arg_extremum(x, d, True, "argmax" if largest else "argmin")
    values = shape.gather_valid(x, d, index) if x.ndim else x.clone()
    if not keepdim:
        values, index = values.squeeze(d), index.squeeze(d)
    return (return_types.max if largest else return_types.min)(values, index)


def max(input, dim=None, keepdim=False, *, keepdims=None):
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices);
    ``max(x, other)``: the elementwise maximum.  nan counts as the largest."""
    return _max_or_min(input, dim, keepdim_arg(keepdim, keepdims), True)


def min(input, dim=None, keepdim=False, *, keepdims=None):
    """``min(x)``, ``min(x, dim)`` -> (values, indices), ``min(x, other)``."""
    return _max_or_min(input, dim, keepdim_arg(keepdim, keepdims), False)


def _arg_extremum(x, dim, keepdim, name):
    xp = x.xp
    if dim is None:
        if x.numel() == 0:
            raise IndexError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0.")
        out = getattr(xp, name)(x.array.reshape(-1))
        out = out.reshape((1,) * x.ndim) if keepdim else out
    else:
        d = wrap_dim(dim, x.ndim)
        _check_reducible(x, (d,) if x.ndim else (), name)
        array = x.array if x.ndim else x.array.reshape(1)
        out = getattr(xp, name)(array, axis=d, keepdims=keepdim and x.ndim > 0)
        if not x.ndim:
            out = out.reshape(())
    return Tensor._make(xp.asarray(out, dtype=dtypes.int64))


def _no_bool(input, name):
    if input.dtype == dtypes.bool_:
        raise RuntimeError(f"{name}(): does not support bool input")


def argmax(input, dim=None, keepdim=False, *, keepdims=None):
    """The index of the largest value (the first one, nan first), over
    ``dim`` or the flattened tensor."""
    _no_bool(input, "argmax")
    return _arg_extremum(input, dim, keepdim_arg(keepdim, keepdims), "argmax")


def argmin(input, dim=None, keepdim=False, *, keepdims=None):
    """The index of the smallest value (the first one, nan first), over ``dim`` or the flattened tensor."""
    _no_bool(input, "argmin")
    return _arg_extremum(input, dim, keepdim_arg(keepdim, keepdims), "argmin")


def any(input, dim=None, keepdim=False, *, keepdims=None):
    """Whether any element over ``dim`` is non-zero (a bool tensor)."""
    return Tensor._make(input.xp.asarray(input.array.any(
        axis=normalize_dims(dim, input.ndim, empty_means_all=False), keepdims=keepdim_arg(keepdim, keepdims))))


def all(input, dim=None, keepdim=False, *, keepdims=None):
    """Whether every element over ``dim`` is non-zero (a bool tensor)."""
    return Tensor._make(input.xp.asarray(input.array.all(
        axis=normalize_dims(dim, input.ndim, empty_means_all=False), keepdims=keepdim_arg(keepdim, keepdims))))


def count_nonzero(input, dim=None):
    """The number of non-zero elements over ``dim`` (int64)."""
    return sum(input != 0, dim)


# -- statistics -------------------------------------------------------------------------

class _NoDim:
    """The default of var/std's dim: torch's overloads tell ``dim=None`` given
    (then unbiased= and keepdim= go together) from no dim at all (unbiased= alone)."""

    def __repr__(self):
        return "None"


_NO_DIM = _NoDim()


def _statistic_args(name, dim, unbiased, keepdim, correction):
    """torch's overloads: (dim, unbiased, keepdim), (unbiased) alone, or dim with correction= (not both)."""
    given = dim is not _NO_DIM
    dim = dim if given else None
    if isinstance(dim, bool):          # var(x, True): the old unbiased positional
        if unbiased is not None:
            raise TypeError(f"{name}() received an invalid combination of arguments")
        dim, unbiased = None, dim
    if unbiased is not None and not given and keepdim is not None:
        raise TypeError(f"{name}() received an invalid combination of arguments - got (Tensor, keepdim=bool, "
                        "unbiased=bool)")
    if unbiased is not None and correction is not None:
        raise TypeError(f"{name}() received an invalid combination of arguments - got both unbiased and "
                        "correction")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


class Var(InternalFunction):
    """The variance over ``dims`` with ``correction`` (dividing by max(N -
    correction, 0)); torch's var_backward: 2 / (N - correction) * grad * (x -
    mean), and over every element with N <= correction, nan where x is the
    mean and inf elsewhere.  Differentiable again."""

    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, dims, keepdim, correction, whole):
        ctx.save_for_backward(x)
        ctx.dims, ctx.keepdim, ctx.correction, ctx.whole = dims, keepdim, correction, whole
        acc = x.astype(dtypes.accumulate_dtype(x.dtype), copy=False)
        count = math.prod(x.shape[d] for d in dims)
        mean = array_sum(acc, axis=dims, keepdims=True) / count if count else array_sum(acc, axis=dims,
                                                                                        keepdims=True) * math.nan
        centered = acc - mean
        total = array_sum(centered * centered, axis=dims, keepdims=keepdim)
        if count:       # equal finite elements: exactly 0 (the mean's rounding would leave a residue)
            top = acc.max(axis=dims, keepdims=keepdim)
            total = ctx.xp.where((top == acc.min(axis=dims, keepdims=keepdim)) & ctx.xp.isfinite(top), 0, total)
        return (total / builtins.max(count - correction, 0)).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        return var_backward(grad, x, ctx.dims, ctx.keepdim, ctx.correction, ctx.whole), None, None, None, None


def var_backward(grad, x, dims, keepdim, correction, whole):
    """torch's var_backward (in differentiable ops)."""
    count = math.prod(x.shape[d] for d in dims)
    if not keepdim:
        grad = grad.reshape(keepdim_shape(x.shape, dims))
    mean = x.mean(dims, keepdim=True) if count else x.sum(dims, keepdim=True) * math.nan
    if whole and count - correction <= 0:
        return grad * where(x == mean, math.nan, math.inf)
    dof = count - correction
    scale = 2.0 / dof if dof else math.inf
    return scale * grad * (x - mean)


class Std(InternalFunction):
    """sqrt(var); torch's std_backward: var_backward of grad / (2 std), 0 where std is 0."""

    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, dims, keepdim, correction, whole):
        ctx.dims, ctx.keepdim, ctx.correction, ctx.whole = dims, keepdim, correction, whole
        out = ctx.xp.sqrt(Var.forward(ctx, x, dims, keepdim, correction, whole))
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        grad_var = where(out == 0, 0.0, grad / (out * 2))
        return var_backward(grad_var, x, ctx.dims, ctx.keepdim, ctx.correction, ctx.whole), None, None, None, None


def _statistic(function, name, input, dim, unbiased, keepdim, correction, keepdims):
    dim, correction = _statistic_args(name, dim, unbiased, keepdim, correction)
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError(f"{name}(): input dtype should be either floating point or complex. "
                           f"Got {validation.type_name(input.dtype)} instead.")
    dims = normalize_dims(dim, input.ndim)
    whole = dim is None or input.ndim == 0
    return function.apply(input, dims, bool(keepdim_arg(keepdim, keepdims)), correction, whole)


def var(input, dim=_NO_DIM, unbiased=None, keepdim=None, *, correction=None, keepdims=None):
    """The variance over ``dim`` with Bessel's correction (``correction=1``) by default."""
    return _statistic(Var, "var", input, dim, unbiased, keepdim, correction, keepdims)


def std(input, dim=_NO_DIM, unbiased=None, keepdim=None, *, correction=None, keepdims=None):
    """The standard deviation: sqrt(var(...)) (its gradient 0 where it is 0, as torch's)."""
    return _statistic(Std, "std", input, dim, unbiased, keepdim, correction, keepdims)


def var_mean(input, dim=_NO_DIM, unbiased=None, keepdim=None, *, correction=None):
    """(var, mean) over ``dim``, as torch.var_mean."""
    variance = var(input, dim, unbiased, keepdim, correction=correction)
    dim, _ = _statistic_args("var_mean", dim, unbiased, keepdim, correction)
    return variance, mean(input, dim, bool(keepdim))


def std_mean(input, dim=_NO_DIM, unbiased=None, keepdim=None, *, correction=None):
    """(std, mean) over ``dim``, as torch.std_mean."""
    deviation = std(input, dim, unbiased, keepdim, correction=correction)
    dim, _ = _statistic_args("std_mean", dim, unbiased, keepdim, correction)
    return deviation, mean(input, dim, bool(keepdim))


class VectorNorm(InternalFunction):
    """The p-norm over ``dims`` (torch's linalg.vector_norm): 0 (the count of
    non-zeros), 1, 2, +-inf (the largest / smallest |x|) or any other p.  The
    backward is torch's norm_backward in differentiable ops: 0 where the norm
    is 0 (p > 1) or x is 0 (p < 1), the gradient of +-inf shared among the
    elements at the norm (and the nan ones)."""

    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, p, dims, keepdim):
        xp = ctx.xp
        a = xp.abs(x.astype(dtypes.accumulate_dtype(x.dtype), copy=False))
        if p == 0:
            out = array_sum((a != 0).astype(a.dtype), axis=dims, keepdims=keepdim)
        elif p == math.inf:
            out = a.max(axis=dims, keepdims=keepdim)
        elif p == -math.inf:
            out = a.min(axis=dims, keepdims=keepdim)
        elif p == 1:
            out = array_sum(a, axis=dims, keepdims=keepdim)
        elif p == 2:
            out = xp.sqrt(array_sum(a * a, axis=dims, keepdims=keepdim))
        else:
            out = array_sum(a ** p, axis=dims, keepdims=keepdim) ** (1.0 / p)
        out = backend.keep_array(out).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, out)
        ctx.p, ctx.dims, ctx.keepdim = p, dims, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, norm = ctx.saved_tensors
        p, dims = ctx.p, ctx.dims
        if not ctx.keepdim:
            grad = grad.reshape(keepdim_shape(x.shape, dims))
            norm = norm.reshape(keepdim_shape(x.shape, dims))
        if p == 0:
            return Tensor._make(x.xp.zeros(x.shape, dtype=x.dtype)), None, None, None
        if p == 1:
            return x.sign() * grad, None, None, None
        if p == 2:
            return grad * where(norm == 0, 0.0, x / norm), None, None, None
        if p in (math.inf, -math.inf):
            magnitude = x.abs()
            hits = ((magnitude == norm) | magnitude.isnan()).to(x.dtype)
            return x.sign() * ((grad / hits.sum(dims, keepdim=True)) * hits), None, None, None
        if p < 1:
            scaled = x.sign() * where(x == 0, 0.0, x.abs() ** (p - 1))
            return scaled * grad * norm ** (1 - p), None, None, None
        scaled = x.sign() * x.abs() ** (p - 1) if p < 2 else x * x.abs() ** (p - 2)
        return scaled * where(norm == 0, 0.0, grad / norm ** (p - 1)), None, None, None


def _number(p):
    return int(p) if math.isfinite(p) and p == int(p) else p


@autocast_mode.float32
def norm(input, p="fro", dim=None, keepdim=False, dtype=None, *, keepdims=None):
    """The p-norm over ``dim`` (None: every element): 2 / 'fro' (default), 1,
    inf, -inf, 0 (the count of non-zeros) or any other number ('fro' over at
    most two dims).  Floating-point tensors only, as torch's."""
    if dtype is not None:
        input = input.to(dtype)
    keepdim = keepdim_arg(keepdim, keepdims)
    if isinstance(p, str):
        if p == "nuc":
            raise NotImplementedError("norm(p='nuc'): gpugrad has no singular value decomposition")
        if p != "fro":
            raise RuntimeError(f"linalg.matrix_norm: Order {p} not supported.")
        if dim is not None and not isinstance(dim, int) and len(dim) > 2:
            raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dim))}")
        p = 2
    if p is None:
        p = 2
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as input. Got "
                           f"{validation.type_name(input.dtype)}")
    dims = normalize_dims(dim, input.ndim)
    if (p < 0 or p == math.inf) and input.numel() == 0:     # no identity for max, min or 1 / sum
        if dim is None:
            raise RuntimeError(f"linalg.vector_norm cannot compute the {_number(p)} norm on an empty tensor "
                               "because the operation does not have an identity")
        for d in dims:
            if input.shape[d] == 0:
                raise RuntimeError(f"linalg.vector_norm cannot compute the {_number(p)} norm on the dimension {d}"
                                   "because this dimension is empty and the operation does not have an identity")
    return VectorNorm.apply(input, float(p), dims, keepdim)


# -- scans ------------------------------------------------------------------------------------

class CumSum(InternalFunction):
    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, dim, dtype):
        ctx.dim = dim
        return ctx.xp.cumsum(x, axis=dim, dtype=dtypes.accumulate_dtype(dtype)).astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return grad.flip(ctx.dim).cumsum(ctx.dim).flip(ctx.dim), None, None


@autocast_mode.float32
def cumsum(input, dim, *, dtype=None):
    """Running sums along ``dim`` (integer tensors give int64)."""
    if dtype is None:
        dtype = input.dtype if dtypes.is_floating_point(input.dtype) else dtypes.int64
    dtype = dtypes.as_dtype(dtype)
    wrap_dim(dim, input.ndim)
    _check_result_dtype(input, dtype)
    if input.ndim == 0:
        return input.to(dtype).clone()
    return CumSum.apply(input, wrap_dim(dim, input.ndim), dtype)


class CumProd(InternalFunction):
    numpy_errstate = True

    @staticmethod
    def forward(ctx, x, dim):
        out = ctx.xp.cumprod(x, axis=dim)
        ctx.save_for_backward(x, out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        dim = ctx.dim
        if x.shape[dim] <= 1:        # torch's cumprod_backward: the gradient itself
            return grad, None
        zero = x == 0
        if not bool(zero.array.any()):       # torch's: reversed cumsum of grad * out, over x
            return (grad * out).flip(dim).cumsum(dim).flip(dim) / x, None
        if is_grad_enabled():
            return _cumprod_backward_differentiable(grad, x, dim), None
        # d out_i / d x_k = prod_{j <= i, j != k} x_j for i >= k.  Before the
        # first zero of a row that is out_i / x_k; at the first zero z it is
        # out_{z-1} * prod_{z < j <= i} x_j; after it, 0.
        seen = zero.to(dtypes.int64).cumsum(dim)
        before = seen == 0
        first_zero = zero & (seen == 1)
        safe = where(before, x, 1.0)
        # as torch's: each part sums only its own region (an inf or nan beyond it stays out)
        reverse = where(before, grad * out, 0.0).flip(dim).cumsum(dim).flip(dim)
        grad_before = where(before, reverse / safe, 0.0)
        between = (seen == 1) & ~first_zero                  # after the first zero, before the second
        tail = where(between, x, 1.0).cumprod(dim) * where(seen == 1, grad, 0.0)
        prefix = where(before, x, 1.0).cumprod(dim)          # out_{z-1} at z
        at_zero = where(first_zero, prefix * tail.flip(dim).cumsum(dim).flip(dim), 0.0)
        return grad_before + at_zero, None


def _cumprod_backward_differentiable(grad, x, dim):
    """grad_k = sum_{i >= k} grad_i prod_{j <= i, j != k} x_j in O(n^2) ops of
    Tensors (torch's formula under create_graph with zeros): its derivatives
    stay exact at the zeros, where the O(n) one's would not."""
    n = x.shape[dim]
    lead = (slice(None),) * dim
    pieces = []
    for k in range(n):
        before = x[lead + (slice(0, k),)].prod(dim, keepdim=True) if k else None
        after = x[lead + (slice(k + 1, n),)].cumprod(dim) if k < n - 1 else None
        if before is None:
            ones = list(x.shape)
            ones[dim] = 1
            omitted = shape.cat([Tensor._make(x.xp.ones(tuple(ones), dtype=x.dtype)), after], dim)
        elif after is None:
            omitted = before
        else:
            omitted = shape.cat([before, before * after], dim)
        pieces.append((grad[lead + (slice(k, n),)] * omitted).sum(dim, keepdim=True))
    return shape.cat(pieces, dim)


@autocast_mode.float32
def cumprod(input, dim, *, dtype=None):
    """Running products along ``dim``; the gradient is exact with zeros."""
    dim = wrap_dim(dim, input.ndim)           # (torch checks the dim before the dtype)
    if dtype is not None:
        _check_result_dtype(input, dtypes.as_dtype(dtype))
        input = input.to(dtype)
    elif not dtypes.is_floating_point(input.dtype):
        input = input.to(dtypes.int64)
    if input.ndim == 0:
        return input.clone()
    return CumProd.apply(input, dim)


# -- sorting ------------------------------------------------------------------------------------

def sort(input, dim=-1, descending=False, stable=False):
    """(values, indices) sorted along ``dim`` (nan last ascending, first
    descending, as in torch); the values carry the gradient."""
    d = wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return return_types.sort(input.clone(), Tensor._make(input.xp.zeros((), dtype=dtypes.int64)))
    indices = argsort(input, d, descending, stable=True)
    return return_types.sort(shape.gather_valid(input, d, indices), indices)


def argsort(input, dim=-1, descending=False, stable=False):
    """The indices that sort ``input`` along ``dim`` (ties keep their order)."""
    xp = input.xp
    d = wrap_dim(dim, input.ndim)
    if input.ndim == 0:
        return Tensor._make(xp.zeros((), dtype=dtypes.int64))
    array = input.array
    if descending:
        # stable descending order: sort the negated keys (nan first, as torch)
        if dtypes.is_floating_point(array.dtype):
            # nan first, then +inf, ...: sort the negated values (nan last), then move nan to the front
            order = xp.argsort(-array.astype(dtypes.accumulate_dtype(array.dtype)), axis=d, kind="stable")
            nan_last = ~xp.isnan(xp.take_along_axis(array, order, axis=d))
            order = xp.take_along_axis(order, xp.argsort(nan_last, axis=d, kind="stable"), axis=d)
        else:
            keys = ~array if array.dtype == dtypes.bool_ else -array.astype(dtypes.int64)
            order = xp.argsort(keys, axis=d, kind="stable")
    else:
        order = xp.argsort(array, axis=d, kind="stable")
    return Tensor._make(order.astype(dtypes.int64, copy=False))


def topk(input, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (or smallest) elements along ``dim``."""
    d = wrap_dim(dim, input.ndim)              # (a 0-d tensor: dim 0 or -1, as torch)
    size = input.shape[d] if input.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError(f"selected index k out of range (k={k}, size {size} along dim {d})")
    order = argsort(input, d, descending=largest)
    key = (slice(None),) * d + (slice(0, k),)
    indices = order[key] if input.ndim else order
    return return_types.topk(shape.gather_valid(input, d, indices) if input.ndim else input.clone(), indices)


def kthvalue(input, k, dim=-1, keepdim=False):
    """(values, indices) of the k-th smallest element along ``dim`` (k from 1;
    nan sorts last, as in torch)."""
    d = wrap_dim(dim, input.ndim)
    size = input.shape[d] if input.ndim else 1
    if input.ndim and size == 0:
        raise IndexError(f"kthvalue(): Expected reduction dim {d} to have non-zero size.")
    if not 1 <= k <= size:
        raise RuntimeError(f"kthvalue(): selected number k out of range for dimension {d}")
    if input.ndim == 0:
        return return_types.kthvalue(input.clone(), Tensor._make(input.xp.zeros((), dtype=dtypes.int64)))
    values, indices = sort(input, d)
    key = (slice(None),) * d + (slice(k - 1, k),)
    values, indices = values[key], indices[key]
    if not keepdim:
        values, indices = values.squeeze(d), indices.squeeze(d)
    return return_types.kthvalue(values, indices)


def median(input, dim=None, keepdim=False):
    """The lower median (of every element, or (values, indices) along ``dim``);
    nan where the reduced elements hold a nan (its first, in the indices), as
    torch's (nanmedian is the one that skips nan)."""
    if dim is None:
        if input.numel() == 0:
            return input.sum() * math.nan
        with no_grad():
            value = median(input.reshape(-1), 0).values
        # torch's evenly_distribute_backward: the gradient shared among the elements equal to
        # the median (the nan ones when it is nan)
        return ExtremumAll.apply(input, value.array)
    d = wrap_dim(dim, input.ndim)
    if input.ndim and input.shape[d] == 0:
        raise IndexError(f"median(): Expected reduction dim {d} to have non-zero size.")
    if input.ndim == 0:
        return return_types.median(input.clone(), Tensor._make(input.xp.zeros((), dtype=dtypes.int64)))
    values, indices = kthvalue(input, (input.shape[d] + 1) // 2, d, keepdim=True)
    if dtypes.is_floating_point(input.dtype):
        nan = input.isnan()
        has_nan = nan.any(d, keepdim=True)
        if bool(has_nan.array.any()):
            first_nan = argmax(nan.to(dtypes.int64), d, keepdim=True)
            indices = where(has_nan, first_nan, indices)
            values = shape.gather_valid(input, d, indices)
    if not keepdim:
        values, indices = values.squeeze(d), indices.squeeze(d)
    return return_types.median(values, indices)
