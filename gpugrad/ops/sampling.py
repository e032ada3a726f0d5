"""Resampling of images and sequences: interpolate (nearest, nearest-exact,
linear, bilinear; torch's source coordinates, align_corners both ways,
scale_factor or size).  Each spatial dim is resampled in turn with
index_select (and a lerp for the linear modes), so the result is
differentiable to any order."""

import math

import numpy

from gpugrad import backend
from gpugrad.autograd.function import InternalFunction
from gpugrad.ops.shape import index_select_valid
from gpugrad.tensor import Tensor

_MODES = {"nearest": None, "nearest-exact": None, "linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5,
          "area": None}


def _output_sizes(input, size, scale_factor, spatial):
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        sizes = (size,) * spatial if isinstance(size, int) else tuple(int(s) for s in size)
        if len(sizes) != spatial:
            raise ValueError(f"Input and output must have the same number of spatial dimensions, but got input with "
                             f"spatial dimensions of {list(input.shape[2:])} and output size of {list(sizes)}. "
                             "Please provide input tensor in (N, C, d1, d2, ...,dK) format and output size in "
                             "(o1, o2, ...,oK) format.")
        return sizes, (None,) * spatial
    if scale_factor is None:
        raise ValueError("either size or scale_factor should be defined")
    scales = (scale_factor,) * spatial if not isinstance(scale_factor, (tuple, list)) else tuple(scale_factor)
    if len(scales) != spatial:
        raise ValueError(f"Input and scale_factor must have the same number of spatial dimensions, but got input "
                         f"with spatial dimensions of {list(input.shape[2:])} and scale_factor of shape "
                         f"{list(scales)}. Please provide input tensor in (N, C, d1, d2, ...,dK) format and "
                         "scale_factor in (s1, s2, ...,sK) format.")
    sizes = tuple(math.floor(float(n) * float(s)) for n, s in zip(input.shape[2:], scales))
    return sizes, tuple(float(s) for s in scales)


def _nearest_index(xp, in_size, out_size, scale, exact, shortcuts):
    """torch's nearest_idx / nearest_neighbor_exact_compute_source_index (float32
    arithmetic); ``shortcuts``: out == in and out == 2 in read i and i // 2
    whatever the scale (torch's 2-D kernel; its 1-D one does not)."""
    position = numpy.arange(out_size, dtype=numpy.float32)
    ratio = numpy.float32(1.0 / scale) if scale is not None else numpy.float32(in_size) / numpy.float32(out_size)
    if exact:
        index = numpy.floor((position + numpy.float32(0.5)) * ratio).astype(numpy.int64)
    elif shortcuts and out_size == in_size:
        index = numpy.arange(out_size)
    elif shortcuts and out_size == 2 * in_size:
        index = numpy.arange(out_size) >> 1
    else:
        index = numpy.floor(position * ratio).astype(numpy.int64)
    return xp.asarray(numpy.minimum(index, in_size - 1))


class _NearestSelect(InternalFunction):
    """The 1-D nearest resampling as torch's CPU kernels compute it: the forward
    reads ``forward_index`` along ``dim``, the backward adds into
    ``backward_index`` (torch's nearest_idx with its out == 2 in shortcut, which
    its 1-D forward lacks: scale_factor=2.25 of 3 reads 0,0,0,1,1,2 and sends
    gradients to 0,0,1,1,2,2); the double backward is this forward again."""

    @staticmethod
    def forward(ctx, x, dim, forward_index, backward_index):
        ctx.dim, ctx.indices, ctx.size = dim, (forward_index, backward_index), x.shape[dim]
        return ctx.xp.take(x, forward_index, axis=dim)

    @staticmethod
    def backward(ctx, grad):
        return _NearestAdd.apply(grad, ctx.dim, *ctx.indices, ctx.size), None, None, None


class _NearestAdd(InternalFunction):
    """The backward of _NearestSelect, as an op (so it has a derivative: the select)."""

    @staticmethod
    def forward(ctx, grad, dim, forward_index, backward_index, size):
        ctx.dim, ctx.indices = dim, (forward_index, backward_index)
        shape = list(grad.shape)
        shape[dim] = size
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        backend.scatter_add(out, (slice(None),) * dim + (backward_index,), grad)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _NearestSelect.apply(grad, ctx.dim, *ctx.indices), None, None, None, None


def _linear_weights(in_size, out_size, scale, align_corners, dtype):
    """torch's area_pixel_compute_source_index for the linear modes: the lower
    index, the upper one and the upper's weight, in the op's arithmetic type."""
    kind = numpy.float32 if dtype != numpy.float64 else numpy.float64
    if out_size == in_size:     # torch reads each element twice, weights 1 and 0 (inf gives nan, as there)
        same = numpy.arange(out_size)
        return same, same, numpy.zeros(out_size, dtype=dtype)
    if align_corners:
        ratio = kind((in_size - 1) / (out_size - 1)) if out_size > 1 else kind(0)
        source = ratio * numpy.arange(out_size, dtype=kind)
    else:
        ratio = kind(1.0 / scale) if scale is not None and scale > 0 else kind(in_size) / kind(out_size)
        source = ratio * (numpy.arange(out_size, dtype=kind) + kind(0.5)) - kind(0.5)
        source = numpy.maximum(source, kind(0))
    low = source.astype(numpy.int64)
    high = numpy.minimum(low + 1, in_size - 1)
    return low, high, (source - low.astype(kind)).astype(dtype)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resample the spatial dims of (N, C, *spatial) to ``size`` or by
    ``scale_factor``: 'nearest' (torch's index rule), 'nearest-exact',
    'linear' (3-D), 'bilinear' (4-D) with align_corners True (corner pixels
    aligned) or False (pixel centres, the default)."""
    if mode not in _MODES:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for "
                                  f"the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
                                  f"nearest-exact (got {mode})")
    if mode in ("bicubic", "trilinear", "area") or antialias:
        raise NotImplementedError(f"interpolate: mode={mode!r}{' with antialias' if antialias else ''} is not "
                                  "implemented in gpugrad (nearest, nearest-exact, linear and bilinear are)")
    if mode.startswith("nearest") and align_corners is not None:
        raise ValueError("align_corners option can only be set with the interpolating modes: linear | bilinear | "
                         "bicubic | trilinear")
    if _MODES[mode] is not None and input.ndim != _MODES[mode]:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs {_MODES[mode]}D input")
    if input.ndim < 3:
        raise ValueError(f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.ndim}D) for the "
                         f"modes: nearest | linear | bilinear | bicubic | trilinear | area | nearest-exact (got "
                         f"{mode})")
    spatial = input.ndim - 2
    sizes, scales = _output_sizes(input, size, scale_factor, spatial)
    if recompute_scale_factor:
        scales = (None,) * spatial
    if any(s <= 0 for s in sizes):
        raise RuntimeError(f"Input and output sizes should be greater than 0, but got input "
                           f"({', '.join(map(str, input.shape[2:]))}) and output ({', '.join(map(str, sizes))})")
    xp = input.xp
    out = input
    # the last dim first, as torch's kernel nests them (so inf and nan combine as there)
    for offset, (in_size, out_size, scale) in reversed(list(enumerate(zip(input.shape[2:], sizes, scales)))):
        dim = 2 + offset
        if mode.startswith("nearest"):
            exact = mode == "nearest-exact"
            index = _nearest_index(numpy, in_size, out_size, scale, exact, spatial == 2)
            if spatial == 1 and not exact:
                # (torch's 1-D backward takes the shortcuts its forward does not)
                shortcut = _nearest_index(numpy, in_size, out_size, scale, exact, True)
                if not numpy.array_equal(index, shortcut):
                    out = _NearestSelect.apply(out, dim, backend.to_device(index, input.device),
                                               backend.to_device(shortcut, input.device))
                    continue
            out = index_select_valid(out, dim, Tensor._make(backend.to_device(index, input.device)))
            continue
        low, high, weight = _linear_weights(in_size, out_size, scale, bool(align_corners), input.dtype)
        shape = [1] * input.ndim
        shape[dim] = out_size
        weight = Tensor._make(xp.asarray(weight.reshape(shape)))
        lower = index_select_valid(out, dim, Tensor._make(backend.to_device(low, input.device)))
        upper = index_select_valid(out, dim, Tensor._make(backend.to_device(high, input.device)))
        out = lower * (1 - weight) + upper * weight
    return out
