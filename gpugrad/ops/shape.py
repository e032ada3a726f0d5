"""Shape ops: views (reshape, permute, expand, basic indexing) and copies
(cat, advanced indexing).  A view's output shares the input's memory and
version counter, as in torch."""

import builtins

from gpugrad import backend
from gpugrad.autograd.function import InternalFunction
from gpugrad.ops.elementwise import promote
from gpugrad.tensor import Tensor, _wrap_dim


class Reshape(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape, strict):
        ctx.shape = x.shape
        out = x.reshape(shape)
        if strict and out.size and not backend.may_share_memory(out, x):
            raise RuntimeError(
                "view size is not compatible with input tensor's size and stride (at least one "
                "dimension spans across two contiguous subspaces). Use .reshape(...) instead.")
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape), None, None


class Permute(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return grad.permute(ctx.inverse), None


class Expand(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.sum_to_size(ctx.shape), None


class Cat(InternalFunction):
    @staticmethod
    def forward(ctx, dim, *arrays):
        ctx.dim = dim
        ctx.sizes = [a.shape[dim] for a in arrays]
        return ctx.xp.concatenate(arrays, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        grads, start = [None], 0
        lead = (slice(None),) * ctx.dim
        for size, needed in zip(ctx.sizes, ctx.needs_input_grad[1:]):
            grads.append(grad[lead + (slice(start, start + size),)] if needed else None)
            start += size
        return tuple(grads)


class GetItem(InternalFunction):
    """x[key]; basic indexing gives a view, advanced indexing a copy."""
    is_view = True

    @staticmethod
    def forward(ctx, x, key, advanced):
        ctx.shape, ctx.key, ctx.advanced = x.shape, key, advanced
        return x[key]

    @staticmethod
    def backward(ctx, grad):
        return IndexBackward.apply(grad, ctx.shape, ctx.key, ctx.advanced), None, None


class IndexBackward(InternalFunction):
    """The gradient of x[key]: grad written into zeros, repeated indices summed."""

    @staticmethod
    def forward(ctx, grad, shape, key, advanced):
        ctx.key, ctx.advanced = key, advanced
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        if advanced:
            backend.scatter_add(out, _integer_key(ctx.xp, key), grad)
        else:
            out[key] = grad
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        return GetItem.apply(grad_grad, ctx.key, ctx.advanced), None, None, None


class IndexPut(InternalFunction):
    """A copy of x with ``x[key] = value`` (what ``x[key] = value`` computes)."""

    @staticmethod
    def forward(ctx, x, value, key, advanced):
        ctx.key, ctx.advanced = key, advanced
        out = x.copy()
        out[key] = value
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_x = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_x = IndexPut.apply(grad, grad.dtype.type(0), ctx.key, ctx.advanced)
        if ctx.needs_input_grad[1]:
            grad_value = GetItem.apply(grad, ctx.key, ctx.advanced)
        return grad_x, grad_value, None, None


def _integer_key(xp, key):
    """Boolean masks replaced by their integer coordinates (for scatter-add)."""
    out = []
    for k in key:
        if getattr(k, "dtype", None) is not None and k.dtype.kind == "b" and k.ndim:
            out.extend(xp.nonzero(k))
        else:
            out.append(k)
    return tuple(out)


def convert_key(x, key):
    """An index as arrays on x's device; returns (key, is_advanced)."""
    if not isinstance(key, tuple):
        key = (key,)
    xp = x.xp
    converted, advanced = [], False
    for k in key:
        if isinstance(k, Tensor):
            k = backend.to_device(k.data, x.device)
        elif isinstance(k, list):
            k = xp.asarray(k)
        elif hasattr(k, "__array_interface__") or backend.is_cupy_array(k):
            k = backend.to_device(k, x.device)
        if getattr(k, "ndim", None) is not None and not isinstance(k, (int, bool)):
            if k.dtype.kind not in "iub":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            advanced = True
        converted.append(k)
    return tuple(converted), advanced


def getitem(x, key):
    key, advanced = convert_key(x, key)
    return GetItem.apply(x, key, advanced)


def index_put(x, key, value):
    key, advanced = convert_key(x, key)
    if isinstance(value, Tensor):
        value = value.to(device=x.device, dtype=x.dtype)
    else:
        value = x.dtype.type(value)
    return IndexPut.apply(x, value, key, advanced)


def gather(x, dim, index):
    """out[i][j][k] = x[i][index[i][j][k]][k] for dim=1 (torch.gather)."""
    dim = _wrap_dim(dim, x.ndim)
    if index.ndim != x.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype}")
    xp = x.xp
    idx = backend.to_device(index.data, x.device)
    key = []
    for d in range(x.ndim):
        if d == dim:
            key.append(idx)
        else:
            if index.shape[d] > x.shape[d]:
                raise RuntimeError(f"Size does not match at dimension {d} expected index "
                                   f"{list(index.shape)} to be smaller than self {list(x.shape)} "
                                   f"apart from dimension {dim}")
            shape = [1] * x.ndim
            shape[d] = index.shape[d]
            key.append(xp.arange(index.shape[d]).reshape(shape))
    return GetItem.apply(x, tuple(key), True)


def _infer_shape(shape, numel):
    shape = list(shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = 1
    for n in shape:
        if n != -1:
            known *= n
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{shape}' is invalid for input of size {numel}")
        shape[shape.index(-1)] = numel // known
    elif known != numel:
        raise RuntimeError(f"shape '{shape}' is invalid for input of size {numel}")
    return tuple(shape)


def reshape(x, shape):
    shape = _infer_shape(shape, x.numel())
    return x if shape == x.shape else Reshape.apply(x, shape, False)


def view(x, shape):
    shape = _infer_shape(shape, x.numel())
    return Reshape.apply(x, shape, True)


def flatten(x, start_dim=0, end_dim=-1):
    if x.ndim == 0:
        return reshape(x, (1,))
    start, end = _wrap_dim(start_dim, x.ndim), _wrap_dim(end_dim, x.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    n = 1
    for d in x.shape[start:end + 1]:
        n *= d
    return reshape(x, x.shape[:start] + (n,) + x.shape[end + 1:])


def unflatten(x, dim, sizes):
    dim = _wrap_dim(dim, x.ndim)
    sizes = _infer_shape(sizes, x.shape[dim])
    return reshape(x, x.shape[:dim] + sizes + x.shape[dim + 1:])


def permute(x, dims):
    dims = tuple(_wrap_dim(d, x.ndim) for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise RuntimeError(f"permute(): dims {list(dims)} are not a permutation of the "
                           f"{x.ndim} dims of the input")
    return Permute.apply(x, dims)


def transpose(x, dim0, dim1):
    if x.ndim == 0:
        return x
    dims = list(range(x.ndim))
    d0, d1 = _wrap_dim(dim0, x.ndim), _wrap_dim(dim1, x.ndim)
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, tuple(dims))


def squeeze(x, dim=None):
    if dim is None:
        dims = {i for i, n in enumerate(x.shape) if n == 1}
    else:
        dims = {_wrap_dim(d, x.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        dims = {d for d in dims if x.shape[d] == 1} if x.ndim else set()
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in dims))


def unsqueeze(x, dim):
    dim = _wrap_dim(dim, x.ndim + 1)
    return Reshape.apply(x, x.shape[:dim] + (1,) + x.shape[dim:], False)


def expand(x, sizes):
    sizes = tuple(sizes)
    lead = len(sizes) - x.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({x.ndim})")
    shape = []
    for i, n in enumerate(sizes):
        if i < lead:
            if n < 0:
                raise RuntimeError(f"expand: -1 is not allowed in a leading, non-existing dimension {i}")
            shape.append(n)
            continue
        have = x.shape[i - lead]
        if n == -1:
            n = have
        if have != n and have != 1:
            raise RuntimeError(
                f"The expanded size of the tensor ({n}) must match the existing size ({have}) at "
                f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                f"Tensor sizes: {list(x.shape)}")
        shape.append(n)
    shape = tuple(shape)
    return x if shape == x.shape else Expand.apply(x, shape)


def cat(tensors, dim=0):
    """Concatenate tensors along an existing dim (dtypes are promoted)."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("cat(): expected a non-empty list of Tensors")
    tensors, _ = promote(*tensors)
    ref = next((t for t in tensors if t.ndim), tensors[0])
    dim = _wrap_dim(dim, ref.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim or any(a != b for d, (a, b) in enumerate(zip(t.shape, ref.shape)) if d != dim):
            raise RuntimeError(
                f"Sizes of tensors must match except in dimension {dim}. Expected "
                f"{list(ref.shape)} (up to dim {dim}) but got {list(t.shape)} for tensor number {i} "
                "in the list.")
    return Cat.apply(dim, *tensors)


def stack(tensors, dim=0):
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(tensors[0].shape)} at entry 0 and {list(t.shape)} at entry {i}")
    dim = _wrap_dim(dim, tensors[0].ndim + 1)
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x, split_size_or_sections, dim=0):
    dim = _wrap_dim(dim, x.ndim)
    n = x.shape[dim]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size <= 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got split_size={size}")
        sizes = [builtins.min(size, n - start) for start in range(0, n, size)] or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {dim}), but got split_sizes={sizes}")
    lead = (slice(None),) * dim
    out, start = [], 0
    for size in sizes:
        out.append(x[lead + (slice(start, start + size),)])
        start += size
    return tuple(out)


def chunk(x, chunks, dim=0):
    n = x.shape[_wrap_dim(dim, x.ndim)]
    return split(x, builtins.max(1, -(-n // chunks)), dim)


def unbind(x, dim=0):
    dim = _wrap_dim(dim, x.ndim)
    lead = (slice(None),) * dim
    return tuple(x[lead + (i,)] for i in range(x.shape[dim]))
