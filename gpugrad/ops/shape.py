"""Shape ops: views (reshape, permute, expand, basic indexing) and copies
(cat, advanced indexing, gather, flip, roll, tril, pad).  A view's output
shares the input's memory and version counter, as in torch; an in-place op
on a view rewrites its base's history (``autograd/inplace.py``)."""

import builtins
import math
import warnings

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import errors as device_errors
from gpugrad.dims import method_sizes, sequence_arg, wrap_dim, wrap_dim_of_tensor
from gpugrad.ops.fused.indices import check_indices
from gpugrad.tensor import Tensor

# -- views ----------------------------------------------------------------------------

class Reshape(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape, strict):
        ctx.shape = x.shape
        if strict:
            out = _view_without_copy(x, shape)
        else:
            out = x.reshape(shape)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape), None, None


def _view_without_copy(x, shape):
    out = x.view()
    try:
        out.shape = shape          # NumPy and CuPy refuse (AttributeError) when a copy would be needed
    except AttributeError:
        raise RuntimeError(
            "view size is not compatible with input tensor's size and stride (at least one "
            "dimension spans across two contiguous subspaces). Use .reshape(...) instead.") from None
    return out


def _infer_shape(shape, numel):
    shape = list(shape)
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = math.prod(n for n in shape if n != -1)
    if -1 in shape:
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{shape}' is invalid for input of size {numel}")
        shape[shape.index(-1)] = numel // known
    elif known != numel:
        raise RuntimeError(f"shape '{shape}' is invalid for input of size {numel}")
    if any(n < -1 for n in shape):
        raise RuntimeError(f"invalid shape dimension {min(shape)}")
    return tuple(shape)


def reshape(input, shape):
    """The same elements in a new ``shape`` (one dim may be -1); a view when the
    layout allows, else a copy (a new tensor even for the same shape, as torch's).
    The method takes the sizes as ints too (``x.reshape(2, 3)``)."""
    shape = _infer_shape(sequence_arg(shape, "reshape", "shape", 2), input.numel())
    return Reshape.apply(input, shape, False)


def alias(input):
    """A view of all of ``input`` (what torch's view ops return where nothing
    changes: a new tensor sharing the memory, never ``input`` itself)."""
    return Reshape.apply(input, input.shape, False)


def view(input, *shape):
    """A view with a new shape; RuntimeError where that needs a copy.
    ``view(dtype)`` reinterprets the bytes as another dtype of the same size."""
    if len(shape) == 1 and not isinstance(shape[0], (tuple, list, int)) and shape[0] is not None \
            and not hasattr(shape[0], "__index__"):
        dtype = dtypes.as_dtype(shape[0])
        if dtype.itemsize != input.dtype.itemsize:
            raise RuntimeError("view(dtype) needs a dtype of the same element size")
        return Tensor._make(input.array.view(dtype))
    return Reshape.apply(input, _infer_shape(method_sizes(shape, "view", "size"), input.numel()), True)


def view_as(input, other):
    return view(input, other.shape)


def reshape_as(input, other):
    return reshape(input, other.shape)


def flatten(input, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim into one (``input`` itself when that is one dim, as torch's)."""
    if input.ndim == 0:
        wrap_dim(start_dim, 0), wrap_dim(end_dim, 0)
        return reshape(input, (1,))
    start, end = wrap_dim(start_dim, input.ndim), wrap_dim(end_dim, input.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    if start == end:
        return input
    n = math.prod(input.shape[start:end + 1])
    return reshape(input, input.shape[:start] + (n,) + input.shape[end + 1:])


def unflatten(input, dim, sizes):
    """Split dim ``dim`` into ``sizes`` (one may be -1)."""
    dim = wrap_dim(dim, input.ndim)
    sizes = _infer_shape(sizes, input.shape[dim])
    return reshape(input, input.shape[:dim] + sizes + input.shape[dim + 1:])


class Permute(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, dims):
        ctx.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    @staticmethod
    def backward(ctx, grad):
        return Permute.apply(grad, ctx.inverse), None


def permute(input, dims):
    """The dims reordered (a view); the method takes them as ints too."""
    given = sequence_arg(dims, "permute", "dims", 2)
    if len(given) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not "
                           f"equal to len(dims) = {len(given)}")
    dims = tuple(wrap_dim(d, input.ndim) for d in given)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return Permute.apply(input, dims) if input.ndim else alias(input)


def transpose(input, dim0, dim1):
    """Two dims swapped (a view)."""
    if input.ndim == 0:
        wrap_dim(dim0, 0), wrap_dim(dim1, 0)
        return alias(input)
    dims = list(range(input.ndim))
    d0, d1 = wrap_dim(dim0, input.ndim), wrap_dim(dim1, input.ndim)
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(input, tuple(dims))


swapaxes = swapdims = transpose


def t(input):
    """The transpose of a tensor of at most 2 dims."""
    if input.ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {input.ndim}D")
    return alias(input) if input.ndim < 2 else Permute.apply(input, (1, 0))


def movedim(input, source, destination):
    """Dims moved from ``source`` to ``destination`` positions (ints or sequences)."""
    source = [wrap_dim(d, input.ndim) for d in (source if isinstance(source, (tuple, list)) else [source])]
    destination = [wrap_dim(d, input.ndim)
                   for d in (destination if isinstance(destination, (tuple, list)) else [destination])]
    if len(source) != len(destination):
        raise RuntimeError(f"movedim: Invalid source or destination dims: source ({source} dims) should contain "
                           f"the same number of dims as destination ({destination} dims)")
    for given, name in ((source, "source"), (destination, "destination")):
        if len(set(given)) != len(given):
            raise RuntimeError(f"movedim: repeated dim in `{name}` ({given})")
    if input.ndim == 0:
        return alias(input)
    order = [d for d in range(input.ndim) if d not in source]
    for dst, src in sorted(zip(destination, source)):
        order.insert(dst, src)
    return Permute.apply(input, tuple(order))


moveaxis = movedim


def squeeze(input, dim=None):
    """Dims of size 1 removed (all, or those in ``dim`` that have size 1)."""
    if dim is None:
        dims = {i for i, n in enumerate(input.shape) if n == 1}
    else:
        dims = {wrap_dim(d, input.ndim) for d in (dim if isinstance(dim, (tuple, list)) else (dim,))}
        dims = {d for d in dims if input.shape[d] == 1} if input.ndim else set()
    return reshape(input, tuple(n for i, n in enumerate(input.shape) if i not in dims))


def unsqueeze(input, dim):
    """A new dim of size 1 at ``dim`` (a view)."""
    dim = wrap_dim(dim, input.ndim + 1)
    return Reshape.apply(input, input.shape[:dim] + (1,) + input.shape[dim:], False)


class Expand(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        return ctx.xp.broadcast_to(x, shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.sum_to_size(ctx.shape), None


def expand(input, *sizes):
    """A broadcast view to ``sizes`` (-1 keeps a dim); no memory is copied."""
    sizes = method_sizes(sizes, "expand", "size")
    lead = len(sizes) - input.ndim
    if lead < 0:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                           f"or equal to the number of dimensions in the tensor ({input.ndim})")
    shape = []
    for i, n in enumerate(sizes):
        if i < lead:
            if n < 0:
                raise RuntimeError(f"expand: -1 is not allowed in a leading, non-existing dimension {i}")
            shape.append(n)
            continue
        have = input.shape[i - lead]
        if n == -1:
            n = have
        if have != n and have != 1:
            raise RuntimeError(
                f"The expanded size of the tensor ({n}) must match the existing size ({have}) at "
                f"non-singleton dimension {i}.  Target sizes: {list(sizes)}.  "
                f"Tensor sizes: {list(input.shape)}")
        shape.append(n)
    shape = tuple(shape)
    return alias(input) if shape == input.shape else Expand.apply(input, shape)


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, size):
    """A broadcast view of ``input`` with ``size`` (the method takes ints too)."""
    return expand(input, sequence_arg(size, "broadcast_to", "size", 2))


def broadcast_tensors(*tensors):
    """The tensors expanded (as views) to their common broadcast shape."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    shape = validation.broadcast_shapes(*(t.shape for t in tensors))
    return tuple(t if t.shape == shape else expand(t, shape) for t in tensors)


# -- indexing ------------------------------------------------------------------------------

def _is_index_array(k):
    return getattr(k, "ndim", None) is not None and not isinstance(k, (int, bool, numpy.generic))


def split_key(key):
    """A key that mixes integers with index arrays, as torch applies it:
    (basic, rest), the integers (and slices, None) first as a view, the arrays
    on that view after.  NumPy takes such integers as index arrays (and moves
    the broadcast dims first when they are not adjacent); None where the key
    mixes nothing."""
    if not any(isinstance(k, (int, numpy.integer)) and not isinstance(k, bool) for k in key) or \
            not any(_is_index_array(k) for k in key):
        return None
    basic, rest = [], []
    for k in key:
        if k is None:
            basic.append(None)
            rest.append(slice(None))
        elif k is Ellipsis:
            basic.append(Ellipsis)
            rest.append(Ellipsis)
        elif _is_index_array(k):
            basic.extend([slice(None)] * (k.ndim if k.dtype.kind == "b" else 1))
            rest.append(k)
        elif isinstance(k, slice):
            basic.append(k)
            rest.append(slice(None))
        else:
            basic.append(k)
    return tuple(basic), tuple(rest)


def check_index_arrays(array, key):
    """CuPy takes an integer index array's values modulo the size without a check (torch's kernels and NumPy
    raise): on CUDA, record one outside [-size, size) of the dim it indexes in the error word (IndexError at
    the next synchronising read, gpugrad/cuda/errors.py; one launch per array, no host sync).  ``key`` is the
    key left for ``array`` (indexed_region's), of a region that is not empty (torch checks no index of an
    empty one)."""
    if not backend.is_cupy_array(array):
        return                          # NumPy raises IndexError itself
    taken = [k.ndim if _is_index_array(k) and k.dtype.kind == "b" else 1 for k in key
             if k is not None and k is not Ellipsis]
    dim = 0
    for k in key:
        if k is None:
            continue
        if k is Ellipsis:
            dim += array.ndim - sum(taken)
        elif _is_index_array(k) and k.dtype.kind == "b":
            dim += k.ndim
        else:
            if _is_index_array(k) and k.size:
                size = array.shape[dim]
                index = k if k.dtype.name in ("int32", "int64") else k.astype(dtypes.int64)
                check_indices(index, size, device_errors.POSITION, low=-size)
            dim += 1


def indexed_region(array, key):
    """The view ``array[key]`` would write through, and the key left for it (torch's order, split_key)."""
    split = split_key(key)
    return (array, key) if split is None else (array[split[0]], split[1])


class GetItem(InternalFunction):
    """x[key]; basic indexing gives a view, advanced indexing a copy."""
    is_view = True

    @staticmethod
    def forward(ctx, x, key, advanced):
        ctx.shape, ctx.key, ctx.advanced = x.shape, key, advanced
        x, key = indexed_region(x, key)
        if not advanced and Ellipsis not in key:
            key = key + (Ellipsis,)     # x[i] of a 1-D array: a 0-d view (NumPy would give a scalar, a copy)
        try:
            return x[key]
        except IndexError:              # torch checks no index of an empty result
            region = _region_shape(x, key)
            if 0 in region:
                return ctx.xp.empty(region, dtype=x.dtype)
            raise

    @staticmethod
    def backward(ctx, grad):
        return IndexBackward.apply(grad, ctx.shape, ctx.key, ctx.advanced), None, None


class IndexBackward(InternalFunction):
    """The gradient of x[key]: grad written into zeros, repeated indices summed."""

    @staticmethod
    def forward(ctx, grad, shape, key, advanced):
        ctx.key, ctx.advanced = key, advanced
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        view, key = indexed_region(out, key)
        if advanced:
            if grad.size:               # an empty result checked no index in the forward (torch's): none here
                backend.scatter_add(view, _integer_key(ctx.xp, key), grad)
        else:
            view[key] = grad
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        return GetItem.apply(grad_grad, ctx.key, ctx.advanced), None, None, None


def put_values(array, key, value, accumulate=False):
    """``array[key] = value`` (``+=``, repeated indices summed, with accumulate);
    a value that does not broadcast to the indexed region raises torch's RuntimeError."""
    if isinstance(array, numpy.ndarray) and not array.flags.writeable:   # an expanded tensor (its region checked)
        array = backend.writable_alias(array)
    array, key = indexed_region(array, key)
    try:
        region = array[key].shape
    except IndexError as error:
        region = _region_shape(array, key)
        if getattr(value, "ndim", 0):       # torch reports a value of the wrong shape before a bad index
            _check_region(value, region)
        if 0 in region:                     # and checks no index of an empty region
            return
        raise IndexError(str(error).replace("axis", "dimension")) from None
    if getattr(value, "ndim", 0):
        _check_region(value, region)
    if 0 not in region:
        check_index_arrays(array, key)
    try:
        if accumulate:
            region = array[key].shape
            backend.scatter_add(array, _integer_key(backend.xp_for(array), key),
                                backend.xp_for(array).broadcast_to(value, region))
        else:
            array[key] = value
    except ValueError:
        shape = list(getattr(value, "shape", ()))
        raise RuntimeError(f"shape mismatch: value tensor of shape {shape} cannot be broadcast to indexing "
                           f"result of shape {list(array[key].shape)}") from None


def _check_region(value, region):
    try:
        fits = value.ndim <= len(region) and numpy.broadcast_shapes(value.shape, region) == tuple(region)
    except ValueError:
        fits = False
    if not fits:
        raise RuntimeError(f"shape mismatch: value tensor of shape {list(value.shape)} cannot be broadcast to "
                           f"indexing result of shape {list(region)}")


def _region_shape(array, key):
    """The shape ``array[key]`` has, its integer indices taken as 0 (a key with an index out of range)."""
    dummy = numpy.lib.stride_tricks.as_strided(numpy.zeros(1), array.shape, (0,) * array.ndim)
    host = backend.as_device("cpu")
    parts = []
    for k in key if isinstance(key, tuple) else (key,):
        if getattr(k, "dtype", None) is not None:
            k = numpy.zeros(k.shape, dtype=numpy.int64) if k.dtype.kind in "iu" else backend.to_device(k, host)
        parts.append(k)
    return dummy[tuple(parts)].shape


class IndexPut(InternalFunction):
    """A copy of x with ``x[key] = value`` (or ``+= value`` with accumulate)."""

    @staticmethod
    def forward(ctx, x, value, key, advanced, accumulate):
        ctx.key, ctx.advanced, ctx.accumulate = key, advanced, accumulate
        out = x.copy()
        put_values(out, key, value, accumulate)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad_x = grad_value = None
        if ctx.needs_input_grad[0]:
            grad_x = grad if ctx.accumulate else IndexPut.apply(grad, grad.dtype.type(0), ctx.key,
                                                                 ctx.advanced, False)
        if ctx.needs_input_grad[1]:
            grad_value = GetItem.apply(grad, ctx.key, ctx.advanced)
        return grad_x, grad_value, None, None, None


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
    """An index as arrays on x's device, checked like torch; returns (key, is_advanced)."""
    if not isinstance(key, tuple):
        key = (key,)
    xp = x.xp
    converted, advanced = [], False
    for k in key:
        if isinstance(k, Tensor):
            k = backend.to_device(k.array, x.device)
        elif isinstance(k, (list, range)):
            k = xp.asarray(list(k))
            if k.size == 0:
                k = k.astype(dtypes.int64)
        elif backend.is_array(k):
            k = backend.to_device(k, x.device)
        if isinstance(k, slice):
            if k.step is not None and int(k.step) <= 0:
                raise ValueError("step must be greater than zero")
        elif getattr(k, "ndim", None) is not None and not isinstance(k, (int, bool, numpy.generic)):
            if k.dtype.kind not in "iub":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            if k.ndim == 0 and k.dtype.kind in "iu":
                k = int(k)          # a 0-d integer tensor indexes like an int (a view)
            else:
                advanced = True
        converted.append(k)
    return tuple(converted), advanced


def _get_item(input, key, advanced):
    """GetItem with NumPy's IndexError in torch's words (dimension, not axis)."""
    try:
        return GetItem.apply(input, key, advanced)
    except IndexError as error:
        raise IndexError(str(error).replace("axis", "dimension")) from None


def getitem(input, key):
    """input[key] with torch's (NumPy's) indexing rules: ints, slices, None,
    Ellipsis, bool masks and integer tensors; basic indexing gives a view."""
    key, advanced = convert_key(input, key)
    out = _get_item(input, key, advanced)
    if advanced and out.numel():        # (not in GetItem: gather_valid's keys and the backwards' are checked)
        check_index_arrays(*indexed_region(input.array, key))
    return out


def index_put(input, key, value, accumulate=False):
    """A copy of input with ``input[key] = value`` (``accumulate``: ``+=``)."""
    key, advanced = convert_key(input, key)
    if isinstance(value, Tensor):
        value = value.to(device=input.device, dtype=input.dtype)
    else:
        value = input.dtype.type(value)
    return IndexPut.apply(input, value, key, advanced, accumulate)


def gather(input, dim, index):
    """out[i][j][k] = input[i][index[i][j][k]][k] for dim=1 (torch.gather)."""
    dim = wrap_dim(dim, input.ndim)
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype}")
    if input.ndim == 0 and index.ndim <= 1:      # a scalar gathers as a 1-element vector (torch)
        return reshape(gather(reshape(input, (1,)), 0, reshape(index, (-1,))), index.shape)
    if index.ndim == 0 and input.ndim == 1:      # a 0-d index gathers one element (torch)
        return reshape(gather(input, dim, reshape(index, (1,))), ())
    if index.numel() == 0:                       # torch checks nothing more for an empty index
        return Tensor._make(input.xp.zeros(index.shape, dtype=input.dtype)) + input.sum().to(input.dtype)
    if index.ndim != input.ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for d in range(input.ndim):
        if d != dim and index.shape[d] > input.shape[d]:
            raise RuntimeError(f"Size does not match at dimension {d} expected index "
                               f"{list(index.shape)} to be no larger than self {list(input.shape)} "
                               f"apart from dimension {dim}")
    idx = backend.to_device(index.array, input.device)
    low, high = int(idx.min()), int(idx.max())       # (a read of two numbers on the GPU, torch's check)
    if low < 0 or high >= input.shape[dim]:
        raise RuntimeError(f"index {high if high >= input.shape[dim] else low} is out of bounds for "
                           f"dimension {dim} with size {input.shape[dim]}")
    return gather_valid(input, dim, index)


def gather_valid(input, dim, index):
    """gather with indices known to be valid (what sort, topk and max(dim) computed): no check, no read."""
    xp = input.xp
    key = []
    for d in range(input.ndim):
        if d == dim:
            key.append(backend.to_device(index.array, input.device))
        else:
            shape = [1] * input.ndim
            shape[d] = index.shape[d]
            key.append(xp.arange(index.shape[d]).reshape(shape))
    return GetItem.apply(input, tuple(key), True)


def take_along_dim(input, indices, dim=None):
    """Values at ``indices`` along ``dim`` (gather, input and indices broadcast
    against each other in the other dims); the flattened input when dim is None."""
    if dim is None:
        return gather(reshape(input, (-1,)), 0, reshape(indices, (-1,)))
    if input.ndim != indices.ndim:
        raise RuntimeError(f"torch.take_along_dim(): input and indices should have the same number of dimensions, "
                           f"but got {input.ndim} dimensions for input, and {indices.ndim} dimensions for indices")
    wrap_dim_of_tensor(dim, input.ndim)
    size = input.shape[wrap_dim(dim, input.ndim)]
    if indices.numel() and size and bool(((indices.array < 0) | (indices.array >= size)).any()):
        # torch 2.13 takes the indices modulo the size along dim (-1 the last, size the first; not so with dim=None)
        indices = Tensor._make(indices.array % size)
    if input.ndim != indices.ndim:
        raise RuntimeError(f"torch.take_along_dim(): input and indices should have the same number of dimensions, "
                           f"but got {input.ndim} dimensions for input, and {indices.ndim} dimensions for indices")
    dim = wrap_dim(dim, input.ndim)
    if input.ndim:
        others = [n for d, n in enumerate(input.shape) if d != dim]
        index_others = [n for d, n in enumerate(indices.shape) if d != dim]
        shape = list(validation.broadcast_shapes(others, index_others))
        input = expand(input, tuple(shape[:dim] + [input.shape[dim]] + shape[dim:]))
        indices = expand(indices, tuple(shape[:dim] + [indices.shape[dim]] + shape[dim:]))
    return gather(input, dim, indices)


def index_select(input, dim, index):
    """The entries of ``input`` at ``index`` (1-D integers) along ``dim``."""
    dim = wrap_dim(dim, input.ndim)
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if index.dtype.kind not in "iu":
        raise RuntimeError(f"index_select(): Expected dtype int32/int64 for index but got: {index.dtype}")
    if input.ndim == 0:
        if index.numel() != 1:
            raise RuntimeError(f"index_select(): Index to scalar can have only 1 value, got {index.numel()} "
                               "value(s)")
        return reshape(index_select(reshape(input, (1,)), 0, index), ())
    if index.numel() and input.shape[dim] == 0:
        if input.ndim == 1:
            raise IndexError("index out of range in self")
        raise RuntimeError("index_select(): self indexing axis dim should be positive")
    if index.numel() and backend.xp_for(index.array) is numpy:
        low, high = int(index.array.min()), int(index.array.max())
        if low < 0 or high >= input.shape[dim]:
            if dim == 1 or input.ndim > 1 and input.numel() == 0:   # torch's CPU kernel for these (of 2+ dims)
                raise RuntimeError(f"INDICES element is out of DATA bounds, id="
                                   f"{next(int(i) for i in index.array.reshape(-1) if not 0 <= i < input.shape[dim])}"
                                   f" axis_dim={input.shape[dim]}")
            raise IndexError("index out of range in self")
    elif index.numel():                 # CuPy would take it modulo the size: a check in [0, size) without a sync
        key, _ = convert_key(input, (slice(None),) * dim + (index.reshape(-1),))
        check_indices(key[-1], input.shape[dim], device_errors.POSITION)
        return _get_item(input, key, True)
    return getitem(input, (slice(None),) * dim + (index.reshape(-1),))


def index_select_valid(input, dim, index):
    """index_select with indices known to be valid (computed here, or checked already: embedding's, a scatter's
    backward): no check, no launch for one (gather_valid's twin)."""
    if input.ndim == 0:
        return reshape(index_select_valid(reshape(input, (1,)), 0, index), ())
    key = (slice(None),) * dim + (backend.to_device(index.array, input.device).reshape(-1),)
    return _get_item(input, key, True)


def masked_select(input, mask):
    """The elements where ``mask`` is True, as a 1-D tensor."""
    input, mask = broadcast_tensors(input, mask)
    return getitem(input, mask)


def narrow(input, dim, start, length):
    """The slice start:start+length along ``dim`` (a view)."""
    dim = wrap_dim(dim, input.ndim)
    start = start + input.shape[dim] if start < 0 else start
    if not 0 <= start <= start + length <= input.shape[dim]:
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size "
                           f"({input.shape[dim]}).")
    return getitem(input, (slice(None),) * dim + (slice(start, start + length),))


def select(input, dim, index):
    """The slice at ``index`` along ``dim`` (a view, the dim removed)."""
    dim = wrap_dim(dim, input.ndim)
    return getitem(input, (slice(None),) * dim + (index,))


# -- joining and splitting -----------------------------------------------------------------

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


def cat(tensors, dim=0, *, axis=None):
    """Concatenate tensors along an existing dim (dtypes are promoted; empty
    1-D tensors are skipped, as torch does, for the accumulate-in-a-loop idiom)."""
    tensors = list(tensors)
    if axis is not None:
        dim = axis
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor):
            raise TypeError(f"expected Tensor as element {i} in argument 0, but got {type(t).__name__}")
        if t.ndim == 0:
            raise RuntimeError(f"zero-dimensional tensor (at position {i}) cannot be concatenated")
    if len(tensors) > 1:
        dtype = dtypes.result_type(*tensors)
        tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    kept = [t for t in tensors if not (t.ndim == 1 and t.shape[0] == 0)]
    if not kept:
        return tensors[0].clone()
    if len(kept) < len(tensors):
        # a skipped empty tensor still joins the graph (the result requires grad, as torch's; its gradient is empty)
        skipped = [t for t in tensors if t.ndim == 1 and t.shape[0] == 0 and t.requires_grad]
        out = cat(kept, dim)
        return out + builtins.sum(t.sum() for t in skipped) * 0 if skipped and is_grad_enabled() else out
    ref = tensors[0]
    dim = wrap_dim(dim, ref.ndim)
    for i, t in enumerate(tensors):
        if t.ndim != ref.ndim:
            raise RuntimeError(f"Tensors must have same number of dimensions: got {ref.ndim} and {t.ndim}")
        if any(a != b for d, (a, b) in enumerate(zip(t.shape, ref.shape)) if d != dim):
            raise RuntimeError(
                f"Sizes of tensors must match except in dimension {dim}. Expected size "
                f"{ref.shape[1 - dim if ref.ndim > 1 else 0]} but got size {t.shape[1 - dim if t.ndim > 1 else 0]} "
                f"for tensor number {i} in the list.")
    if len(tensors) == 1:
        return tensors[0].clone()
    return Cat.apply(dim, *tensors)


concat = concatenate = cat


def stack(tensors, dim=0):
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    wrap_dim(dim, tensors[0].ndim + 1)
    for i, t in enumerate(tensors[1:], 1):
        if t.shape != tensors[0].shape:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(tensors[0].shape)} at entry 0 and {list(t.shape)} at entry {i}")
    dim = wrap_dim(dim, tensors[0].ndim + 1)
    parts = [unsqueeze(t, dim) for t in tensors]
    return parts[0].clone() if len(parts) == 1 else cat(parts, dim)


def hstack(tensors):
    """Concatenate along dim 1 (dim 0 for 1-D tensors)."""
    tensors = list(tensors)
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    """Stack rows: 1-D tensors become rows, then concatenate along dim 0."""
    return cat([t.reshape(1, -1) if t.ndim < 2 else t for t in tensors], 0)


def split(input, split_size_or_sections, dim=0):
    """Pieces of ``split_size`` along ``dim`` (the last may be shorter), or of the given sizes."""
    dim = wrap_dim(dim, input.ndim)
    n = input.shape[dim]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        if size < 0:
            raise RuntimeError(f"split expects split_size be non-negative, but got split_size={size}")
        if size == 0 and n:
            raise RuntimeError(f"split_size can only be 0 if dimension size is 0, but got dimension size of {n}")
        sizes = [builtins.min(size, n - start) for start in range(0, n, size)] if size else []
        sizes = sizes or [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {dim}), but got split_sizes={sizes}")
    if len(sizes) > 1 and input.requires_grad and is_grad_enabled():
        return SplitWithSizes.apply(input, tuple(sizes), dim)    # one node: its backward is one cat
    lead = (slice(None),) * dim
    out, start = [], 0
    for size in sizes:
        out.append(getitem(input, lead + (slice(start, start + size),)))
        start += size
    return tuple(out)


class SplitWithSizes(InternalFunction):
    """Pieces of x along ``dim`` (views) as the outputs of one node, whose
    backward concatenates their gradients: a recurrence that reads a sequence
    step by step pays one pass in backward, where a slice per step would
    write each step's gradient into zeros of the whole sequence's size."""

    @staticmethod
    def forward(ctx, x, sizes, dim):
        ctx.dim = dim
        lead = (slice(None),) * dim
        pieces, start = [], 0
        for size in sizes:
            pieces.append(x[lead + (slice(start, start + size),)])
            start += size
        return tuple(pieces)

    @staticmethod
    def backward(ctx, *grads):
        return (grads[0] if len(grads) == 1 else Cat.apply(ctx.dim, *grads)), None, None


def split_with_sizes(input, split_sizes, dim=0):
    """Pieces of the given sizes along ``dim`` (views), torch.split_with_sizes;
    one autograd node for all of them (SplitWithSizesBackward0, as torch).  As
    in torch, the pieces are not meant to be modified in place."""
    dim = wrap_dim(dim, input.ndim)
    sizes = [int(size) for size in split_sizes]
    if any(size < 0 for size in sizes) or builtins.sum(sizes) != input.shape[dim]:
        raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {input.shape[dim]} "
                           f"(input tensor's size at dimension {dim}), but got split_sizes={sizes}")
    return SplitWithSizes.apply(input, tuple(sizes), dim)


def chunk(input, chunks, dim=0):
    """At most ``chunks`` pieces of equal size along ``dim``."""
    if chunks <= 0:
        raise RuntimeError("chunk expects `chunks` to be greater than 0")
    n = input.shape[wrap_dim(dim, input.ndim)]
    if n == 0:          # torch: `chunks` empty pieces
        return split(input, [0] * chunks, dim)
    return split(input, builtins.max(1, -(-n // chunks)), dim)


def tensor_split(input, indices_or_sections, dim=0):
    """Split into ``n`` nearly equal pieces, or at the given indices, along ``dim``."""
    if input.ndim == 0:
        raise RuntimeError("tensor_split expected at least a 1-dimensional tensor, but got a tensor with 0 dims")
    dim = wrap_dim(dim, input.ndim)
    n = input.shape[dim]
    if isinstance(indices_or_sections, int):
        k = indices_or_sections
        if k <= 0:
            raise RuntimeError(f"number of sections must be larger than 0, got {k}")
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        return split(input, sizes, dim)
    # input[:i0], input[i0:i1], ..., input[ik:] with Python's slice rules (negative indices count from the end)
    bounds = [int(i) for i in indices_or_sections]
    lead = (slice(None),) * dim
    return tuple(getitem(input, lead + (slice(start, stop),))
                 for start, stop in zip([0] + bounds, bounds + [None]))


def unbind(input, dim=0):
    """The slices along ``dim``, as a tuple."""
    dim = wrap_dim(dim, input.ndim)
    lead = (slice(None),) * dim
    return tuple(getitem(input, lead + (i,)) for i in range(input.shape[dim]))


class Flip(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims):
        ctx.dims = dims
        return ctx.xp.flip(x, axis=dims).copy() if dims else x.copy()

    @staticmethod
    def backward(ctx, grad):
        return Flip.apply(grad, ctx.dims), None


def flip(input, dims):
    """The order of elements reversed along ``dims`` (a copy; the method takes ints too)."""
    dims = sequence_arg(dims, "flip", "dims", 2)
    wrapped = tuple(sorted({wrap_dim(d, input.ndim) for d in dims}))
    if len(wrapped) != len(dims):
        raise RuntimeError(f"dim {dims[0]} appears multiple times in the list of dims")
    return Flip.apply(input, wrapped if input.ndim else ())


def fliplr(input):
    """The order of columns reversed (dim 1)."""
    if input.ndim < 2:
        raise RuntimeError("Input must be >= 2-d.")
    return flip(input, (1,))


def flipud(input):
    """The order of rows reversed (dim 0)."""
    if input.ndim < 1:
        raise RuntimeError("Input must be >= 1-d.")
    return flip(input, (0,))


class Roll(InternalFunction):
    @staticmethod
    def forward(ctx, x, shifts, dims):
        ctx.shifts, ctx.dims = shifts, dims
        return ctx.xp.roll(x, shifts, axis=dims)

    @staticmethod
    def backward(ctx, grad):
        back = tuple(-s for s in ctx.shifts) if isinstance(ctx.shifts, tuple) else -ctx.shifts
        return Roll.apply(grad, back, ctx.dims), None, None


def roll(input, shifts, dims=None):
    """Elements shifted cyclically along ``dims`` (the flattened tensor when None or ())."""
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = () if dims is None else (dims,) if isinstance(dims, int) else tuple(dims)
    if not shifts:
        raise RuntimeError("`shifts` required")
    if not dims:
        if len(shifts) != 1:
            raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:0")
        return Roll.apply(input.flatten(), shifts[0], None).reshape(input.shape)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    if input.numel() == 0:      # torch's roll copies an empty tensor before it looks at dims
        return input.clone()
    dims = tuple(wrap_dim_of_tensor(d, input.ndim) for d in dims)
    return Roll.apply(input, shifts, dims)


class Triangle(InternalFunction):
    """tril / triu: the lower or upper triangle of the last two dims, the rest zeroed."""

    @staticmethod
    def forward(ctx, x, diagonal, upper):
        ctx.diagonal, ctx.upper = diagonal, upper
        return (ctx.xp.triu if upper else ctx.xp.tril)(x, diagonal)

    @staticmethod
    def backward(ctx, grad):
        return Triangle.apply(grad, ctx.diagonal, ctx.upper), None, None


def tril(input, diagonal=0):
    """The lower triangle (on and below ``diagonal``) of the last two dims."""
    if input.ndim < 2:
        raise RuntimeError("tril: input tensor must have at least 2 dimensions")
    return Triangle.apply(input, diagonal, False)


def triu(input, diagonal=0):
    """The upper triangle (on and above ``diagonal``) of the last two dims."""
    if input.ndim < 2:
        raise RuntimeError("triu: input tensor must have at least 2 dimensions")
    return Triangle.apply(input, diagonal, True)


def repeat(input, *sizes):
    """The tensor tiled ``sizes`` times along each dim (torch's Tensor.repeat)."""
    sizes = method_sizes(sizes, "repeat", "repeats")
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of "
                           "dimensions of tensor")
    validation.non_negative(sizes)
    x = input.reshape((1,) * (len(sizes) - input.ndim) + input.shape)
    expanded_shape, final = [], []
    for n, r in zip(x.shape, sizes):
        expanded_shape += [r, n]
        final.append(r * n)
    x = x.reshape(tuple(v for n in x.shape for v in (1, n)))
    out = expand(x, tuple(expanded_shape)).reshape(tuple(final))
    # a copy always, as torch's (the reshape is a view when every count is 1, or n is 1)
    return out.clone() if backend.may_share_memory(out.array, input.array) else out


def tile(input, dims):
    """The tensor repeated ``dims`` times along each dim (leading ones added as needed)."""
    dims = sequence_arg(dims, "tile", "dims", 2)
    if len(dims) < input.ndim:
        dims = (1,) * (input.ndim - len(dims)) + dims
    return repeat(input, dims)


def repeat_interleave(input, repeats, dim=None):
    """Each element repeated ``repeats`` times along ``dim`` (the flattened tensor when None)."""
    if dim is None:
        input, dim = input.reshape(-1), 0
    dim = wrap_dim_of_tensor(dim, input.ndim) if isinstance(repeats, Tensor) else wrap_dim(dim, input.ndim)
    if isinstance(repeats, Tensor):
        counts = backend.to_device(repeats.array, backend.CPU)
        if counts.size and counts.min() < 0:
            raise RuntimeError("repeats can not be negative")
    else:
        counts = numpy.full(input.shape[dim], int(repeats))
    index = numpy.repeat(numpy.arange(input.shape[dim]), counts)
    return index_select_valid(input, dim, Tensor._make(backend.to_device(index, input.device)))


class Pad(InternalFunction):
    """Constant padding of the last dims (negative pads crop)."""

    @staticmethod
    def forward(ctx, x, widths, value):
        ctx.crop = tuple(slice(before, n + before) for n, (before, _) in zip(x.shape, widths))
        ctx.shape = x.shape
        out_shape = tuple(n + before + after for n, (before, after) in zip(x.shape, widths))
        out = ctx.xp.full(out_shape, value, dtype=x.dtype)
        src = tuple(slice(builtins.max(-before, 0), n - builtins.max(-after, 0))
                    for n, (before, after) in zip(x.shape, widths))
        dst = tuple(slice(builtins.max(before, 0), builtins.max(before, 0) + (s.stop - s.start))
                    for s, (before, _) in zip(src, widths))
        out[dst] = x[src]
        ctx.src, ctx.dst = src, dst
        return out

    @staticmethod
    def backward(ctx, grad):
        return PadBackward.apply(grad, ctx.shape, ctx.src, ctx.dst), None, None


class PadBackward(InternalFunction):
    @staticmethod
    def forward(ctx, grad, shape, src, dst):
        ctx.src, ctx.dst, ctx.shape = src, dst, grad.shape
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        out[src] = grad[dst]
        return out

    @staticmethod
    def backward(ctx, grad_grad):
        out = ctx.xp.zeros(ctx.shape, dtype=grad_grad.dtype)
        out[ctx.dst] = grad_grad.array[ctx.src]
        return Tensor._make(out), None, None, None


def _check_non_constant_pad(input, length, widths, mode):
    """torch's rules for reflect, replicate and circular padding: k padded dims of a (k + 1)-D input or of a
    batch of them, non-empty dims, reflect's padding less than the dim and circular's no more than it."""
    k = length // 2
    if input.ndim not in (k + 1, k + 2):
        raise NotImplementedError(f"Padding size {length} is not supported for {input.ndim}D input tensor.")
    first = 0 if input.ndim == k + 1 else 1
    if mode != "circular" and any(n == 0 for n in input.shape[first:]):
        raise RuntimeError(f"Expected {k + 1}D or {k + 2}D (batch mode) tensor with possibly 0 batch size and other "
                           f"non-zero dimensions for input, but got: {list(input.shape)}")
    for d in range(input.ndim - k, input.ndim):
        n, (before, after) = input.shape[d], widths[d]
        if mode == "reflect" and (before >= n or after >= n):
            raise RuntimeError(f"Argument #4: Padding size should be less than the corresponding input dimension, "
                               f"but got: padding ({before}, {after}) at dimension {d} of input {list(input.shape)}")
        if mode == "circular" and (before > n or after > n):
            raise RuntimeError("Padding value causes wrapping around more than once.")


def pad(input, pad, mode="constant", value=None):
    """torch.nn.functional.pad: ``pad`` = (left, right) of the last dim, then
    of the one before, ...; modes 'constant', 'reflect', 'replicate', 'circular'."""
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    if len(pad) // 2 > input.ndim:
        raise RuntimeError(f"Padding length should be less than or equal to two times the input dimension but got "
                           f"padding length {len(pad)} and input of dimension {input.ndim}")
    widths = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        widths[input.ndim - 1 - i] = (int(pad[2 * i]), int(pad[2 * i + 1]))
    for d, (n, (before, after)) in enumerate(zip(input.shape, widths)):
        if n + before + after < 0:
            raise RuntimeError(f"The input size {n}, plus negative padding {before} and {after} resulted in a "
                               f"negative output size, which is invalid. Check dimension {d} of your input.")
    if mode == "constant":
        if any(n + builtins.min(before, 0) + builtins.min(after, 0) < 0 for n, (before, after) in
               zip(input.shape, widths)):       # torch narrows the input by the negative pads first
            raise RuntimeError("narrow(): length must be non-negative.")
        return Pad.apply(input, tuple(widths), 0 if value is None else value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"pad: mode {mode!r} is not supported")
    _check_non_constant_pad(input, len(pad), widths, mode)
    if not any(before or after for before, after in widths):
        return input.clone()
    out = input
    for d, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        n = out.shape[d]
        positions = numpy.arange(-before, n + after)
        if mode == "replicate":
            index = numpy.clip(positions, 0, n - 1)
        elif mode == "circular":
            index = positions % n
        else:
            period = 2 * (n - 1)
            index = numpy.abs((positions + period) % period) if period else numpy.zeros_like(positions)
            index = numpy.where(index >= n, period - index, index)
        out = index_select_valid(out, d, Tensor._make(backend.to_device(index.astype(numpy.int64), input.device)))
    return out


# -- diagonals, strided views, grids ----------------------------------------------------

def _diagonal_view(xp, x, offset, dim1, dim2):
    """The elements x[..., i, i + offset] (over dims dim1, dim2) as a strided view
    of x's memory, the diagonal last (torch's layout), writable where x is."""
    n1, n2 = x.shape[dim1], x.shape[dim2]
    length = builtins.max(0, builtins.min(n1, n2 - offset) if offset >= 0 else builtins.min(n1 + offset, n2))
    if length:
        start = [slice(None)] * x.ndim
        start[dim2 if offset >= 0 else dim1] = slice(abs(offset), None)
        x = x[tuple(start)]
    others = [d for d in range(x.ndim) if d not in (dim1, dim2)]
    shape = tuple(x.shape[d] for d in others) + (length,)
    strides = tuple(x.strides[d] for d in others) + (x.strides[dim1] + x.strides[dim2],)
    return xp.lib.stride_tricks.as_strided(x, shape, strides)


class Diagonal(InternalFunction):
    """x[..., i, i + offset] over (dim1, dim2), a view; its backward writes the
    gradient onto that diagonal of zeros (DiagonalScatter, whose backward is this)."""
    is_view = True

    @staticmethod
    def forward(ctx, x, offset, dim1, dim2):
        ctx.geometry = (x.shape, offset, dim1, dim2)
        return _diagonal_view(ctx.xp, x, offset, dim1, dim2)

    @staticmethod
    def backward(ctx, grad):
        return DiagonalScatter.apply(grad, *ctx.geometry), None, None, None


class DiagonalScatter(InternalFunction):
    """Zeros of ``shape`` with ``values`` on the diagonal (offset, dim1, dim2)."""

    @staticmethod
    def forward(ctx, values, shape, offset, dim1, dim2):
        ctx.geometry = (offset, dim1, dim2)
        out = ctx.xp.zeros(shape, dtype=values.dtype)
        _diagonal_view(ctx.xp, out, offset, dim1, dim2)[...] = values
        return out

    @staticmethod
    def backward(ctx, grad):
        return Diagonal.apply(grad, *ctx.geometry), None, None, None, None


def diagonal(input, offset=0, dim1=0, dim2=1):
    """The diagonal ``offset`` above the main one (below when negative) of the
    2-D slices over (dim1, dim2), as a view whose last dim runs along it."""
    d1, d2 = wrap_dim(dim1, input.ndim), wrap_dim(dim2, input.ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return Diagonal.apply(input, int(offset), d1, d2)


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """A tensor whose 2-D slices over (dim1, dim2) hold input's last dim on their
    diagonal ``offset`` (zeros elsewhere): one dim more than input."""
    ndim = input.ndim + 1
    d1, d2 = wrap_dim(dim1, ndim), wrap_dim(dim2, ndim)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n = input.shape[-1] + abs(int(offset)) if input.ndim else 1 + abs(int(offset))
    if input.ndim == 0:
        input = reshape(input, (1,))
    others = iter(input.shape[:-1])
    shape = tuple(n if d in (d1, d2) else next(others) for d in range(ndim))
    return DiagonalScatter.apply(input, shape, int(offset), d1, d2)


def diag(input, diagonal=0):
    """A 1-D input as the ``diagonal`` of a square matrix; a 2-D input's
    ``diagonal`` as a 1-D tensor (a copy)."""
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim != 2:
        raise RuntimeError(f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")
    return Diagonal.apply(input, int(diagonal), 0, 1).clone()


def diagflat(input, offset=0):
    """The flattened input on the ``offset`` diagonal of a square matrix."""
    return diag_embed(reshape(input, (-1,)), offset, 0, 1)


def trace(input):
    """The sum of the main diagonal of a 2-D tensor."""
    if input.ndim != 2:
        raise RuntimeError("trace: expected a matrix, but got tensor with dim " + str(input.ndim))
    return diagonal(input).sum()


class _StorageMap(InternalFunction):
    """Values moved between element positions of one memory: ``values`` added
    at positions ``source`` of zeros of ``size``, read back at ``target`` (the
    gradient of as_strided; its own adjoint with source and target swapped)."""

    @staticmethod
    def forward(ctx, values, source, target, size):
        ctx.geometry = (source, target, size)
        memory = ctx.xp.zeros(size, dtype=values.dtype)
        backend.scatter_add(memory, source.reshape(-1), values.reshape(-1))
        return memory[target]

    @staticmethod
    def backward(ctx, grad):
        source, target, size = ctx.geometry
        return _StorageMap.apply(grad, target, source, size), None, None, None


def _positions(xp, shape, strides, offset):
    """The element positions a (shape, strides in elements, offset) view reads."""
    position = xp.full(shape, offset, dtype=numpy.int64)
    for d, (n, s) in enumerate(zip(shape, strides)):
        axis = [1] * len(shape)
        axis[d] = n
        position = position + xp.arange(n, dtype=numpy.int64).reshape(axis) * s
    return position


class AsStrided(InternalFunction):
    is_view = True

    @staticmethod
    def forward(ctx, x, size, stride, offset, input_strides):
        itemsize = x.dtype.itemsize
        ctx.geometry = (x.shape, size, stride, offset, input_strides)
        as_strided = ctx.xp.lib.stride_tricks.as_strided
        start = as_strided(x, (offset + 1,), (itemsize,))[offset:] if offset else x
        return as_strided(start, size, tuple(s * itemsize for s in stride))

    @staticmethod
    def backward(ctx, grad):
        shape, size, stride, offset, input_strides = ctx.geometry
        xp = grad.xp
        source = _positions(xp, size, stride, offset)
        target = _positions(xp, shape, input_strides, 0)
        extent = 1 + builtins.max(int(source.max()) if source.size else 0, int(target.max()) if target.size else 0)
        return _StorageMap.apply(grad, source, target, extent), None, None, None, None


def as_strided(input, size, stride, storage_offset=None):
    """A view of input's memory with the given ``size`` and ``stride`` (in
    elements) from element ``storage_offset`` of input's start (torch's
    storage offset for a tensor that starts its storage).  Writes through
    overlapping elements alias; the gradient sums over them."""
    size = tuple(int(n) for n in size)
    stride = tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    offset = int(storage_offset or 0)
    if any(s < 0 for s in stride):
        raise RuntimeError("as_strided: Negative strides are not supported at the moment, got strides: "
                           f"{list(stride)}")
    itemsize = input.dtype.itemsize
    input_strides = tuple(s // itemsize for s in input.array.strides)
    if any(s < 0 for s in input_strides):
        input = input.contiguous()
        input_strides = tuple(s // itemsize for s in input.array.strides)
    extent = offset + 1 + builtins.sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    available = 1 + builtins.sum((n - 1) * s for n, s in zip(input.shape, input_strides)) if input.numel() else 0
    if extent > available:
        raise RuntimeError(f"setStorage: sizes {list(size)}, strides {list(stride)}, storage offset {offset}, and "
                           f"itemsize {itemsize} requiring a storage size of {extent * itemsize} are out of bounds "
                           f"for storage of size {available * itemsize}")
    return AsStrided.apply(input, size, stride, offset, input_strides)


def meshgrid(*tensors, indexing=None):
    """Coordinate grids of 1-D (or 0-d) tensors: with indexing='ij' the k-th
    output varies along dim k; 'xy' swaps the first two dims (as NumPy's).
    Each output is an expanded view of its input."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: {indexing}')
    if not tensors:
        raise RuntimeError("torch.meshgrid expects a non-empty TensorList")
    for t in tensors:
        if t.ndim > 1:
            raise RuntimeError(f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t.ndim}D")
    first = tensors[0]
    for t in tensors[1:]:
        if t.dtype != first.dtype:
            raise RuntimeError("torch.meshgrid: Expected all tensors in the tensor list to have the same dtype.")
        if t.device != first.device:
            raise RuntimeError("torch.meshgrid: Expected all tensors in the tensor list to have the same device.")
    order = list(range(len(tensors)))
    swap = indexing == "xy" and len(tensors) >= 2
    if swap:
        order[0], order[1] = 1, 0
    sizes = [builtins.max(t.numel(), 1) if t.ndim == 0 else t.shape[0] for t in tensors]
    grid = tuple(sizes[k] for k in order)
    out = []
    for k, t in enumerate(tensors):
        shape = [1] * len(tensors)
        shape[order.index(k)] = sizes[k]
        out.append(expand(reshape(t, tuple(shape)), grid))
    return tuple(out)


def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r): each group of r^2 channels spread
    over an r x r block (sub-pixel convolution's rearrangement)."""
    r = int(upscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_shuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *batch, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(f"pixel_shuffle expects its input's 'channel' dimension to be divisible by the square of "
                           f"upscale_factor, but input.size(-3)={c} is not divisible by {r * r}")
    n = len(batch)
    x = reshape(input, tuple(batch) + (c // (r * r), r, r, h, w))
    x = permute(x, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2)).clone()     # a copy always, as torch's
    return reshape(x, tuple(batch) + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W), the inverse of pixel_shuffle."""
    r = int(downscale_factor)
    if input.ndim < 3:
        raise RuntimeError(f"pixel_unshuffle expects input to have at least 3 dimensions, but got input with "
                           f"{input.ndim} dimension(s)")
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *batch, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(f"pixel_unshuffle expects height and width to be divisible by downscale_factor, but "
                           f"input.size(-2)={h} and input.size(-1)={w} are not divisible by {r}")
    n = len(batch)
    x = reshape(input, tuple(batch) + (c, h // r, r, w // r, r))
    x = permute(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3)).clone()
    return reshape(x, tuple(batch) + (c * r * r, h // r, w // r))
