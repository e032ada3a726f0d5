"""Convolution and pooling through im2col: ``unfold`` gathers every kernel
window into a column (one strided view and one copy, NumPy or CuPy alike),
a matrix product does the convolution, and ``fold`` (col2im) adds columns
back into an image.  Unfold and fold are each other's adjoints, so their
backward passes are each other and convolutions are differentiable to any
order."""

import math

from gpugrad import dtypes
from gpugrad.amp import autocast_mode
from gpugrad.autograd.function import InternalFunction
from gpugrad.ops.shape import gather_valid, pad, stack
from gpugrad.tensor import Tensor


def pair(value, name):
    """An int or a 2-sequence as a 2-tuple of ints."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value}")
    return value


def _out_size(size, kernel, dilation, padding, stride, ceil_mode=False):
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:    # the last window must start inside the input
        out -= 1
    return out


def _windows(xp, x, kernel, dilation, padding, stride, out_hw, fill):
    """(N, C, kh, kw, H_out, W_out) views of the windows of x, padded with ``fill``
    (right and bottom padding as needed by out_hw)."""
    n, c, h, w = x.shape
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = kernel, dilation, padding, stride
    need_h = (out_hw[0] - 1) * sh + dh * (kh - 1) + 1
    need_w = (out_hw[1] - 1) * sw + dw * (kw - 1) + 1
    extra_h, extra_w = max(0, need_h - h - 2 * ph), max(0, need_w - w - 2 * pw)
    if ph or pw or extra_h or extra_w:
        x = xp.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)), constant_values=fill)
    s = x.strides
    shape = (n, c, kh, kw, out_hw[0], out_hw[1])
    return xp.lib.stride_tricks.as_strided(x, shape, (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw))


class Unfold(InternalFunction):
    """im2col: (N, C, H, W) -> (N, C * kh * kw, L), torch.nn.functional.unfold's
    layout; padding with ``fill``; ``out_hw`` the windows (pooling's ceil_mode
    adds some at the end), None: as many as fit."""

    @staticmethod
    def forward(ctx, x, kernel, dilation, padding, stride, fill, out_hw):
        if out_hw is None:
            out_hw = tuple(_out_size(n, k, d, p, s) for n, k, d, p, s in zip(x.shape[2:], kernel, dilation, padding,
                                                                            stride))
        ctx.geometry = (x.shape[2:], kernel, dilation, padding, stride, out_hw)
        windows = _windows(ctx.xp, x, kernel, dilation, padding, stride, out_hw, fill)
        n, c = x.shape[:2]
        return windows.reshape(n, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1])

    @staticmethod
    def backward(ctx, grad):
        return Fold.apply(grad, *ctx.geometry), None, None, None, None, None, None


class Fold(InternalFunction):
    """col2im: (N, C * kh * kw, L) -> (N, C, H, W), overlapping windows added."""

    @staticmethod
    def forward(ctx, cols, size, kernel, dilation, padding, stride, out_hw):
        (h, w), (kh, kw), (dh, dw), (ph, pw), (sh, sw) = size, kernel, dilation, padding, stride
        if out_hw is None:
            out_hw = tuple(_out_size(n, k, d, p, s) for n, k, d, p, s in zip(size, kernel, dilation, padding, stride))
        ctx.geometry = (kernel, dilation, padding, stride, out_hw)
        out_h, out_w = out_hw
        n = cols.shape[0]
        c = cols.shape[1] // (kh * kw)
        if out_h * out_w != cols.shape[2]:
            raise RuntimeError(f"fold: {cols.shape[2]} columns for an output of {out_h} x {out_w} windows")
        blocks = cols.reshape(n, c, kh, kw, out_h, out_w)
        full_h = max(h + 2 * ph, (out_h - 1) * sh + dh * (kh - 1) + 1)
        full_w = max(w + 2 * pw, (out_w - 1) * sw + dw * (kw - 1) + 1)
        out = ctx.xp.zeros((n, c, full_h, full_w), dtype=cols.dtype)
        for i in range(kh):
            for j in range(kw):
                out[:, :, i * dh:i * dh + sh * (out_h - 1) + 1:sh, j * dw:j * dw + sw * (out_w - 1) + 1:sw] += \
                    blocks[:, :, i, j]
        return out[:, :, ph:ph + h, pw:pw + w]

    @staticmethod
    def backward(ctx, grad):
        kernel, dilation, padding, stride, out_hw = ctx.geometry
        return Unfold.apply(grad, kernel, dilation, padding, stride, 0, out_hw), None, None, None, None, None, None


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """Every kernel window of a (N, C, H, W) input as a column: (N, C * kh * kw, L)."""
    if input.ndim != 4:
        raise RuntimeError(f"unfold: expected a 4-D (N, C, H, W) input, got {list(input.shape)}")
    kernel, dilation = pair(kernel_size, "kernel_size"), pair(dilation, "dilation")
    padding, stride = pair(padding, "padding"), pair(stride, "stride")
    blocks = tuple(_out_size(n, k, d, p, s) for n, k, d, p, s in zip(input.shape[2:], kernel, dilation, padding,
                                                                      stride))
    if any(b < 1 for b in blocks):
        raise RuntimeError(f"Given input with spatial size {tuple(input.shape[2:])}, kernel_size={kernel}, "
                           f"dilation={dilation}, padding={padding}, calculated shape of the array of sliding blocks "
                           f"as {blocks}, but its components must be at least one.")
    out = Unfold.apply(input, kernel, dilation, padding, stride, 0, None)
    # a copy always, as torch's (the windows reshape to a view of the input where they do not overlap)
    return out.clone() if input.xp.may_share_memory(out.array, input.array) else out


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """Columns (N, C * kh * kw, L) added back into a (N, C, H, W) image (the adjoint of unfold)."""
    return Fold.apply(input, pair(output_size, "output_size"), pair(kernel_size, "kernel_size"),
                      pair(dilation, "dilation"), pair(padding, "padding"), pair(stride, "stride"), None)


def _same_padding(kernel, dilation, stride):
    """(before, after) per spatial dim for padding='same': d (k - 1) in all, the odd one after (torch's)."""
    if any(s != 1 for s in stride):
        raise RuntimeError("padding='same' is not supported for strided convolutions")
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    return tuple((t // 2, t - t // 2) for t in total)


@autocast_mode.lower_precision
def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D cross-correlation of (N, C, H, W) (or (C, H, W)) with weight
    (O, C / groups, kh, kw), plus bias (O,); padding may be 'valid' or 'same'."""
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if input.ndim != 4 or weight.ndim != 4:
        raise RuntimeError(f"conv2d: expected a 4-D input and weight, got input {list(input.shape)} and weight "
                           f"{list(weight.shape)}")
    if input.dtype != weight.dtype:
        raise RuntimeError(f"conv2d: input dtype {dtypes.dtype_name(input.dtype)} and weight dtype "
                           f"{dtypes.dtype_name(weight.dtype)} differ")
    n, c = input.shape[:2]
    out_channels, per_group, kh, kw = weight.shape
    if c != per_group * groups or out_channels % groups:
        raise RuntimeError(f"conv2d: weight of size {list(weight.shape)} and groups={groups} expect input with "
                           f"{per_group * groups} channels, but got {c} channels instead")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    if padding == "valid":
        padding = (0, 0)
    elif padding == "same":
        widths = _same_padding((kh, kw), dilation, stride)
        if any(before != after for before, after in widths):     # asymmetric: pad first, then none
            input = pad(input, (widths[1][0], widths[1][1], widths[0][0], widths[0][1]))
            widths = ((0, 0), (0, 0))
        padding = (widths[0][0], widths[1][0])
    elif isinstance(padding, str):
        raise ValueError(f"Invalid padding string '{padding}', should be one of {{'valid', 'same'}}")
    padding = pair(padding, "padding")
    out_h, out_w = (_out_size(s, k, d, p, st) for s, k, d, p, st in zip(input.shape[2:], (kh, kw), dilation,
                                                                        padding, stride))
    if out_h <= 0 or out_w <= 0:
        raise RuntimeError(f"conv2d: the kernel ({kh} x {kw}) is larger than the padded input "
                           f"{list(input.shape[2:])}")
    cols = Unfold.apply(input, (kh, kw), dilation, padding, stride, 0, None)    # (N, C kh kw, L)
    if groups == 1:
        out = weight.reshape(out_channels, -1) @ cols                           # (N, O, L)
    else:
        cols = cols.reshape(n, groups, per_group * kh * kw, out_h * out_w)
        out = weight.reshape(groups, out_channels // groups, per_group * kh * kw) @ cols
    out = out.reshape(n, out_channels, out_h, out_w)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)
    return out


@autocast_mode.lower_precision
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D cross-correlation of (N, C, L) with weight (O, C / groups, k)."""
    if input.ndim == 2:
        return conv1d(input.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0)
    if padding not in ("valid", "same"):
        padding = (0, padding if isinstance(padding, int) else padding[0])
    out = conv2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, _one(stride)), padding, (1, _one(dilation)),
                 groups)
    return out.squeeze(2)


def _one(value):
    return value if isinstance(value, int) else int(value[0])


def _pool_geometry(input, kernel_size, stride, padding, dilation, ceil_mode):
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or stride == [] or stride == () else pair(stride, "stride")
    padding, dilation = pair(padding, "padding"), pair(dilation, "dilation")
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise RuntimeError(f"pad should be at most half of effective kernel size, but got pad={padding}, "
                           f"kernel_size={kernel}")
    out_hw = tuple(_out_size(s, k, d, p, st, ceil_mode) for s, k, d, p, st in zip(input.shape[2:], kernel, dilation,
                                                                                 padding, stride))
    if any(n < 1 for n in out_hw):
        c, (h, w) = input.shape[1], input.shape[2:]
        raise RuntimeError(f"Given input size: ({c}x{h}x{w}). Calculated output size: ({c}x{out_hw[0]}x{out_hw[1]}). "
                           "Output size is too small")
    return kernel, stride, padding, dilation, out_hw


def _pool_windows(input, kernel, dilation, padding, stride, out_hw, fill):
    """(N, C, kh * kw, H_out, W_out): the windows of a pooling."""
    n, c = input.shape[:2]
    cols = Unfold.apply(input, kernel, dilation, padding, stride, fill, out_hw)
    return cols.reshape(n, c, kernel[0] * kernel[1], out_hw[0], out_hw[1])


def _max_offsets(input, windows, kernel, dilation, padding, stride, out_hw):
    """Where in each window torch's max_pool2d finds its maximum: the last nan
    if any, else the first element greater than the rest, else (a window of
    -inf) the first element inside the input (never the padding)."""
    xp = input.xp
    inside = Unfold.apply(Tensor._make(xp.ones((1, 1) + tuple(input.shape[2:]), dtype=input.dtype)), kernel, dilation,
                          padding, stride, 0, out_hw).array.reshape((1, 1, kernel[0] * kernel[1]) + out_hw) > 0
    w = windows.array
    nan = xp.isnan(w)
    first = xp.argmax(xp.where(inside & ~nan, w, -xp.inf), axis=2)
    first_inside = xp.argmax(inside, axis=2)
    chosen_inside = xp.take_along_axis(xp.broadcast_to(inside, w.shape), first[:, :, None], axis=2)[:, :, 0]
    first = xp.where(chosen_inside, first, first_inside)
    last_nan = w.shape[2] - 1 - xp.argmax(nan[:, :, ::-1], axis=2)
    return xp.where(nan.any(axis=2), last_nan, first).astype(dtypes.int64)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """The maximum of each kernel window of (N, C, H, W) (or (C, H, W)); the
    gradient goes to the first maximum of each window, as in torch."""
    if input.ndim == 3:
        out = max_pool2d(input.unsqueeze(0), kernel_size, stride, padding, dilation, ceil_mode, return_indices)
        return tuple(o.squeeze(0) for o in out) if return_indices else out.squeeze(0)
    kernel, stride, padding, dilation, out_hw = _pool_geometry(input, kernel_size, stride, padding, dilation,
                                                               ceil_mode)
    windows = _pool_windows(input, kernel, dilation, padding, stride, out_hw, -math.inf)
    offsets = _max_offsets(input, windows, kernel, dilation, padding, stride, out_hw)
    values = gather_valid(windows, 2, Tensor._make(offsets[:, :, None])).squeeze(2)
    if not return_indices:
        return values
    xp = input.xp
    ki, kj = offsets // kernel[1], offsets % kernel[1]
    rows = xp.arange(out_hw[0]).reshape(1, 1, -1, 1) * stride[0] - padding[0] + ki * dilation[0]
    cols = xp.arange(out_hw[1]).reshape(1, 1, 1, -1) * stride[1] - padding[1] + kj * dilation[1]
    return values, Tensor._make((rows * input.shape[3] + cols).astype(dtypes.int64))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """The mean of each kernel window of (N, C, H, W) (or (C, H, W))."""
    if input.ndim == 3:
        return avg_pool2d(input.unsqueeze(0), kernel_size, stride, padding, ceil_mode, count_include_pad,
                          divisor_override).squeeze(0)
    kernel, stride, padding, _, out_hw = _pool_geometry(input, kernel_size, stride, padding, 1, ceil_mode)
    windows = _pool_windows(input, kernel, (1, 1), padding, stride, out_hw, 0)
    total = windows.sum(2)
    if divisor_override is not None:
        return total / divisor_override
    # the divisor: the cells of each window inside the input, or inside the padded input
    # (count_include_pad; ceil_mode's extra cells never count)
    xp = input.xp
    h, w = input.shape[2:]
    if count_include_pad:
        cells = xp.ones((1, 1, h + 2 * padding[0], w + 2 * padding[1]), dtype=input.dtype)
        cells_padding = (0, 0)
    else:
        cells, cells_padding = xp.ones((1, 1, h, w), dtype=input.dtype), padding
    count = _windows(xp, cells, kernel, (1, 1), cells_padding, stride, out_hw, 0).sum(axis=(2, 3))
    return total / Tensor._make(count)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """max_pool2d over the last dim of (N, C, L)."""
    if input.ndim in (2, 3):
        stride_ = _one(kernel_size if stride is None or stride == [] or stride == () else stride)
        size = _out_size(input.shape[-1], _one(kernel_size), _one(dilation), _one(padding), stride_, ceil_mode)
        if size < 1:
            raise RuntimeError(f"max_pool1d() Invalid computed output size: {size}")
    out = max_pool2d(input.unsqueeze(-2), (1, _one(kernel_size)), None if stride is None else (1, _one(stride)),
                     (0, _one(padding)), (1, _one(dilation)), ceil_mode, return_indices)
    if return_indices:
        return out[0].squeeze(-2), out[1].squeeze(-2)
    return out.squeeze(-2)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """avg_pool2d over the last dim of (N, C, L)."""
    return avg_pool2d(input.unsqueeze(-2), (1, _one(kernel_size)), None if stride is None else (1, _one(stride)),
                      (0, _one(padding)), ceil_mode, count_include_pad).squeeze(-2)


def adaptive_avg_pool2d(input, output_size):
    """Means over the windows that split (H, W) into output_size (torch's
    boundaries: floor(i H / out) to ceil((i + 1) H / out))."""
    if input.ndim == 3:
        return adaptive_avg_pool2d(input.unsqueeze(0), output_size).squeeze(0)
    h, w = input.shape[2:]
    if output_size is None:
        output_size = (h, w)
    if not isinstance(output_size, int):      # None in output_size keeps that dim's size
        output_size = tuple(n if o is None else o for o, n in zip(output_size, (h, w)))
    out_h, out_w = pair(output_size, "output_size")
    if h % out_h == 0 and w % out_w == 0:
        return avg_pool2d(input, (h // out_h, w // out_w))
    rows = []
    for i in range(out_h):
        top, bottom = (i * h) // out_h, -(-((i + 1) * h) // out_h)
        cells = [input[:, :, top:bottom, (j * w) // out_w:-(-((j + 1) * w) // out_w)].mean((2, 3))
                 for j in range(out_w)]
        rows.append(stack(cells, -1))
    return stack(rows, -2)


def _tuple(value, count, name):
    if isinstance(value, int):
        return (value,) * count
    value = tuple(int(v) for v in value)
    if len(value) != count:
        raise RuntimeError(f"expected {name} to be a single integer value or a list of {count} values to match the "
                           f"convolution dimensions, but got {name}={list(value)}")
    return value


@autocast_mode.lower_precision
def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The transposed 2-D convolution (the gradient of conv2d with respect to
    its input) of (N, C_in, H, W) (or (C_in, H, W)) with weight
    (C_in, C_out / groups, kh, kw): a matrix product into columns, then fold
    (col2im) adds the overlapping windows.  Output (H - 1) s - 2 p + d (k - 1)
    + output_padding + 1 per spatial dim."""
    if input.ndim == 3:
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    if input.ndim != 4 or weight.ndim != 4:
        raise RuntimeError(f"conv_transpose2d: expected a 3-D or 4-D input and a 4-D weight, got input "
                           f"{list(input.shape)} and weight {list(weight.shape)}")
    if input.dtype != weight.dtype:
        raise RuntimeError(f"Input type ({dtypes.dtype_name(input.dtype)}) and weight type "
                           f"({dtypes.dtype_name(weight.dtype)}) should be the same")
    n, c, h, w = input.shape
    in_channels, per_group, kh, kw = weight.shape
    if c != in_channels or in_channels % groups:
        raise RuntimeError(f"Given transposed=1, weight of size {list(weight.shape)}, expected input"
                           f"{list(input.shape)} to have {in_channels} channels, but got {c} channels instead")
    stride, padding = _tuple(stride, 2, "stride"), _tuple(padding, 2, "padding")
    output_padding, dilation = _tuple(output_padding, 2, "output_padding"), _tuple(dilation, 2, "dilation")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise RuntimeError("output padding must be smaller than either stride or dilation, but got "
                               f"output_padding_height: {output_padding[0]} output_padding_width: "
                               f"{output_padding[1]} stride_height: {stride[0]} stride_width: {stride[1]} "
                               f"dilation_height: {dilation[0]} dilation_width: {dilation[1]}")
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + op + 1 for size, s, p, d, k, op in
                   zip((h, w), stride, padding, dilation, (kh, kw), output_padding))
    if out_hw[0] <= 0 or out_hw[1] <= 0:
        raise RuntimeError(f"conv_transpose2d: the output size {list(out_hw)} is not positive")
    out_channels = per_group * groups
    if groups == 1:
        cols = weight.reshape(in_channels, per_group * kh * kw).t() @ input.reshape(n, c, h * w)
    else:
        cols = weight.reshape(groups, in_channels // groups, per_group * kh * kw).transpose(-1, -2) @ \
            input.reshape(n, groups, c // groups, h * w)
    cols = cols.reshape(n, out_channels * kh * kw, h * w)
    out = Fold.apply(cols, out_hw, (kh, kw), dilation, padding, stride, (h, w))
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)
    return out


@autocast_mode.lower_precision
def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The transposed 1-D convolution of (N, C_in, L) with weight (C_in, C_out / groups, k)."""
    if input.ndim == 2:
        return conv_transpose1d(input.unsqueeze(0), weight, bias, stride, padding, output_padding, groups,
                                dilation).squeeze(0)
    if input.ndim != 3 or weight.ndim != 3:
        raise RuntimeError(f"conv_transpose1d: expected a 2-D or 3-D input and a 3-D weight, got input "
                           f"{list(input.shape)} and weight {list(weight.shape)}")
    out = conv_transpose2d(input.unsqueeze(2), weight.unsqueeze(2), bias, (1, _one(stride)), (0, _one(padding)),
                           (0, _one(output_padding)), groups, (1, _one(dilation)))
    return out.squeeze(2)


def transposed_output_padding(input_size, output_size, stride, padding, kernel_size, dilation):
    """The output_padding that makes a transposed convolution's output ``output_size``
    (torch's ConvTranspose's forward(input, output_size))."""
    output_padding = []
    for size, target, s, p, k, d in zip(input_size, output_size, stride, padding, kernel_size, dilation):
        smallest = (size - 1) * s - 2 * p + d * (k - 1) + 1
        if not smallest <= target < smallest + s:
            raise ValueError(f"requested an output size of {list(output_size)}, but valid sizes range from "
                             f"{smallest} to {smallest + s - 1} (for an input of {list(input_size)})")
        output_padding.append(target - smallest)
    return tuple(output_padding)
