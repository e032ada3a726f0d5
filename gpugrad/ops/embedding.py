"""Embedding helpers beyond the plain lookup: the in-place row renormalisation
of ``max_norm`` (torch.embedding_renorm_) and embedding_bag's reductions
of bags of rows (sum, mean, max; per-sample weights; offsets), composed of
differentiable ops (index_add, scatter_reduce)."""

from gpugrad import backend, dtypes
from gpugrad.autograd.grad_mode import no_grad
from gpugrad.ops.elementwise import where
from gpugrad.ops.scatter import index_add
from gpugrad.ops.shape import getitem, reshape
from gpugrad.tensor import Tensor


def embedding_renorm_(weight, indices, max_norm, norm_type):
    """Rescale, in place, each row of ``weight`` that ``indices`` name and whose
    norm_type-norm exceeds max_norm, to norm max_norm (torch's scale:
    max_norm / (norm + 1e-7)); outside autograd, as torch's."""
    xp = weight.xp
    rows = xp.unique(backend.to_device(indices.array, weight.device).reshape(-1))
    if rows.size == 0:
        return weight
    with no_grad():
        picked = weight.array[rows]
        norms = backend.keep_array(xp.linalg.norm(picked.astype(dtypes.accumulate_dtype(picked.dtype)),
                                                  ord=norm_type, axis=1))
        scale = xp.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0).astype(picked.dtype)
        weight.array[rows] = picked * scale[:, None]
        weight.increment_version()
    return weight


def bag_ids(xp, count, offsets, include_last_offset):
    """The bag of each of ``count`` entries and the number of bags, from the bags' starts."""
    starts = offsets[:-1] if include_last_offset else offsets
    bags = starts.shape[0]
    ids = xp.searchsorted(starts, xp.arange(count), side="right") - 1
    return ids, bags


def _bag_max(xp, rows, ids, bags, dim, zeros):
    """Each bag's maximum per column as torch's kernel keeps it: the first
    entry, replaced by each later one strictly greater (so a nan counts only
    first); the gradient goes to that one entry."""
    count = rows.shape[0]
    if count == 0:
        return zeros + rows.sum()       # (in the graph, as torch's result)
    values = rows.array
    position = xp.arange(count)
    finite = xp.where(xp.isnan(values), -xp.inf, values)
    best = xp.full((bags, dim), -xp.inf, dtype=values.dtype)
    backend.scatter_reduce(best, (ids,), finite, "amax")
    candidates = xp.where(finite == best[ids], position[:, None], count)
    first = xp.full((bags, dim), count, dtype=position.dtype)
    backend.scatter_reduce(first, (ids,), candidates, "amin")
    starts = xp.full(bags, count, dtype=position.dtype)
    backend.scatter_reduce(starts, (ids,), position, "amin")
    occupied = starts < count
    starts = xp.minimum(starts, count - 1)
    first = xp.where(xp.isnan(values[starts]), starts[:, None], xp.minimum(first, count - 1))
    picked = rows.gather(0, Tensor._make(first.astype(dtypes.int64)))
    return picked if bool(occupied.all()) else where(Tensor._make(occupied[:, None]), picked, 0.0)


def embedding_bag(input, weight, offsets, mode, per_sample_weights, include_last_offset, padding_idx, rows):
    """The reduction of each bag of rows of ``weight``: input (B, L) (a bag per
    row) or 1-D with ``offsets``; ``rows`` the looked-up rows (K, D) of the
    flat input.  Empty bags give zeros."""
    xp = weight.xp
    flat = reshape(input, (-1,))
    count = flat.shape[0]
    if input.ndim == 2:
        bags = input.shape[0]
        ids = xp.repeat(xp.arange(bags), input.shape[1])
    else:
        ids, bags = bag_ids(xp, count, backend.to_device(offsets.array, weight.device), include_last_offset)
    keep = None
    if padding_idx is not None:
        keep = backend.to_device(flat.array, weight.device) != padding_idx
        ids = ids[keep]
        rows = getitem(rows, Tensor._make(keep))
        if per_sample_weights is not None:
            per_sample_weights = getitem(reshape(per_sample_weights, (-1,)), Tensor._make(keep))
    ids = ids.astype(dtypes.int64, copy=False)
    dim = weight.shape[1]
    zeros = Tensor._make(xp.zeros((bags, dim), dtype=weight.dtype))
    if per_sample_weights is not None:
        rows = rows * reshape(per_sample_weights, (-1, 1))
    if mode == "max":
        return _bag_max(xp, rows, ids, bags, dim, zeros)
    total = index_add(zeros, 0, Tensor._make(ids), rows)
    if mode == "sum":
        return total
    sizes = xp.bincount(ids, minlength=bags)[:bags].astype(weight.dtype) if ids.size else \
        xp.zeros(bags, dtype=weight.dtype)
    return total / Tensor._make(xp.maximum(sizes, 1)[:, None])
