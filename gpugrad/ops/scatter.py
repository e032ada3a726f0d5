"""Scatter ops: values written or reduced into a copy of a tensor at index
positions (scatter, scatter_add, scatter_reduce, index_add, index_copy,
index_fill, masked_scatter).  Each is one Function with torch's backward
formula in Tensor ops (gather and scatter again), so it is differentiable to
any order where torch's is."""

import builtins

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.autograd.function import InternalFunction
from gpugrad.dims import wrap_dim
from gpugrad.ops.shape import broadcast_tensors, gather, getitem, index_select_valid, reshape
from gpugrad.tensor import Tensor

REDUCTIONS = ("sum", "prod", "mean", "amax", "amin")


def _index_key(xp, index, dim):
    """The advanced-indexing key that visits ``index``'s positions, with its values along ``dim``."""
    key = []
    for d in range(index.ndim):
        if d == dim:
            key.append(index)
        else:
            shape = [1] * index.ndim
            shape[d] = index.shape[d]
            key.append(xp.arange(index.shape[d]).reshape(shape))
    return tuple(key)


def _region(src, index):
    """The part of src that index covers (torch reads src[:index.shape])."""
    return src[tuple(slice(0, n) for n in index.shape)]


def _scatter_reduce_array(xp, x, dim, index, src, reduce, include_self):
    """The forward of scatter_reduce on arrays."""
    out = x.copy()
    if index.size == 0:
        return out
    key = _index_key(xp, index, dim)
    values = _region(src, index)
    if not include_self:
        identity = {"sum": 0, "mean": 0, "prod": 1, "amax": -numpy.inf, "amin": numpy.inf}[reduce]
        if out.dtype.kind in "iu" and reduce in ("amax", "amin"):
            info = numpy.iinfo(out.dtype)
            identity = info.min if reduce == "amax" else info.max
        elif out.dtype.kind == "b" and reduce in ("amax", "amin"):
            identity = reduce == "amin"
        out[key] = identity
    backend.scatter_reduce(out, key, values, "sum" if reduce == "mean" else reduce)
    if reduce == "mean":
        count = xp.ones(x.shape, dtype=out.dtype) if include_self else xp.zeros(x.shape, dtype=out.dtype)
        backend.scatter_add(count, key, xp.ones(values.shape, dtype=out.dtype))
        count = xp.where(count == 0, 1, count).astype(out.dtype)
        out = out / count if out.dtype.kind == "f" else out // count
    return out.astype(x.dtype, copy=False)


class ScatterReduce(InternalFunction):
    """torch.scatter_reduce and its backward (torch's scatter_reduce_backward)."""

    @staticmethod
    def forward(ctx, x, src, dim, index, reduce, include_self):
        ctx.dim, ctx.index, ctx.reduce, ctx.include_self = dim, index, reduce, include_self
        ctx.src_shape = src.shape
        out = _scatter_reduce_array(ctx.xp, x, dim, index, src, reduce, include_self)
        if reduce in ("prod", "amax", "amin"):
            ctx.save_for_backward(x, src, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        dim, index, reduce, include_self = ctx.dim, Tensor._make(ctx.index), ctx.reduce, ctx.include_self
        src_shape = index.shape
        if reduce == "sum":
            grad_self, grad_src = grad, gather(grad, dim, index)
        elif reduce == "mean":
            count = Tensor._make(grad.xp.ones(grad.shape, dtype=grad.dtype) if include_self
                                 else grad.xp.zeros(grad.shape, dtype=grad.dtype))
            count = scatter_add(count, dim, index, Tensor._make(grad.xp.ones(src_shape, dtype=grad.dtype)))
            count = count.masked_fill(count == 0, 1)
            grad_self = grad / count
            grad_src = gather(grad_self, dim, index)
        elif reduce == "prod":
            x, src, result = ctx.saved_tensors
            src = _region_tensor(src, index)
            masked_self = x.masked_fill(x == 0, 1)
            masked_self_result = scatter_reduce(masked_self, dim, index, src, reduce, include_self=include_self)
            grad_self = grad * masked_self_result / masked_self
            src_zero = src == 0
            zeros_here = scatter_add(Tensor._make(grad.xp.zeros(x.shape, dtype=grad.dtype)), dim, index,
                                     src_zero.to(grad.dtype))
            src_num_zeros = gather(zeros_here, dim, index)
            src_single_zero = src_zero & (src_num_zeros == 1)
            masked_src = src.masked_fill(src_single_zero, 1)
            masked_src_result = scatter_reduce(x, dim, index, masked_src, reduce, include_self=include_self)
            grad_src = _where(src_single_zero, gather(grad * masked_src_result, dim, index),
                              gather(grad * result, dim, index) / src.masked_fill(src_zero, 1))
            grad_src = grad_src.masked_fill(src_num_zeros > 1, 0)
        else:
            x, src, result = ctx.saved_tensors
            src = _region_tensor(src, index)
            value = gather(result, dim, index)
            self_is_result = (x == result).to(grad.dtype)
            src_is_result = (src == value).to(grad.dtype)
            spread = scatter_add(self_is_result, dim, index, src_is_result)
            share = grad / spread
            grad_self = self_is_result * share
            grad_src = src_is_result * gather(share, dim, index)
        if not include_self:
            grad_self = scatter(grad_self, dim, index, 0.0)
        grad_src_full = None
        if ctx.needs_input_grad[1]:
            grad_src_full = _pad_to(grad_src, ctx.src_shape) if grad_src.shape != ctx.src_shape else grad_src
        return grad_self, grad_src_full, None, None, None, None


def _where(condition, a, b):
    return a.masked_fill(~condition, 0) + b.masked_fill(condition, 0)


def _region_tensor(src, index):
    if tuple(src.shape) == tuple(index.shape):
        return src
    return getitem(src, tuple(slice(0, n) for n in index.shape))


class _PadTo(InternalFunction):
    """A tensor placed at the start of zeros of ``shape`` (the gradient of src[:index.shape])."""

    @staticmethod
    def forward(ctx, x, shape):
        out = ctx.xp.zeros(shape, dtype=x.dtype)
        out[tuple(slice(0, n) for n in x.shape)] = x
        ctx.region = tuple(slice(0, n) for n in x.shape)
        return out

    @staticmethod
    def backward(ctx, grad):
        return getitem(grad, ctx.region), None


def _pad_to(x, shape):
    return _PadTo.apply(x, tuple(shape))


def _check_scatter(name, input, dim, index, src):
    dim = wrap_dim(dim, builtins.max(input.ndim, 1))
    if not isinstance(index, Tensor) or index.dtype not in (dtypes.int32, dtypes.int64):
        raise RuntimeError(f"{name}(): Expected dtype int32/int64 for index")
    if isinstance(src, Tensor) and src.dtype != input.dtype:
        raise RuntimeError(f"{name}(): Expected self.dtype to be equal to src.dtype")
    if index.numel() == 0:
        return dim
    if index.ndim != builtins.max(input.ndim, 1) and not (input.ndim == 0 and index.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if isinstance(src, Tensor) and index.ndim != builtins.max(src.ndim, 1) and not (src.ndim == 0 and index.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as src tensor")
    shape = input.shape or (1,)
    for d in range(index.ndim):
        if d != dim and index.shape[d] > shape[d]:
            raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than self {list(input.shape)} "
                               f"apart from dimension {dim}")
        if isinstance(src, Tensor) and index.shape[d] > (src.shape or (1,))[d]:
            raise RuntimeError(f"Expected index {list(index.shape)} to be no larger than src {list(src.shape)}")
    low, high = int(index.array.min()), int(index.array.max())
    if low < 0 or high >= shape[dim]:
        raise RuntimeError(f"index {high if high >= shape[dim] else low} is out of bounds for dimension {dim} with "
                           f"size {shape[dim]}")
    return dim


def _index_array(index, input, dim):
    array = backend.to_device(index.array, input.device)
    if input.ndim == 0:
        array = array.reshape(-1)
    size = (input.shape or (1,))[dim]
    return array % size if array.size and bool((array < 0).any()) else array


def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """A copy of input with src's values reduced into it at index along dim:
    reduce is 'sum', 'prod', 'mean', 'amax' or 'amin'; include_self=False
    reduces only the scattered values at the positions they reach."""
    reduce = {"max": "amax", "min": "amin"}.get(reduce, reduce)      # torch's older spellings
    if reduce not in REDUCTIONS:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}")
    dim = _check_scatter("scatter_reduce", input, dim, index, src)
    flat = input.ndim == 0
    x = reshape(input, (1,)) if flat else input
    s = reshape(src, (-1,)) if src.ndim == 0 else src
    out = ScatterReduce.apply(x, s, dim, _index_array(index, input, dim), reduce, include_self)
    return reshape(out, ()) if flat else out


class ScatterAdd(InternalFunction):
    """input + src added at index along dim; the gradient: grad, gather(grad)."""

    @staticmethod
    def forward(ctx, x, src, dim, index):
        ctx.dim, ctx.index, ctx.src_shape = dim, index, src.shape
        out = x.copy()
        if index.size:
            backend.scatter_add(out, _index_key(ctx.xp, index, dim), _region(src, index))
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_src = None
        if ctx.needs_input_grad[1]:
            grad_src = gather(grad, ctx.dim, Tensor._make(ctx.index))
            if tuple(grad_src.shape) != tuple(ctx.src_shape):
                grad_src = _pad_to(grad_src, ctx.src_shape)
        return grad, grad_src, None, None


def scatter_add(input, dim, index, src):
    """A copy of input with src[i][j] added at [index[i][j]][j] (dim=0)."""
    dim = _check_scatter("scatter_add", input, dim, index, src)
    if input.ndim == 0:
        return reshape(scatter_add(reshape(input, (1,)), dim, reshape(index, (-1,)), reshape(src, (-1,))), ())
    return ScatterAdd.apply(input, src, dim, _index_array(index, input, dim))


class Scatter(InternalFunction):
    """A copy of input with src written at index along dim (the last write
    wins where indices repeat); the gradient: grad with those positions
    zeroed, and gather(grad) for src."""

    @staticmethod
    def forward(ctx, x, src, dim, index):
        ctx.dim, ctx.index = dim, index
        ctx.src_shape = getattr(src, "shape", ())
        out = x.copy()
        if index.size:
            key = _index_key(ctx.xp, index, dim)
            out[key] = _region(src, index) if getattr(src, "ndim", 0) else src
        return out

    @staticmethod
    def backward(ctx, grad):
        index = Tensor._make(ctx.index)
        grad_x = scatter(grad, ctx.dim, index, 0.0) if ctx.needs_input_grad[0] else None
        grad_src = None
        if ctx.needs_input_grad[1]:
            grad_src = gather(grad, ctx.dim, index)
            if tuple(grad_src.shape) != tuple(ctx.src_shape):
                grad_src = _pad_to(grad_src, ctx.src_shape)
        return grad_x, grad_src, None, None


def scatter(input, dim, index, src=None, *, value=None, reduce=None):
    """A copy of input with src's values (or the number ``value``) written at
    index along dim: out[index[i][j]][j] = src[i][j] for dim=0.  reduce='add'
    or 'multiply' (torch's older form) reduces instead of writing."""
    if src is None:
        src = value
    if src is None:
        raise TypeError("scatter() missing 1 required positional argument: 'src' or 'value'")
    if reduce is not None:
        if reduce not in ("add", "multiply"):
            raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
        if not isinstance(src, Tensor):
            src = Tensor._make(input.xp.full(index.shape, src, dtype=input.dtype))
        return scatter_reduce(input, dim, index, src, "sum" if reduce == "add" else "prod")
    dim = _check_scatter("scatter", input, dim, index, src)
    if input.ndim == 0:
        src = reshape(src, (-1,)) if isinstance(src, Tensor) else src
        return reshape(scatter(reshape(input, (1,)), dim, reshape(index, (-1,)), src), ())
    if not isinstance(src, Tensor):
        src = input.dtype.type(src)
    return Scatter.apply(input, src, dim, _index_array(index, input, dim))


def _check_index(name, input, dim, index, source, what="source", alpha=1):
    dim = wrap_dim(dim, builtins.max(input.ndim, 1))
    if not isinstance(index, Tensor) or index.dtype.kind not in "iu":
        raise RuntimeError(f"{name}_(): Expected dtype int32/int64 for index")
    if index.ndim > 1:
        raise IndexError(f"{name}_(): Index is supposed to be a vector, but got dim: {index.ndim} with type: "
                         f"{validation.type_name(index.dtype)} and size: {list(index.shape)}")
    if source is not None:
        if source.dtype != input.dtype:
            raise RuntimeError(f"{name}_(): self ({dtypes.dtype_name(input.dtype)}) and {what} "
                               f"({dtypes.dtype_name(source.dtype)}) must have the same scalar type")
        if source.ndim and input.ndim and source.ndim != input.ndim:
            raise IndexError(f"{name}_(): {what.capitalize()} and destination dimensions do not match")
        count = source.shape[dim] if source.ndim else 1
        if count != index.numel():
            raise RuntimeError(f"{name}_(): Number of indices ({index.numel()}) should be equal to "
                               f"{what}.size(dim): ({count}), for dim: {dim}")
        for d in range(source.ndim):
            if d != dim and source.shape[d] != input.shape[d]:
                raise RuntimeError(f"{name}(): {what} and self must have the same shape apart from dim {dim}")
    size = (input.shape or (1,))[dim]
    if index.numel():
        low, high = int(index.array.min()), int(index.array.max())
        bad = high if high >= size else low
        if name == "index_add" and (low < 0 or high >= size):     # torch's two kernels' messages
            if input.ndim <= 1 or alpha != 1 or 0 < dim % input.ndim < input.ndim - 1:   # (fuzzer seed 1466559323)
                raise IndexError("index out of range in self")
            raise RuntimeError(f"index {bad} is out of bounds for dimension {dim} with size {size}")
        if low < -size or high >= size:
            prefix = f"{name}_(): " if name == "index_copy" else ""
            raise IndexError(f"{prefix}index {bad} is out of bounds for dimension {dim} with size {size}")
    return dim


class IndexAdd(InternalFunction):
    """input with alpha * source added at index along dim (torch.index_add)."""

    @staticmethod
    def forward(ctx, x, source, dim, index, alpha):
        ctx.dim, ctx.index, ctx.alpha = dim, index, alpha
        out = x.copy()
        key = (slice(None),) * dim + (index,)
        backend.scatter_add(out, key, source * alpha if alpha != 1 else source)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_source = None
        if ctx.needs_input_grad[1]:
            grad_source = index_select_valid(grad, ctx.dim, Tensor._make(ctx.index))
            if ctx.alpha != 1:
                grad_source = grad_source * ctx.alpha
        return grad, grad_source, None, None, None


def _vector_index(index, input, dim):
    array = backend.to_device(index.array, input.device).reshape(-1)
    size = (input.shape or (1,))[dim]
    return array % size if array.size and bool((array < 0).any()) else array


def index_add(input, dim, index, source, *, alpha=1):
    """A copy of input with alpha * source[..., i, ...] added at input[..., index[i], ...] along dim."""
    dim = _check_index("index_add", input, dim, index, source, alpha=alpha)
    if input.ndim == 0:
        return reshape(index_add(reshape(input, (1,)), dim, index, reshape(source, (-1,)), alpha=alpha), ())
    if source.ndim == 0:
        source = reshape(source, (1,))
    return IndexAdd.apply(input, source, dim, _vector_index(index, input, dim), input.dtype.type(alpha))


index_add.overlap_checked_first = True        # in place on an expanded tensor: torch's overlap error first


class IndexCopy(InternalFunction):
    @staticmethod
    def forward(ctx, x, source, dim, index):
        ctx.dim, ctx.index = dim, index
        out = x.copy()
        out[(slice(None),) * dim + (index,)] = source
        return out

    @staticmethod
    def backward(ctx, grad):
        index = Tensor._make(ctx.index)
        grad_x = index_fill(grad, ctx.dim, index, 0.0) if ctx.needs_input_grad[0] else None
        grad_source = index_select_valid(grad, ctx.dim, index) if ctx.needs_input_grad[1] else None
        return grad_x, grad_source, None, None


def index_copy(input, dim, index, source):
    """A copy of input with source[..., i, ...] written at input[..., index[i], ...] along dim."""
    dim = _check_index("index_copy", input, dim, index, source)
    if input.ndim == 0:
        return reshape(index_copy(reshape(input, (1,)), dim, index, reshape(source, (-1,))), ())
    if source.ndim == 0:
        source = reshape(source, (1,))
    return IndexCopy.apply(input, source, dim, _vector_index(index, input, dim))


class IndexFill(InternalFunction):
    @staticmethod
    def forward(ctx, x, value, dim, index):
        ctx.dim, ctx.index = dim, index
        out = x.copy()
        out[(slice(None),) * dim + (index,)] = value
        return out

    @staticmethod
    def backward(ctx, grad):
        index = Tensor._make(ctx.index)
        grad_x = index_fill(grad, ctx.dim, index, 0.0) if ctx.needs_input_grad[0] else None
        grad_value = index_select_valid(grad, ctx.dim, index).sum() if ctx.needs_input_grad[1] else None
        return grad_x, grad_value, None, None


def index_fill(input, dim, index, value):
    """A copy of input with ``value`` (a number or a 0-d tensor) at input[..., index[i], ...] along dim."""
    dim = _check_index("index_fill", input, dim, index, None)
    if isinstance(value, Tensor):
        if value.ndim:
            raise RuntimeError(f"index_fill_ only supports a 0-dimensional value tensor, but got tensor with "
                               f"{value.ndim} dimension(s).")
        value = value.to(input.dtype)
    else:
        value = input.dtype.type(value)
    if input.ndim == 0:
        return reshape(index_fill(reshape(input, (1,)), dim, index, value), ())
    return IndexFill.apply(input, value, dim, _vector_index(index, input, dim))


class MaskedScatter(InternalFunction):
    """input with the first mask.sum() elements of source written where mask
    holds (row-major order); torch's backward: grad zeroed there for input,
    grad[mask] followed by zeros for source."""

    @staticmethod
    def forward(ctx, x, source, mask):
        ctx.mask, ctx.source_shape = mask, source.shape
        out = x.copy()
        count = int(mask.sum())
        out[mask] = source.reshape(-1)[:count]
        return out

    @staticmethod
    def backward(ctx, grad):
        mask = Tensor._make(ctx.mask)
        grad_x = grad.masked_fill(mask, 0) if ctx.needs_input_grad[0] else None
        grad_source = None
        if ctx.needs_input_grad[1]:
            picked = getitem(grad, mask)
            total = 1
            for n in ctx.source_shape:
                total *= n
            grad_source = reshape(_pad_to(picked, (total,)), ctx.source_shape)
        return grad_x, grad_source, None


def masked_scatter(input, mask, source):
    """A copy of input with source's elements, in order, written where mask
    (broadcast to input) holds."""
    if mask.dtype != dtypes.bool_:
        raise RuntimeError(f"masked_scatter_ only supports boolean masks, but got mask with dtype "
                           f"{dtypes.dtype_name(mask.dtype)}")
    if source.dtype != input.dtype:
        raise RuntimeError(f"masked_scatter: expected self and source to have same dtypes but got "
                           f"{dtypes.dtype_name(input.dtype)} and {dtypes.dtype_name(source.dtype)}")
    input, mask = broadcast_tensors(input, mask)
    mask_array = backend.to_device(mask.array, input.device)
    if int(mask_array.sum()) > source.numel():
        raise RuntimeError("Number of elements of source < number of ones in mask")
    return MaskedScatter.apply(input, source, mask_array)
