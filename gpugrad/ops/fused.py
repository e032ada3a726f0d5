"""The fused row ops: log-sum-exp, softmax, log_softmax and softmax
cross-entropy, one Function each, forward and backward side by side.

On a CUDA tensor reducing one dim they run the kernels of ``kernels/*.cu``
through ``gpugrad/cuda/fused.py`` (:func:`_kernel_rows` is the one dispatch);
elsewhere the NumPy twin below runs the same math in as few array passes as
NumPy allows.  Both keep only per-row values for backward (log-sum-exp and
cross-entropy keep (m, ls), softmax its output), give torch's results for nan
and infinities, and recompute in one pass in the backward.

The backward of each Function is the kernel (or twin) when no graph is being
built; under ``create_graph=True`` it is an expression of ordinary
differentiable ops, so higher derivatives work.

Cross-entropy computes its gradient in the forward, while it holds the row,
when that gradient will be wanted with the engine's implicit upstream 1
(``loss.backward()`` on the scalar loss): the backward then returns it
without touching the logits again (``engine.is_implicit_seed``).
"""

import warnings
import weakref

import numpy

from gpugrad import backend, dtypes
from gpugrad.amp import autocast_mode
from gpugrad.autograd import engine
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.cuda import errors as device_errors
from gpugrad.cuda import fused as kernels
from gpugrad.dims import keepdim_shape, normalize_dims, reduced_shape, wrap_dim
from gpugrad.ops.elementwise import where
from gpugrad.ops.shape import gather
from gpugrad.tensor import Tensor


def _kernel_rows(x, dims):
    """(x, RowLayout) when the CUDA kernels take this reduction (a CUDA array,
    one dim, not empty), else None: the NumPy twin runs instead."""
    if len(dims) != 1 or x.size == 0 or not backend.is_cupy_array(x):
        return None
    return kernels.layout_of(x, dims[0])


# -- the NumPy twin --------------------------------------------------------------------

def row_stats(xp, x, axis, weight=None, smoothing=False, overwrite=False):
    """(m, ls, e, weighted) over ``axis`` (keepdims, the accumulation dtype):
    m = the max (0 where it is not finite, so (m, ls) follow the kernels'
    conventions for nan and infinite rows), ls = log(sum(exp(x - m))), e =
    exp(x - m) (a new array the caller may reuse), and with ``smoothing``
    weighted = sum_c w_c (x_c - m), taken before the exp (no cancellation for
    large logits).  ``overwrite``: e may be written over x (when x is in the
    accumulation dtype already)."""
    acc = dtypes.accumulate_dtype(x.dtype)
    a = x.astype(acc, copy=False)
    m = a.max(axis=axis, keepdims=True)
    m = xp.where(xp.isfinite(m), m, 0).astype(acc, copy=False)
    e = xp.subtract(a, m, out=a if overwrite and a is x else None)
    weighted = None
    if smoothing:
        weighted = (backend.array_sum(e, axis=axis, keepdims=True) if weight is None else
                    xp.moveaxis(xp.tensordot(e, weight, axes=([axis], [0]))[..., None], -1, axis))
    xp.exp(e, out=e)
    ls = xp.log(e.sum(axis=axis, keepdims=True))
    return m, ls, e, weighted


def _softmax_times(xp, x, m, ls, scale):
    """scale * exp((x - m) - ls) in three passes over x: exp(x - m) * (scale *
    exp(-ls)), where 0 < exp(x - m) <= 1 and 1 <= exp(ls) <= C (no overflow, no
    cancellation of a large m against ls); rows whose statistics are not
    finite (nan, +inf, all -inf) take the direct formula, as torch's.  m, ls
    and scale broadcast against x (kept dims); the result is in the
    accumulation dtype."""
    out = xp.subtract(x.astype(m.dtype, copy=False), m)
    xp.exp(out, out=out)
    out *= scale * xp.exp(-ls)
    special = _special(xp, ls)
    if special is not None:
        direct = xp.exp((x.astype(m.dtype, copy=False) - m) - ls) * scale
        out = xp.where(special, direct, out)
    return out


def _lse_backward_twin(xp, x, m, ls, grad):
    """grad * exp((x - m) - ls) (m, ls, grad with kept dims), in x's dtype."""
    return _softmax_times(xp, x, m, ls, grad.astype(m.dtype, copy=False)).astype(x.dtype, copy=False)


def _special(xp, ls):
    """Rows whose statistics are not finite (nan, +inf, or only -inf): nan for softmax and cross-entropy."""
    special = ~xp.isfinite(ls)
    return special if bool(special.any()) else None


def _empty_reduction(xp, x, dims, keepdim, fill):
    shape = keepdim_shape(x.shape, dims) if keepdim else reduced_shape(x.shape, dims)
    return xp.full(shape, fill, dtype=x.dtype)


def _per_row(xp, grad, shape, dtype):
    """The upstream gradient as one value per row, in ``dtype``: a 1-D view
    (stride 0 for one value broadcast to every row), copied only when it must be."""
    g = xp.broadcast_to(grad, shape).reshape(-1)
    if g.dtype != dtype:
        g = g.astype(dtype)
    return g


# -- log-sum-exp -------------------------------------------------------------------------

class LogSumExp(InternalFunction):
    @staticmethod
    def forward(ctx, x, dims, keepdim):
        xp = ctx.xp
        ctx.dims, ctx.keepdim, ctx.shape, ctx.rows = dims, keepdim, x.shape, None
        if x.size == 0:
            ctx.save_for_backward(x, None, None)
            return _empty_reduction(xp, x, dims, keepdim, -numpy.inf)
        rows = _kernel_rows(x, dims)
        if rows is not None:
            ctx.rows = rows                  # x as the kernels read it (a copy only for unmergeable dims)
            m, ls, out = kernels.lse_rows(*rows)
            shape = keepdim_shape(x.shape, dims)
            m, ls = m.reshape(shape), ls.reshape(shape)
        else:
            m, ls, _, _ = row_stats(xp, x, dims)
            out = (m + ls).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, m, ls)
        return out.reshape(keepdim_shape(x.shape, dims) if keepdim else reduced_shape(x.shape, dims))

    @staticmethod
    def backward(ctx, grad):
        x, m, ls = ctx.saved_tensors
        rows = ctx.rows
        shape = keepdim_shape(ctx.shape, ctx.dims)
        grad = grad.reshape(shape)
        if m is None:                                     # empty input
            return Tensor._make(x.xp.zeros(ctx.shape, dtype=x.dtype)), None, None
        if is_grad_enabled():       # create_graph: ordinary ops, linked to x
            return (x - logsumexp(x, ctx.dims, keepdim=True)).exp() * grad, None, None
        xp = x.xp
        if rows is not None:
            g = _per_row(xp, grad.array, shape, x.dtype)
            out = kernels.apply_row_stats(*rows, m.array.reshape(-1), ls.array.reshape(-1), "lse_grad", g,
                                          g.strides[0] // g.itemsize)
            return Tensor._make(out), None, None
        return Tensor._make(_lse_backward_twin(xp, x.array, m.array, ls.array, grad.array)), None, None

    def release(self):
        super().release()
        self.rows = None


@autocast_mode.float32
def logsumexp(input, dim, keepdim=False, *, keepdims=None):
    """log(sum(exp(input), dim)), computed stably: -inf over an empty dim or a
    row of -inf, +inf with a +inf in the row, nan with a nan (fused on CUDA)."""
    x = _floating_input(input, "logsumexp", None)
    if keepdims is not None:
        keepdim = bool(keepdims)
    dims = normalize_dims(dim, x.ndim)
    return LogSumExp.apply(x, dims, keepdim)


# -- softmax and log_softmax -------------------------------------------------------------

def _softmax_array(ctx, x, dim, log):
    xp = ctx.xp
    rows = _kernel_rows(x, (dim,))
    if rows is not None:
        return kernels.softmax_rows(*rows, log)
    acc = dtypes.accumulate_dtype(x.dtype)
    if log:
        a = x.astype(acc, copy=False)
        m = a.max(axis=dim, keepdims=True)
        y = xp.subtract(a, m)
        y -= xp.log(xp.exp(y).sum(axis=dim, keepdims=True))
    else:
        _, ls, y, _ = row_stats(xp, x, dim)
        y *= xp.exp(-ls)
        special = _special(xp, ls)
        if special is not None:
            y = xp.where(special, xp.nan, y)
    return y.astype(x.dtype, copy=False)


def _softmax_backward_array(xp, y, grad, dim, log):
    rows = _kernel_rows(y, (dim,))
    if rows is not None and grad.dtype == y.dtype:
        g, g_layout = kernels.layout_of(xp.broadcast_to(grad, y.shape), dim)
        return kernels.softmax_rows_backward(rows[0], rows[1], g, g_layout, log)
    dtype = y.dtype
    acc = dtypes.accumulate_dtype(dtype)
    y, grad = y.astype(acc, copy=False), xp.broadcast_to(grad, y.shape).astype(acc, copy=False)
    if log:
        out = xp.exp(y)
        out *= grad.sum(axis=dim, keepdims=True)
        xp.subtract(grad, out, out=out)
    else:
        if y.ndim == 2 and dim == 1:
            dot = xp.einsum("ij,ij->i", grad, y)[:, None]     # one pass, no temporary
        else:
            dot = (grad * y).sum(axis=dim, keepdims=True)
        out = xp.subtract(grad, dot)
        out *= y
    return out.astype(dtype, copy=False)


class Softmax(InternalFunction):
    """softmax along one dim; keeps only its output y."""
    log = False

    @classmethod
    def forward(cls, ctx, x, dim):
        if x.size == 0:
            y = x.copy()
        else:
            y = _softmax_array(ctx, x, dim, cls.log)
        ctx.save_for_backward(y)
        ctx.dim = dim
        return y

    @classmethod
    def backward(cls, ctx, grad):
        y, = ctx.saved_tensors
        dim = ctx.dim
        if is_grad_enabled():      # create_graph: ordinary ops
            if cls.log:
                return grad - y.exp() * grad.sum(dim, keepdim=True), None
            return y * (grad - (grad * y).sum(dim, keepdim=True)), None
        if y.array.size == 0:
            return grad, None
        return Tensor._make(_softmax_backward_array(y.xp, y.array, grad.array, dim, cls.log)), None


class LogSoftmax(Softmax):
    """log_softmax along one dim; keeps only its output."""
    log = True


def _floating_input(x, name, dtype):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be a Tensor, not {type(x).__name__}")
    if dtype is not None:
        x = x.to(dtype)
    if not dtypes.is_floating_point(x.dtype):
        raise RuntimeError(f"{name}: expected a floating-point tensor, got {dtypes.dtype_name(x.dtype)}")
    return x


def _softmax_dim(x, dim, name):
    if dim is None:
        # torch's legacy choice when dim is omitted, with its warning
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the call to include "
                      "dim=X as an argument.", UserWarning, stacklevel=3)
        dim = 0 if x.ndim in (0, 1, 3) else 1
    return wrap_dim(dim, x.ndim) if x.ndim else 0


@autocast_mode.float32
def softmax(input, dim=None, dtype=None):
    """exp(x) / sum(exp(x), dim), computed stably (nan for a row holding nan or
    +inf, or only -inf, as torch); fused on CUDA."""
    x = _floating_input(input, "softmax", dtype)
    dim = _softmax_dim(x, dim, "softmax")
    if x.ndim == 0:
        return Softmax.apply(x.reshape(1), 0).reshape(())
    return Softmax.apply(x, dim)


@autocast_mode.float32
def log_softmax(input, dim=None, dtype=None):
    """x - logsumexp(x, dim), computed stably; fused on CUDA."""
    x = _floating_input(input, "log_softmax", dtype)
    dim = _softmax_dim(x, dim, "log_softmax")
    if x.ndim == 0:
        return LogSoftmax.apply(x.reshape(1), 0).reshape(())
    return LogSoftmax.apply(x, dim)


# -- cross-entropy ------------------------------------------------------------------------

_REDUCTIONS = ("none", "mean", "sum")
_class_weights = {}      # id(weight tensor) -> (weakref to it, its array, its version, {dtype: (w, W)})


def class_weight_arrays(weight, dtype):
    """(w, W): class weights in the accumulation dtype of ``dtype`` and their
    sum as a 1-element array, cached per weight tensor and version (a module's
    weight buffer is converted and summed once, not on every call)."""
    if weight is None:
        return None, None
    acc = dtypes.accumulate_dtype(dtype)
    key = id(weight)
    entry = _class_weights.get(key)
    if entry is None or entry[0]() is not weight or entry[1] is not weight.array or entry[2] != weight._version:
        # (a WeakKeyDictionary would compare tensors with their elementwise ==)
        entry = (weakref.ref(weight, lambda _, key=key: _class_weights.pop(key, None)), weight.array,
                 weight._version, {})
        _class_weights[key] = entry
    cached = entry[3].get(acc)
    if cached is None:
        w = weight.xp.ascontiguousarray(weight.array, dtype=acc)
        cached = entry[3][acc] = (w, w.sum(keepdims=True))
    return cached


def _target_rows(xp, target, weight, ignore_index, classes, acc):
    """(valid, safe target, w_t) per row; bad targets raise on the CPU."""
    valid = target != ignore_index
    bad = valid & ((target < 0) | (target >= classes))
    if bool(bad.any()):
        value = int(target[bad][0])
        raise IndexError(f"Target {value} is out of bounds: class indices must lie in [0, {classes}) "
                         f"or equal ignore_index ({ignore_index})")
    safe = xp.where(valid, target, 0)
    w_t = valid.astype(acc) if weight is None else weight[safe] * valid
    return valid, safe, w_t


def _ce_forward_twin(xp, x, target, weight, weight_sum, ignore_index, smoothing, reduction, with_grad,
                     loss_in_acc=False, overwrite=False):
    """The NumPy twin of the fused forward over (R, C) rows: (loss, m, ls, dx,
    denominator); ``overwrite``: x is the caller's scratch, dx may take its place."""
    rows, classes = x.shape
    acc = dtypes.accumulate_dtype(x.dtype)
    valid, safe, w_t = _target_rows(xp, target, weight, ignore_index, classes, acc)
    x_t = x[xp.arange(rows), safe].astype(acc)
    m, ls, e, weighted = row_stats(xp, x, 1, weight, smoothing=bool(smoothing), overwrite=overwrite)
    m, ls = m[:, 0], ls[:, 0]
    shifted_t = x_t - m                                              # x_t - m
    loss = (1 - smoothing) * w_t * (ls - shifted_t)
    total = classes if weight is None else weight_sum[0]
    if smoothing:
        loss = loss + (smoothing / classes) * (total * ls - weighted[:, 0])
    special = _special(xp, ls)
    if special is not None:
        loss = xp.where(special, xp.nan, loss)
    loss = xp.where(valid, loss, 0)
    denominator = backend.array_sum(w_t, keepdims=True) if reduction == "mean" else None   # 1 element, as on the GPU
    if reduction == "none":
        result = loss
    else:
        result = backend.array_sum(loss)
        if reduction == "mean":
            result = result / denominator[0]
    dx = None
    if with_grad:
        g = 1 / denominator[0] if reduction == "mean" else acc.type(1)
        scale = g * ((1 - smoothing) * w_t + (smoothing / classes) * total)
        e *= (scale * xp.exp(-ls))[:, None]
        if smoothing:
            spread = xp.ones(classes, dtype=acc) if weight is None else weight
            e -= (g * smoothing / classes) * spread[None, :]
        e[xp.arange(rows), safe] -= g * (1 - smoothing) * w_t
        if special is not None:
            e[special & valid] = xp.nan
        if not bool(valid.all()):
            e[~valid] = 0
        dx = e.astype(x.dtype, copy=False)
    result = xp.asarray(result)
    return (result if loss_in_acc else result.astype(x.dtype, copy=False)), m, ls, dx, denominator


def _ce_backward_twin(xp, x, target, weight, weight_sum, ignore_index, smoothing, m, ls, per_row):
    """G * (softmax * S - T) over (R, C) rows, with T applied in place; ignored rows are 0."""
    rows, classes = x.shape
    acc = dtypes.accumulate_dtype(x.dtype)
    valid, safe, w_t = _target_rows(xp, target, weight, ignore_index, classes, acc)
    total = classes if weight is None else weight_sum[0]
    g = xp.where(valid, xp.broadcast_to(per_row, (rows,)), 0)
    scale = g * ((1 - smoothing) * w_t + (smoothing / classes) * total)
    out = _softmax_times(xp, x, m[:, None], ls[:, None], scale[:, None])
    if smoothing:
        spread = xp.ones(classes, dtype=acc) if weight is None else weight
        out -= (g * (smoothing / classes))[:, None] * spread[None, :]
    out[xp.arange(rows), safe] -= g * (1 - smoothing) * w_t
    special = _special(xp, ls)
    if special is not None:
        out[special & valid] = xp.nan
    if not bool(valid.all()):
        out[~valid] = 0          # also where an ignored row's logits are all -inf
    return out.astype(x.dtype, copy=False)


def _rows_last(xp, x):
    """(N, C, d...) logits as (R, C) rows (a copy on the CPU when d... is not empty)."""
    if x.ndim == 2:
        return x
    return xp.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _rows_back(xp, rows, shape):
    if len(shape) == 2:
        return rows
    moved = rows.reshape((shape[0],) + tuple(shape[2:]) + (shape[1],))
    return xp.moveaxis(moved, -1, 1)


class CrossEntropy(InternalFunction):
    """Fused softmax cross-entropy over (N, C, d...) logits (class dim 1) with
    class-index targets of shape (N, d...)."""

    @staticmethod
    def forward(ctx, x, target, weight, weight_sum, ignore_index, reduction, smoothing):
        xp = ctx.xp
        ctx.options = (ignore_index, reduction, smoothing)
        ctx.shape = x.shape
        flat_target = xp.ascontiguousarray(target.reshape(-1))
        rows = _kernel_rows(x, (1,)) if x.shape[1] else None
        # the gradient in the forward pass, for loss.backward(): on the GPU under 'mean' only for many
        # classes (the kernel adds up the denominator in every block)
        with_grad = ctx.needs_input_grad[0] and reduction != "none" and x.size > 0 and (
            rows is None or reduction == "sum" or x.shape[1] >= kernels.GRAD_IN_FORWARD_MIN_COLS)
        ctx.rows = rows                      # x as the kernels read it (a copy only for unmergeable dims)
        if rows is not None:
            out = kernels.cross_entropy_rows(*rows, flat_target, weight, weight_sum, ignore_index,
                                             smoothing, reduction, save_stats=True, with_grad=with_grad)
            loss, m, ls, dx, denominator = out["loss"], out["m"], out["ls"], out["dx"], out["denominator"]
        else:
            loss, m, ls, dx, denominator = _ce_forward_twin(
                xp, _rows_last(xp, x), flat_target, weight, weight_sum, ignore_index, smoothing, reduction,
                with_grad)
            if dx is not None:
                dx = _rows_back(xp, dx, x.shape)
        ctx.dx = dx
        ctx.save_for_backward(x, flat_target, weight, weight_sum, m, ls, denominator)
        return loss.reshape(target.shape) if reduction == "none" else loss

    @staticmethod
    def backward(ctx, grad):
        ignore_index, reduction, smoothing = ctx.options
        dx, ctx.dx = ctx.dx, None          # the forward's gradient is used once
        if is_grad_enabled():
            return _cross_entropy_double_backward(ctx, grad), None, None, None, None, None, None
        if dx is not None and engine.is_implicit_seed(grad):
            return Tensor._make(dx), None, None, None, None, None, None
        x, target, weight, weight_sum, m, ls, denominator = ctx.saved_tensors
        xp = x.xp
        arrays = [None if t is None else t.array for t in (x, target, weight, weight_sum, m, ls, denominator)]
        x, target, weight, weight_sum, m, ls, denominator = arrays
        if ctx.rows is not None:
            g = _per_row(xp, grad.array, grad.shape, x.dtype)
            out = kernels.cross_entropy_rows_backward(*ctx.rows, target, weight, weight_sum, ignore_index,
                                                      smoothing, m, ls, g, 0 if reduction != "none" else
                                                      g.strides[0] // g.itemsize, denominator)
            return Tensor._make(out), None, None, None, None, None, None
        acc = dtypes.accumulate_dtype(x.dtype)
        per_row = grad.array.astype(acc).reshape(-1)
        if reduction == "mean":
            per_row = per_row / denominator[0]
        out = _ce_backward_twin(xp, _rows_last(xp, x), target, weight, weight_sum, ignore_index, smoothing, m, ls,
                                per_row)
        return Tensor._make(_rows_back(xp, out, x.shape)), None, None, None, None, None, None

    def release(self):
        super().release()
        self.dx = self.rows = None


def _cross_entropy_double_backward(ctx, grad):
    """The gradient as ordinary differentiable ops: G * (softmax(x) * S - T),
    T the target distribution, S its total weight per row, G the upstream
    gradient per row (divided by the mean's denominator)."""
    x, target, weight, weight_sum, m, ls, denominator = ctx.saved_tensors
    ignore_index, reduction, smoothing = ctx.options
    xp = x.xp
    classes = x.shape[1]
    acc = dtypes.accumulate_dtype(x.dtype)
    t = target.array
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    w = xp.ones(classes, dtype=acc) if weight is None else weight.array
    w_t = w[safe] * valid
    total = classes if weight is None else weight_sum.array[0]
    scale = (1 - smoothing) * w_t + (smoothing / classes) * total * valid
    dist = xp.zeros((t.size, classes), dtype=acc)
    dist += (smoothing / classes) * w[None, :] * valid[:, None]
    dist[xp.arange(t.size), safe] += (1 - smoothing) * w_t
    shape = (x.shape[0],) + tuple(x.shape[2:])                    # the target's shape
    column = (x.shape[0], 1) + tuple(x.shape[2:])
    scale = Tensor._make(scale.astype(x.dtype).reshape(column))
    dist = Tensor._make(_rows_back(xp, dist.astype(x.dtype), x.shape))
    g = grad if reduction == "none" else grad.expand(shape)
    if reduction == "mean":
        # an all-ignored batch has a zero denominator; every row's scale and target are 0 then,
        # so dividing by 1 instead changes nothing but keeps inf out of the graph: through
        # where's gradient it met 0 * inf = nan in the second derivative (torch's is 0)
        d = denominator.array
        g = g / Tensor._make(xp.where(d == 0, 1, d).astype(x.dtype))
    probabilities = softmax(x, 1)
    out = g.reshape(column) * (probabilities * scale - dist)
    return where(Tensor._make(valid.reshape(column)), out, 0.0)


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    """The fused cross-entropy of (N, C, d...) logits and (N, d...) class
    indices (validated by ``nn.functional.cross_entropy``)."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{reduction} is not a valid value for reduction")
    w, w_sum = class_weight_arrays(weight, input.dtype)
    return CrossEntropy.apply(input, target.detach(), None if w is None else Tensor._make(w),
                              None if w_sum is None else Tensor._make(w_sum), int(ignore_index), reduction,
                              float(label_smoothing))


def nll_loss_gather(log_probs, target, weight, ignore_index, reduction):
    """nll_loss of (N, C, d...) log-probabilities: -w_t * input[n, t] (no fused
    kernel: a gather); bad targets raise (on the GPU at the next sync)."""
    xp = log_probs.xp
    classes = log_probs.shape[1]
    t = target.array
    if log_probs.is_cuda:
        kernels.check_index_range(t, 0, classes, device_errors.CLASS_INDEX, classes, ignore_index)
        valid = (t != ignore_index) & (t >= 0) & (t < classes)
    else:
        valid, _, _ = _target_rows(xp, t, None, ignore_index, classes, dtypes.float64)
    acc = dtypes.accumulate_dtype(log_probs.dtype)
    safe = xp.where(valid, t, 0)
    w_t = valid.astype(acc) if weight is None else weight.array.astype(acc)[safe] * valid
    picked = gather(log_probs, 1, Tensor._make(xp.expand_dims(safe, 1).astype(dtypes.int64))).squeeze(1)
    loss = -picked * Tensor._make(w_t.astype(log_probs.dtype))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / Tensor._make(w_t.sum().astype(log_probs.dtype))
