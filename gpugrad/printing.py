"""How a tensor prints: torch's layout (``tensor([1.5000, 2.0000], grad_fn=<MulBackward0>)``)."""

import numpy

from gpugrad import backend, dtypes

_options = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """torch.set_printoptions: digits after the point, the element count above
    which tensors are summarised, items kept at each edge, line width, and
    whether to force (True) or forbid (False) scientific notation."""
    if profile is not None:
        _options.update({"default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
                         "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
                         "full": dict(precision=4, threshold=float("inf"), edgeitems=3, linewidth=80)}[profile])
    for key, value in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                       ("linewidth", linewidth)):
        if value is not None:
            _options[key] = value
    _options["sci_mode"] = sci_mode


def _shown(data):
    """The elements a summarised print shows (edge items of each dim), or all."""
    if data.size <= _options["threshold"]:
        return data
    edge = _options["edgeitems"]
    for axis in range(data.ndim):
        if data.shape[axis] > 2 * edge:
            data = numpy.concatenate([numpy.take(data, range(edge), axis),
                                      numpy.take(data, range(data.shape[axis] - edge, data.shape[axis]), axis)],
                                     axis)
    return data


def _float_formatter(data):
    """One element as torch writes it: fixed or scientific notation, then
    padded to the widest shown element so the columns line up."""
    precision = _options["precision"]
    shown = _shown(data)
    finite = shown[numpy.isfinite(shown)]
    integral = finite.size == 0 or bool(numpy.all(finite == numpy.round(finite)))
    nonzero = numpy.abs(finite[finite != 0])
    scientific = _options["sci_mode"]
    if scientific is None:
        scientific = bool(nonzero.size) and (nonzero.max() >= 1e8 or nonzero.min() < 10 ** -precision
                                             or nonzero.max() / nonzero.min() > 1000 and not integral)
    if scientific:
        def plain(v):
            return f"{v:.{precision}e}" if numpy.isfinite(v) else str(v)
    elif integral:
        def plain(v):
            return f"{v:.0f}." if numpy.isfinite(v) else str(v)
    else:
        def plain(v):
            return f"{v:.{precision}f}" if numpy.isfinite(v) else str(v)
    width = max((len(plain(v)) for v in _nonzero(finite)), default=0)     # torch's rule
    return lambda v: plain(v).rjust(width)


def _nonzero(finite):
    return finite[finite != 0].reshape(-1)


def format_tensor(t):
    """torch's repr of a tensor: values, then device, dtype and grad_fn where they are not the defaults."""
    data = backend.to_device(t.array, backend.CPU)
    if data.dtype == dtypes.bfloat16:
        data = data.astype(numpy.float32)
    kwargs = {"separator": ", ", "prefix": "tensor(", "threshold": _options["threshold"],
              "edgeitems": _options["edgeitems"], "max_line_width": _options["linewidth"]}
    formatter = _float_formatter(data.astype(numpy.float64)) if data.dtype.kind == "f" and data.size else None
    if formatter is not None:
        kwargs["formatter"] = {"float_kind": formatter}
    if data.size == 0:
        body = "[]"
    elif data.ndim:
        body = numpy.array2string(data, **kwargs)
    else:
        body = formatter(data.item()).strip() if formatter else repr(data.item())
    extras = []
    if t.device.type == "cuda":
        extras.append(f"device='{t.device}'")
    default = {"f": dtypes.get_default_dtype(), "i": dtypes.int64, "b": dtypes.bool_}.get(t.dtype.kind)
    if t.dtype != default or data.size == 0:
        extras.append(f"dtype=gpugrad.{dtypes.dtype_name(t.dtype)}")
    if t.grad_fn is not None:
        extras.append(f"grad_fn=<{t.grad_fn.name()}>")
    elif t.requires_grad:
        extras.append("requires_grad=True")
    return "tensor(" + body + "".join(", " + e for e in extras) + ")"
