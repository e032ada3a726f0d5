"""Sorting-based queries without a gradient: unique, unique_consecutive,
searchsorted, bucketize, histc and histogram (NumPy's or CuPy's routines on
the arrays, torch's argument rules and result dtypes)."""

import builtins
import math

from gpugrad import backend, dtypes, return_types
from gpugrad.creation import linspace_array
from gpugrad.dims import wrap_dim
from gpugrad.tensor import Tensor


def _results(values, inverse, counts, return_inverse, return_counts):
    out = (Tensor._make(values),)
    if return_inverse:
        out += (Tensor._make(inverse.astype(dtypes.int64, copy=False)),)
    if return_counts:
        out += (Tensor._make(counts.astype(dtypes.int64, copy=False)),)
    return out[0] if len(out) == 1 else out


def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements (or slices along ``dim``), in ascending order;
    with return_inverse, where each element went (input's shape, or dim's
    size); with return_counts, how often each occurs.  nan values stay apart,
    as torch's."""
    xp = input.xp
    x = input.array
    if dim is None:
        flat = x.reshape(-1)
        order = xp.argsort(flat, kind="stable")
        ordered = flat[order]
        if ordered.size:
            new = xp.concatenate([xp.ones(1, dtype=bool), ordered[1:] != ordered[:-1]])
        else:
            new = xp.zeros(0, dtype=bool)
        starts = xp.nonzero(new)[0]
        values = ordered[starts]
        inverse = xp.empty(flat.shape, dtype=dtypes.int64)
        inverse[order] = xp.cumsum(new) - 1
        counts = xp.diff(xp.concatenate([starts, xp.asarray([flat.size])]))
        return _results(values, inverse.reshape(x.shape), counts, return_inverse, return_counts)
    d = wrap_dim(dim, builtins.max(x.ndim, 1))
    if x.ndim == 0:
        raise IndexError(f"Dimension out of range (expected to be in range of [-1, 0], but got {dim})")
    if any(n == 0 for i, n in enumerate(x.shape) if i != d):
        raise RuntimeError("There are 0 sized dimensions, and they aren't selected, so unique cannot be applied")
    moved = xp.moveaxis(x, d, 0)
    if moved.shape[0] == 0:
        empty = xp.zeros(0, dtype=dtypes.int64)
        return _results(x.copy(), empty, empty, return_inverse, return_counts)
    values, inverse, counts = xp.unique(moved.reshape(moved.shape[0], math.prod(moved.shape[1:])),
                                        return_inverse=True, return_counts=True, axis=0)
    values = xp.moveaxis(values.reshape((values.shape[0],) + moved.shape[1:]), 0, d)
    return _results(xp.ascontiguousarray(values), inverse.reshape(-1), counts, return_inverse, return_counts)


def unique_consecutive(input, return_inverse=False, return_counts=False, dim=None):
    """The first of each run of equal consecutive elements (or slices along dim)."""
    xp = input.xp
    x = input.array
    if dim is None:
        flat = x.reshape(-1)
        new = xp.concatenate([xp.ones(builtins.min(flat.size, 1), dtype=bool), flat[1:] != flat[:-1]])
        starts = xp.nonzero(new)[0]
        counts = xp.diff(xp.concatenate([starts, xp.asarray([flat.size])]))
        return _results(flat[starts], (xp.cumsum(new) - 1).reshape(x.shape), counts, return_inverse,
                        return_counts)
    d = wrap_dim(dim, x.ndim)
    if any(n == 0 for i, n in enumerate(x.shape) if i != d):
        raise RuntimeError("There are 0 sized dimensions, and they aren't selected, so unique cannot be applied")
    moved = xp.moveaxis(x, d, 0).reshape(x.shape[d], math.prod(x.shape) // x.shape[d] if x.shape[d] else 0)
    changed = (moved[1:] != moved[:-1]).any(axis=1)
    new = xp.concatenate([xp.ones(builtins.min(moved.shape[0], 1), dtype=bool), changed])
    starts = xp.nonzero(new)[0]
    counts = xp.diff(xp.concatenate([starts, xp.asarray([moved.shape[0]])]))
    values = xp.take(x, starts, axis=d)
    return _results(values, xp.cumsum(new) - 1, counts, return_inverse, return_counts)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None, sorter=None):
    """For each value of ``input``, the index in the innermost dim of
    ``sorted_sequence`` that keeps it sorted: the first such (side='left'), or
    the last (right=True or side='right'); a 1-D sequence serves every value,
    an N-D one its matching leading dims.  int64 (int32 with out_int32)."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(f"torch.searchsorted(): side can only be 'left' or 'right' but got {side}")
        if right and side == "left":
            raise RuntimeError("torch.searchsorted(): side and right can't be set to opposites, got side of left "
                               "while right was True")
        right = side == "right"
    side = "right" if right else "left"
    xp = sorted_sequence.xp
    seq = sorted_sequence.array
    scalar = not isinstance(input, Tensor)
    values = xp.asarray(input, dtype=seq.dtype) if scalar else backend.to_device(input.array, sorted_sequence.device)
    if sorter is not None:
        seq = xp.take_along_axis(seq, backend.to_device(sorter.array, sorted_sequence.device), axis=-1)
    if seq.ndim > 1 and values.ndim != seq.ndim or seq.ndim > 1 and values.shape[:-1] != seq.shape[:-1]:
        raise RuntimeError("torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
                           "dimensions of boundaries tensor and input value tensor must match, but we got "
                           f"boundaries tensor {list(seq.shape)} and input value tensor {list(values.shape)}")
    out_dtype = dtypes.int32 if out_int32 else dtypes.int64
    if seq.ndim <= 1:
        out = xp.searchsorted(seq.reshape(-1), values, side=side)
    else:
        rows_seq = seq.reshape(-1, seq.shape[-1])
        rows_values = values.reshape(-1, values.shape[-1])
        out = xp.stack([xp.searchsorted(s, v, side=side) for s, v in zip(rows_seq, rows_values)]).reshape(
            values.shape) if rows_seq.shape[0] else xp.zeros(values.shape, dtype=out_dtype)
    return Tensor._make(backend.keep_array(out).astype(out_dtype, copy=False))


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each value among the 1-D sorted ``boundaries``: i with
    boundaries[i-1] < x <= boundaries[i] (right=False), or
    boundaries[i-1] <= x < boundaries[i] (right=True)."""
    if boundaries.ndim != 1:
        raise RuntimeError(f"boundaries tensor must be 1 dimension, but got dim({boundaries.ndim})")
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)


def _float_range(input, low, high):
    if low > high:
        raise RuntimeError("torch.histc: max must be larger than min")
    if low == high and input.numel():
        low, high = float(input.array.min()), float(input.array.max())
    if low == high:
        low, high = low - 1, high + 1
    return low, high


def histc(input, bins=100, min=0, max=0):
    """The counts of input's elements in ``bins`` equal-width bins over
    [min, max] (the data's range when min == max); elements outside are
    ignored, max falls in the last bin.  Of input's (floating) dtype."""
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError(f"\"histogram_cpu\" not implemented for '{dtypes.dtype_name(input.dtype)}'")
    if bins <= 0:
        raise RuntimeError(f"torch.histc(): bins must be > 0, but got {bins} for dim 0")
    xp = input.xp
    x = input.array.reshape(-1)
    low, high = _float_range(input, float(min), float(max))
    if not (xp.isfinite(low) and xp.isfinite(high)):
        raise RuntimeError(f"torch.histc(): range of [{low}, {high}] is not finite")
    keep = (x >= low) & (x <= high)
    x = x[keep]
    dtype = input.dtype
    position = ((x - dtype.type(low)) * dtype.type(bins) / (dtype.type(high) - dtype.type(low))).astype(dtypes.int64)
    position = xp.minimum(position, bins - 1)
    counts = xp.bincount(position, minlength=bins)[:bins] if x.size else xp.zeros(bins, dtype=dtypes.int64)
    return Tensor._make(counts.astype(dtype))


def histogram(input, bins=100, *, range=None, weight=None, density=False):
    """(hist, bin_edges): counts (or the sums of ``weight``) of input's
    elements in the bins given by ``bins`` edges (a 1-D tensor) or ``bins``
    equal-width bins over ``range`` (the data's by default); density=True
    divides by the total and the widths."""
    if not dtypes.is_floating_point(input.dtype):
        raise RuntimeError(f"torch.histogram: input tensor and bins tensors should have the same dtype, but got "
                           f"input {dtypes.dtype_name(input.dtype)}")
    xp = input.xp
    x = input.array.reshape(-1)
    dtype = input.dtype
    if isinstance(bins, Tensor):
        edges = backend.to_device(bins.array, input.device).astype(dtype, copy=False)
        if edges.ndim != 1 or edges.size < 1:
            raise RuntimeError("torch.histogram(): bins tensor should have one dimension and at least 1 element")
    else:
        if bins <= 0:
            raise RuntimeError(f"torch.histogram(): bins must be > 0, but got {bins} for dimension 0")
        if range is not None:
            low, high = float(range[0]), float(range[1])
            if low > high:
                raise RuntimeError(f"torch.histogram(): min should not exceed max, but got min {low} max {high} "
                                   f"for dimension 0")
        elif x.size:
            low, high = float(x.min()), float(x.max())
        else:
            low, high = 0.0, 0.0
        if low == high:
            low, high = low - 0.5, high + 0.5
        edges = linspace_array(xp, low, high, bins + 1).astype(dtype)
    count = edges.size - 1
    keep = (x >= edges[0]) & (x <= edges[-1])
    w = None
    if weight is not None:
        if tuple(weight.shape) != tuple(input.shape):
            raise RuntimeError("torch.histogram(): if weight tensor is provided it should have the same shape as "
                               "the input tensor excluding its innermost dimension")
        w = backend.to_device(weight.array, input.device).reshape(-1)[keep]
    position = xp.searchsorted(edges, x[keep], side="right") - 1
    position = xp.minimum(position, count - 1)
    hist = xp.bincount(position, weights=w, minlength=count)[:count] if position.size else xp.zeros(count)
    hist = hist.astype(dtype)
    if density:
        widths = xp.diff(edges)
        hist = (hist / (hist.sum() * widths)).astype(dtype)
    return return_types.histogram(Tensor._make(hist), Tensor._make(edges))
