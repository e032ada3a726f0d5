"""What the fused row ops share: the one CPU/GPU switch, and the NumPy row
statistics their twins are built from.

Each fused op (``logsumexp.py``, ``softmax.py``, ``cross_entropy.py``, ...)
has two implementations of each of its steps with the same signature and
the same result: ``<step>_numpy``, written against the array module of its
inputs (NumPy, or CuPy where the kernels do not apply), and ``<step>_cuda``,
which launches the kernel of ``kernels/<op>.cu``.  :func:`pick` chooses
between them, once per call; nothing else asks which device holds the data.
"""

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.tensor import Tensor

_ones = {}


def pick(numpy_version, cuda_version, x, dims, *alike):
    """The implementation of one call: ``cuda_version`` when the kernels take
    it (x a CUDA array reduced along one dim, not empty, and the arrays
    ``alike`` of x's dtype: a kernel is instantiated for one element type),
    else ``numpy_version``."""
    if len(dims) == 1 and x.size and backend.is_cupy_array(x) and all(a.dtype == x.dtype for a in alike):
        return cuda_version
    return numpy_version


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
    e = backend.keep_array(xp.subtract(a, m, out=a if overwrite and a is x else None))
    weighted = None
    if smoothing:
        weighted = (backend.array_sum(e, axis=axis, keepdims=True) if weight is None else
                    xp.moveaxis(xp.tensordot(e, weight, axes=([axis], [0]))[..., None], -1, axis))
    xp.exp(e, out=e)
    ls = xp.log(e.sum(axis=axis, keepdims=True))
    return m, ls, e, weighted


def softmax_times(xp, x, m, ls, scale, e=None):
    """scale * exp((x - m) - ls) in three passes over x: exp(x - m) * (scale *
    exp(-ls)), where 0 < exp(x - m) <= 1 and 1 <= exp(ls) <= C (no overflow, no
    cancellation of a large m against ls); rows whose statistics are not
    finite (nan, +inf, all -inf) take the direct formula, as torch's.  m, ls
    and scale broadcast against x (kept dims); the result is in the
    accumulation dtype.  ``e``: exp(x - m) when the caller has it (row_stats'
    e, which is then written over)."""
    if e is None:
        e = backend.keep_array(xp.subtract(x.astype(m.dtype, copy=False), m))
        xp.exp(e, out=e)
    out = e
    out *= scale * xp.exp(-ls)
    special = special_rows(xp, ls)
    if special is not None:
        direct = xp.exp((x.astype(m.dtype, copy=False) - m) - ls) * scale
        out = xp.where(special, direct, out)
    return out


def one(xp, x):
    """A kept 1-element array of 1 in x's dtype on x's device: the upstream
    gradient a fused forward writes its gradient for at first."""
    key = (backend.device_key(x), x.dtype)
    kept = _ones.get(key)
    if kept is None:
        with backend.device_guard(backend.device_from_key(key[0])):
            kept = _ones[key] = xp.ones(1, dtype=x.dtype)
    return kept


def same_as(a, value):
    """Where a == value[0], telling -0 from +0 (host arrays; nan is never the
    same): where a forward's gradient, written for the upstream gradient
    ``value``, is the one wanted."""
    a, v = a.astype(numpy.float64), value.reshape(-1)[:1].astype(numpy.float64)     # (exact)
    return (a == v) & (numpy.signbit(a) == numpy.signbit(v))


def special_rows(xp, ls):
    """Rows whose statistics are not finite (nan, +inf, or only -inf): nan for
    softmax and cross-entropy.  None when there are none."""
    special = ~xp.isfinite(ls)
    return special if bool(special.any()) else None


def tensor_input(x, name):
    """TypeError unless ``x`` is a Tensor (torch's message)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}(): argument 'input' must be a Tensor, not {type(x).__name__}")
    return x


def floating_input(x, name, dtype, integers=False):
    """The input of a row op: a floating-point Tensor (converted to ``dtype``
    first when given); integers become the default float dtype where
    ``integers`` (logsumexp), else raise torch's NotImplementedError."""
    tensor_input(x, name)
    if dtype is not None:
        x = x.to(dtype)
    if not dtypes.is_floating_point(x.dtype):
        if integers:
            return x.to(dtypes.get_default_dtype())
        if x.numel():               # torch runs (and checks) no kernel for an empty tensor
            raise validation.not_implemented(f"{name}_lastdim_kernel_impl", x.dtype)
    return x
