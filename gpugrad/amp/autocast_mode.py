"""autocast: inside a region, the ops on one device type compute in a lower
precision (matrix products, convolutions) or in float32 (reductions, softmax,
log_softmax, losses, norms, exp/log/pow), as torch.autocast does.

The op functions carry their kind as a decorator (:func:`lower_precision`,
:func:`float32`): outside a region it costs one thread-local check.  Inside,
floating tensor arguments (float16, bfloat16, float32; never float64) on the
region's device type are cast first; casts of leaves that require grad
(weights) are cached for the life of the outermost region, as torch's are.
Other ops run in their inputs' dtype, mixed dtypes promoting as usual.  The
engine suspends autocast during backward: a backward op runs in the dtype its
forward ran in.
"""

import functools
import inspect
import threading
import warnings
import weakref

from gpugrad import backend, dtypes
from gpugrad.tensor import Tensor

_DEFAULT_DTYPE = {"cuda": dtypes.float16, "cpu": dtypes.bfloat16}
_ELIGIBLE = frozenset((dtypes.float16, dtypes.bfloat16, dtypes.float32))


class _State(threading.local):
    active = False            # any region entered and enabled in this thread
    depth = 0
    cache_enabled = True

    def __init__(self):
        self.dtypes = {}      # device type -> the dtype of its active region
        self.cache = {}       # id(leaf) -> (weak reference, version, cast)


_state = _State()

# The threads with an active region (their _state.active): while none has one, an op's wrapper
# reads this global alone, not the thread-local state (the per-call check when autocast is off).
_active_threads = 0
_active_lock = threading.Lock()


def _set_active(state, active):
    global _active_threads
    if active != state.active:
        with _active_lock:
            _active_threads += 1 if active else -1
    state.active = active


def is_autocast_enabled(device_type="cuda"):
    """True inside an enabled autocast region for ``device_type``."""
    return device_type in _state.dtypes


def get_autocast_dtype(device_type):
    """The lower-precision dtype of ``device_type``'s region (its default outside one)."""
    return _state.dtypes.get(device_type, _DEFAULT_DTYPE[device_type])


class autocast:
    """``with autocast("cuda"):`` (float16) or ``autocast("cpu")`` (bfloat16),
    or ``@autocast(...)`` on a function: torch.autocast's arguments
    (``dtype``, ``enabled``, ``cache_enabled``).  Nested regions restore the
    outer one on exit; ``enabled=False`` turns autocast off inside."""

    def __init__(self, device_type, dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str):
            raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
        if device_type not in _DEFAULT_DTYPE:
            raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
        self.device = device_type
        self.fast_dtype = _DEFAULT_DTYPE[device_type] if dtype is None else dtypes.as_dtype(dtype)
        self._enabled = bool(enabled)
        if self._enabled and self.fast_dtype not in (dtypes.float16, dtypes.bfloat16):
            warnings.warn(f"In {device_type} autocast, but the target dtype {dtypes.dtype_name(self.fast_dtype)} "
                          "is not supported (float16 and bfloat16 are). Disabling autocast.", UserWarning,
                          stacklevel=2)
            self._enabled = False
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)

    def __enter__(self):
        state = _state
        self._previous = (state.dtypes.get(self.device), state.cache_enabled)
        if self._enabled:
            state.dtypes[self.device] = self.fast_dtype
        else:
            state.dtypes.pop(self.device, None)
        state.cache_enabled = self._cache_enabled
        state.depth += 1
        _set_active(state, bool(state.dtypes))
        return self

    def __exit__(self, *exc):
        state = _state
        previous, state.cache_enabled = self._previous
        if previous is None:
            state.dtypes.pop(self.device, None)
        else:
            state.dtypes[self.device] = previous
        state.depth -= 1
        if state.depth == 0:
            state.cache.clear()
        _set_active(state, bool(state.dtypes))
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with autocast(self.device, self.fast_dtype, self._enabled, self._cache_enabled):
                return function(*args, **kwargs)
        return wrapper


class suspended:
    """No autocast inside (the engine's backward pass): a class, not a generator context manager
    (one per backward), that touches nothing when no region is active."""

    __slots__ = ("_previous",)

    def __enter__(self):
        state = _state
        self._previous = previous = state.active
        if previous:
            _set_active(state, False)
        return self

    def __exit__(self, *exc):
        if self._previous:
            _set_active(_state, True)
        return False


def _cast(value, target):
    if isinstance(value, Tensor):
        dtype = value.array.dtype
        if dtype not in _ELIGIBLE:
            return value
        region = _state.dtypes.get("cuda" if backend.is_cupy_array(value.array) else "cpu")
        if region is None:
            return value
        want = region if target is None else target
        return value if dtype == want else _cached_cast(value, want)
    if isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
        return type(value)([_cast(v, target) for v in value])
    return value


def _cached_cast(tensor, dtype):
    """tensor.to(dtype), kept for the region when tensor is a leaf that requires grad."""
    state = _state
    if not (state.cache_enabled and tensor.is_leaf and tensor.requires_grad):
        return tensor.to(dtype)
    key = (id(tensor), dtype)
    entry = state.cache.get(key)
    if entry is not None and entry[0]() is tensor and entry[1] == tensor._version:
        return entry[2]
    cast = tensor.to(dtype)
    state.cache[key] = (weakref.ref(tensor), tensor._version, cast)
    return cast


def _autocasting(target):
    def decorate(function):
        if not inspect.isfunction(function):
            raise TypeError(f"an autocast kind decorates an op function, not {function!r}")
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if _active_threads and _state.active:
                args = [_cast(a, target) for a in args]
                kwargs = {k: _cast(v, target) for k, v in kwargs.items()}
            return function(*args, **kwargs)
        wrapper.autocast = "lower precision" if target is None else "float32"
        return wrapper
    return decorate


lower_precision = _autocasting(None)
lower_precision.__doc__ = "An op that autocast runs in the region's lower-precision dtype (matmul, linear, conv)."
float32 = _autocasting(dtypes.float32)
float32.__doc__ = "An op that autocast runs in float32 (reductions, softmax, losses, norms, exp, log, pow)."


# The ops autocast handles, by kind, as names under gpugrad: torch's lists for the ops gpugrad has (and
# dot, outer, einsum: products, as matmul).
# Each carries its kind as the decorator above; tests/test_amp.py holds the two against each other.
LOWER_PRECISION_OPS = (
    "addmm",
    "bmm",
    "dot",
    "einsum",
    "linear",
    "matmul",
    "mm",
    "mv",
    "outer",
    "nn.functional.conv1d",
    "nn.functional.conv2d",
    "nn.functional.conv_transpose1d",
    "nn.functional.conv_transpose2d",
    "nn.functional.scaled_dot_product_attention",
)
FLOAT32_OPS = (
    "cosh",
    "cumprod",
    "cumsum",
    "exp",
    "expm1",
    "log",
    "log10",
    "log1p",
    "log2",
    "log_softmax",
    "logsumexp",
    "norm",
    "pow",
    "prod",
    "reciprocal",
    "rsqrt",
    "sinh",
    "softmax",
    "sum",
    "tan",
    "nn.functional.binary_cross_entropy",
    "nn.functional.binary_cross_entropy_with_logits",
    "nn.functional.cosine_embedding_loss",
    "nn.functional.cross_entropy",
    "nn.functional.ctc_loss",
    "nn.functional.huber_loss",
    "nn.functional.kl_div",
    "nn.functional.l1_loss",
    "nn.functional.layer_norm",
    "nn.functional.margin_ranking_loss",
    "nn.functional.mse_loss",
    "nn.functional.nll_loss",
    "nn.functional.normalize",
    "nn.functional.poisson_nll_loss",
    "nn.functional.smooth_l1_loss",
    "nn.functional.softmin",
    "nn.functional.softplus",
    "nn.functional.triplet_margin_loss",
)
