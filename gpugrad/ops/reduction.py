"""Reductions: sum, mean, prod, max/min, var/std, norm, and the row reductions
log-sum-exp, softmax and log_softmax.

The row reductions are fused Functions (DESIGN.md, "Fused ops"): the forward
keeps only what the backward needs (log-sum-exp keeps its N results, softmax
its output), and the backward is itself a Function, so second derivatives
work.  On a CUDA tensor reducing one dim they run the hand-written kernels of
``gpugrad/cuda/``; everywhere else the same math runs as array code below.
"""

import builtins
import collections

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.tensor import Tensor, _wrap_dim

MaxMin = collections.namedtuple("MaxMin", ["values", "indices"])


def normalize_dims(dim, ndim):
    """``dim`` (None, int or sequence) as a sorted tuple of non-negative dims."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        dims = tuple(sorted({_wrap_dim(d, ndim) for d in dim}))
        if len(dims) != len(dim):
            raise RuntimeError(f"dim {tuple(dim)} appears multiple times in the list of dims")
        return dims if ndim else ()
    return (_wrap_dim(dim, ndim),) if ndim else ()


def keepdim_shape(shape, dims):
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def accumulate_dtype(dtype):
    """Reductions over half accumulate in float32, as torch does."""
    return dtypes.float32 if dtype == dtypes.float16 else dtype


# -- sum, mean, prod ----------------------------------------------------------------

class Sum(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim, dtype):
        ctx.shape, ctx.dims = x.shape, dims
        out = x.sum(axis=dims, keepdims=keepdim, dtype=accumulate_dtype(dtype))
        return out.astype(dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(keepdim_shape(ctx.shape, ctx.dims)).expand(ctx.shape), None, None, None


class SumToSize(InternalFunction):
    """Sum a broadcast gradient back to ``shape`` (the engine's reduction)."""

    @staticmethod
    def forward(ctx, x, shape):
        ctx.shape = x.shape
        lead = x.ndim - len(shape)
        dims = tuple(range(lead)) + tuple(
            lead + i for i, n in enumerate(shape) if n == 1 and x.shape[lead + i] != 1)
        out = x.sum(axis=dims, keepdims=True, dtype=accumulate_dtype(x.dtype)) if dims else x
        return out.astype(x.dtype, copy=False).reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.expand(ctx.shape), None


class Prod(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = ctx.xp
        ctx.shape, ctx.dims = x.shape, dims
        out = x.prod(axis=dims, keepdims=keepdim, dtype=accumulate_dtype(x.dtype)).astype(x.dtype)
        if ctx.needs_input_grad[0]:
            if bool((x == 0).any()):
                # prod of the others cannot come from out / x: exclusive products instead
                ctx.save_for_backward(None, None, _product_of_others(xp, x, dims))
            else:
                ctx.save_for_backward(x, out, None)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, others = ctx.saved_tensors
        shape = keepdim_shape(ctx.shape, ctx.dims)
        grad = grad.reshape(shape)
        if others is not None:
            return grad * others, None, None
        return grad * out.reshape(shape) / x, None, None


def _product_of_others(xp, x, dims):
    """For each element, the product of the other elements of its reduction group."""
    moved = xp.moveaxis(x, dims, tuple(range(x.ndim - len(dims), x.ndim)))
    flat = moved.reshape(moved.shape[:x.ndim - len(dims)] + (-1,))
    ones = xp.ones(flat.shape[:-1] + (1,), dtype=x.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.cumprod(xp.concatenate([ones, flat[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    others = (left * right).reshape(moved.shape)
    return xp.moveaxis(others, tuple(range(x.ndim - len(dims), x.ndim)), dims)


def sum(x, dim=None, keepdim=False, dtype=None):
    """Sum over ``dim`` (None: all). Integer and bool tensors sum to int64."""
    dims = normalize_dims(dim, x.ndim)
    if dtype is None:
        dtype = x.dtype if x.dtype.kind == "f" else dtypes.int64
    return Sum.apply(x, dims, keepdim, dtypes.as_dtype(dtype))


def mean(x, dim=None, keepdim=False, dtype=None):
    """Mean over ``dim`` (None: all); floating-point tensors only."""
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype.kind != "f":
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {x.dtype}")
    dims = normalize_dims(dim, x.ndim)
    count = 1
    for d in dims:
        count *= x.shape[d]
    return Sum.apply(x, dims, keepdim, x.dtype) / count


def sum_to_size(x, shape):
    shape = tuple(shape)
    if x.shape == shape:
        return x
    lead = x.ndim - len(shape)
    if lead < 0 or builtins.any(n != 1 and n != x.shape[lead + i] for i, n in enumerate(shape)):
        raise RuntimeError(f"size {list(shape)} is not expandable to size {list(x.shape)}")
    return SumToSize.apply(x, shape)


def prod(x, dim=None, keepdim=False):
    return Prod.apply(x, normalize_dims(dim, x.ndim), keepdim)


# -- max and min ----------------------------------------------------------------------

class Extremum(InternalFunction):
    """amax / amin: the gradient is shared evenly among tied extrema, as in torch."""

    @staticmethod
    def forward(ctx, x, dims, keepdim, largest):
        if x.size == 0:
            raise RuntimeError("max(): Expected reduction dim to be specified for input.numel() "
                               "== 0. Specify the reduction dim with the 'dim' argument.")
        reduce = x.max if largest else x.min
        out = reduce(axis=dims, keepdims=True)
        if ctx.needs_input_grad[0]:
            hits = (x == out).astype(x.dtype)
            ctx.save_for_backward(hits / hits.sum(axis=dims, keepdims=True))
        ctx.shape, ctx.dims = x.shape, dims
        return out if keepdim else out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    @staticmethod
    def backward(ctx, grad):
        share, = ctx.saved_tensors
        return grad.reshape(keepdim_shape(ctx.shape, ctx.dims)) * share, None, None, None


def amax(x, dim=None, keepdim=False):
    return Extremum.apply(x, normalize_dims(dim, x.ndim), keepdim, True)


def amin(x, dim=None, keepdim=False):
    return Extremum.apply(x, normalize_dims(dim, x.ndim), keepdim, False)


def _max_or_min(x, dim, keepdim, largest):
    if isinstance(dim, Tensor):            # max(a, b): elementwise
        from gpugrad.ops import elementwise
        return (elementwise.maximum if largest else elementwise.minimum)(x, dim)
    if dim is None:
        return Extremum.apply(x, normalize_dims(None, x.ndim), False, largest)
    from gpugrad.ops import shape
    d = _wrap_dim(dim, x.ndim)
    index = (argmax if largest else argmin)(x, d, keepdim=True)
    values = shape.gather(x, d, index)
    if not keepdim:
        values, index = values.squeeze(d), index.squeeze(d)
    return MaxMin(values, index)


def max(x, dim=None, keepdim=False):
    """``max(x)``: the largest element; ``max(x, dim)``: (values, indices);
    ``max(x, other)``: elementwise maximum."""
    return _max_or_min(x, dim, keepdim, True)


def min(x, dim=None, keepdim=False):
    return _max_or_min(x, dim, keepdim, False)


def argmax(x, dim=None, keepdim=False):
    return _arg_extremum(x, dim, keepdim, "argmax")


def argmin(x, dim=None, keepdim=False):
    return _arg_extremum(x, dim, keepdim, "argmin")


def _arg_extremum(x, dim, keepdim, name):
    xp = x.xp
    if dim is None:
        out = getattr(xp, name)(x.data.reshape(-1))
        out = out.reshape((1,) * x.ndim) if keepdim else out
    else:
        out = getattr(xp, name)(x.data, axis=_wrap_dim(dim, x.ndim), keepdims=keepdim)
    return Tensor._make(xp.asarray(out, dtype=dtypes.int64))


def any(x, dim=None, keepdim=False):
    return Tensor._make(x.xp.asarray(x.data.any(axis=normalize_dims(dim, x.ndim), keepdims=keepdim)))


def all(x, dim=None, keepdim=False):
    return Tensor._make(x.xp.asarray(x.data.all(axis=normalize_dims(dim, x.ndim), keepdims=keepdim)))


# -- statistics -------------------------------------------------------------------------

def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance over ``dim`` with Bessel's correction (``correction=1``) by default."""
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    dims = normalize_dims(dim, x.ndim)
    count = 1
    for d in dims:
        count *= x.shape[d]
    centered = x - mean(x, dims, keepdim=True)
    return sum(centered * centered, dims, keepdim) / builtins.max(count - correction, 0)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return var(x, dim, unbiased, keepdim, correction=correction).sqrt()


class Norm2(InternalFunction):
    """The Euclidean norm; its gradient is 0 (not nan) where the norm is 0, as in torch."""

    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = ctx.xp
        acc = x.astype(accumulate_dtype(x.dtype), copy=False)
        out = xp.sqrt((acc * acc).sum(axis=dims, keepdims=keepdim)).astype(x.dtype)
        ctx.save_for_backward(x, out)
        ctx.shape, ctx.dims = x.shape, dims
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        out = out.reshape(keepdim_shape(ctx.shape, ctx.dims))
        grad = grad.reshape(keepdim_shape(ctx.shape, ctx.dims))
        return (grad * x / out).masked_fill(out == 0, 0.0), None, None


def norm(x, p=2, dim=None, keepdim=False):
    """The p-norm over ``dim`` (None: all elements)."""
    dims = normalize_dims(dim, x.ndim)
    if p == 2 or p == "fro":
        return Norm2.apply(x, dims, keepdim)
    if p == float("inf"):
        return amax(x.abs(), dims, keepdim)
    if p == 1:
        return sum(x.abs(), dims, keepdim)
    return sum(x.abs() ** p, dims, keepdim) ** (1.0 / p)


# -- fused row reductions: log-sum-exp, softmax, log_softmax --------------------------------

def _fused_applies(x, dims):
    """The CUDA kernels take one reduced dim of a float16/32/64 CUDA array."""
    return len(dims) == 1 and backend.is_cupy_array(x) and x.dtype.kind == "f" and x.size > 0


def _to_rows(xp, x, dim):
    """x as a (rows, C) array whose rows have unit stride, with the reduced dim last."""
    moved = x if dim == x.ndim - 1 else xp.moveaxis(x, dim, -1)
    rows = moved.reshape(-1, moved.shape[-1]) if moved.ndim != 2 else moved
    if rows.strides[-1] != rows.itemsize:
        rows = xp.ascontiguousarray(rows)
    return rows, moved.shape


def _from_rows(xp, rows, moved_shape, dim, ndim):
    out = rows.reshape(moved_shape)
    return out if dim == ndim - 1 else xp.moveaxis(out, -1, dim)


def logsumexp_parts(xp, x, dims):
    """(m, ls) with log-sum-exp = m + ls over ``dims``, keepdims, in the
    accumulation dtype: m is the max (0 where it is +-inf, torch's rule, so
    all -inf gives -inf) and ls = log(sum(exp(x - m))).

    The backward needs exp(x - lse).  Computed as exp((x - m) - ls) it stays
    accurate when |lse| is large: for float32 logits near 1e4, x - m is exact,
    while x - lse would lose three digits to the rounding of lse.
    """
    if _fused_applies(x, dims):
        from gpugrad.cuda import fused
        rows, moved = _to_rows(xp, x, dims[0])
        shape = moved[:-1] + (1,)
        return tuple(_from_rows(xp, part.reshape(-1, 1), shape, dims[0], x.ndim)
                     for part in fused.logsumexp_forward(rows))
    acc = x.astype(accumulate_dtype(x.dtype), copy=False)
    m = acc.max(axis=dims, keepdims=True)
    m = xp.where(xp.isinf(m), 0, m).astype(acc.dtype, copy=False)
    terms = xp.subtract(acc, m)
    xp.exp(terms, out=terms)
    return m, xp.log(terms.sum(axis=dims, keepdims=True))


def shifted(xp, x, m, ls, exp):
    """(x - m) - ls, or its exp, in the accumulation dtype: one new array, the
    rest in place (the array code of the fused ops' second pass)."""
    out = x.astype(accumulate_dtype(x.dtype), copy=True)
    out -= m
    out -= ls
    if exp:
        xp.exp(out, out=out)
    return out


class LogSumExp(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        m, ls = logsumexp_parts(ctx.xp, x, dims)
        out = (m + ls).astype(x.dtype, copy=False)
        if not keepdim:
            out = out.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))
        ctx.save_for_backward(x, out, m, ls)
        ctx.shape, ctx.dims = x.shape, dims
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out, m, ls = ctx.saved_tensors
        shape = keepdim_shape(ctx.shape, ctx.dims)
        if is_grad_enabled():      # create_graph: the shift must stay linked to x
            m, ls = out.reshape(shape), 0.0
        return LogSumExpBackward.apply(x, m, ls, grad.reshape(shape), ctx.dims), None, None


class LogSumExpBackward(InternalFunction):
    """grad_x = g * exp((x - m) - ls): one pass over x; differentiable again."""

    @staticmethod
    def forward(ctx, x, m, ls, grad, dims):
        ctx.save_for_backward(x, m, ls, grad)
        ctx.dims = dims
        xp = ctx.xp
        acc = accumulate_dtype(x.dtype)
        if _fused_applies(x, dims) and getattr(ls, "dtype", None) == acc and m.dtype == acc:
            from gpugrad.cuda import fused
            rows, moved = _to_rows(xp, x, dims[0])
            g = xp.broadcast_to(grad, m.shape).astype(acc).reshape(-1)
            out = fused.logsumexp_backward(rows, m.reshape(-1), ls.reshape(-1), g)
            return _from_rows(xp, out, moved, dims[0], x.ndim)
        p = shifted(xp, x, m, ls, exp=True)
        p *= grad
        return p.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad_grad):
        x, m, ls, grad = ctx.saved_tensors
        p = ((x - m) - ls).exp()
        weighted = grad_grad * p
        grad_x = weighted * grad
        grad_shift = -grad_x.sum(ctx.dims, keepdim=True)
        return grad_x, grad_shift, grad_shift, weighted.sum(ctx.dims, keepdim=True), None


def _softmax_array(xp, x, dim, log):
    if _fused_applies(x, (dim,)):
        from gpugrad.cuda import fused
        rows, moved = _to_rows(xp, x, dim)
        return _from_rows(xp, fused.softmax_forward(rows, log), moved, dim, x.ndim)
    m, ls = logsumexp_parts(xp, x, (dim,))
    return shifted(xp, x, m, ls, exp=not log).astype(x.dtype, copy=False)


def _softmax_backward_array(xp, y, grad, dim, log):
    if _fused_applies(y, (dim,)) and grad.dtype == y.dtype:
        from gpugrad.cuda import fused
        y_rows, moved = _to_rows(xp, y, dim)
        g_rows, _ = _to_rows(xp, xp.broadcast_to(grad, y.shape), dim)
        return _from_rows(xp, fused.softmax_backward(y_rows, g_rows, log), moved, dim, y.ndim)
    dtype = y.dtype
    acc = accumulate_dtype(dtype)
    y, grad = y.astype(acc, copy=False), grad.astype(acc, copy=False)
    if log:
        out = xp.exp(y)
        out *= grad.sum(axis=dim, keepdims=True)
        xp.subtract(grad, out, out=out)
    else:
        out = grad - (grad * y).sum(axis=dim, keepdims=True)
        out *= y
    return out.astype(dtype, copy=False)


class SoftmaxBackward(InternalFunction):
    """grad_x = y * (g - sum(g * y)), from the saved output y; differentiable again."""
    log = False

    @staticmethod
    def forward(ctx, y, grad, dim):
        ctx.save_for_backward(y, grad)
        ctx.dim = dim
        return _softmax_backward_array(ctx.xp, y, grad, dim, ctx.log)

    @staticmethod
    def backward(ctx, grad_grad):
        y, grad = ctx.saved_tensors
        dim = ctx.dim
        dot_gg = (grad_grad * y).sum(dim, keepdim=True)
        dot_g = (grad * y).sum(dim, keepdim=True)
        grad_y = grad_grad * (grad - dot_g) - grad * dot_gg
        grad_grad_out = y * (grad_grad - dot_gg)
        return grad_y, grad_grad_out, None


class LogSoftmaxBackward(SoftmaxBackward):
    """grad_x = g - exp(y) * sum(g), from the saved output y; differentiable again."""
    log = True

    @staticmethod
    def backward(ctx, grad_grad):
        y, grad = ctx.saved_tensors
        dim = ctx.dim
        p = y.exp()
        grad_y = -grad_grad * p * grad.sum(dim, keepdim=True)
        grad_grad_out = grad_grad - (grad_grad * p).sum(dim, keepdim=True)
        return grad_y, grad_grad_out, None


class Softmax(InternalFunction):
    """Keeps only its output y; the backward is a Function of (y, grad)."""
    log = False
    backward_function = SoftmaxBackward

    @staticmethod
    def forward(ctx, x, dim):
        y = _softmax_array(ctx.xp, x, dim, ctx.log)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @staticmethod
    def backward(ctx, grad):
        y, = ctx.saved_tensors
        return ctx.backward_function.apply(y, grad, ctx.dim), None


class LogSoftmax(Softmax):
    log = True
    backward_function = LogSoftmaxBackward


def _floating_input(x, name, dtype):
    if dtype is not None:
        x = x.to(dtype)
    if x.dtype.kind != "f":
        raise RuntimeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    return x


def logsumexp(x, dim, keepdim=False):
    """log(sum(exp(x), dim)), computed stably (fused on CUDA)."""
    x = _floating_input(x, "logsumexp", None)
    return LogSumExp.apply(x, normalize_dims(dim, x.ndim), keepdim)


def softmax(x, dim, dtype=None):
    """exp(x) / sum(exp(x), dim), computed stably (fused on CUDA)."""
    x = _floating_input(x, "softmax", dtype)
    return Softmax.apply(x, _wrap_dim(dim, x.ndim) if x.ndim else 0)


def log_softmax(x, dim, dtype=None):
    """x - logsumexp(x, dim), computed stably (fused on CUDA)."""
    x = _floating_input(x, "log_softmax", dtype)
    return LogSoftmax.apply(x, _wrap_dim(dim, x.ndim) if x.ndim else 0)
