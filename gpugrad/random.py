"""Random number generation: torch's Generator API over NumPy's generator
(PCG64) on the CPU and CuPy's RandomState on each GPU.

``manual_seed(s)`` seeds the default generator of every device, so a script
that seeds once is reproducible (the streams differ from torch's Mersenne
Twister: the same seed gives other numbers than torch, the same numbers from
run to run).  Every sampling function takes ``generator=`` to draw from a
generator of one's own.
"""

import json
import math
import os

import numpy

from gpugrad import backend, dtypes, validation
from gpugrad.autograd.function import InternalFunction
from gpugrad.dims import size_arg
from gpugrad.tensor import Tensor


class Generator:
    """A random number generator on one device: ``Generator(device='cpu')``,
    ``g.manual_seed(seed)`` (returns g), ``g.seed()``, ``g.initial_seed()``,
    ``g.get_state()`` / ``g.set_state(state)`` (a uint8 tensor)."""

    def __init__(self, device="cpu"):
        self.device = backend.as_device(device)
        self._seed = int.from_bytes(os.urandom(8), "little") >> 1
        self._make()

    def _make(self):
        self._philox_offset = 0
        if self.device.type == "cpu":
            self._engine = numpy.random.default_rng(self._seed)
        else:
            cp = backend.cupy_module()
            with cp.cuda.Device(self.device.index):
                self._engine = cp.random.RandomState(self._seed % 2**63)

    def manual_seed(self, seed):
        """Seed this generator (an int); returns the generator."""
        self._seed = int(seed) % 2**64
        self._make()
        return self

    def seed(self):
        """Seed from the operating system's entropy; returns the seed."""
        self.manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        return self._seed

    def initial_seed(self):
        return self._seed

    def get_state(self):
        """The generator's state as a uint8 tensor (for set_state)."""
        if self.device.type != "cpu":
            raise NotImplementedError("get_state of a CUDA generator: re-seed it with manual_seed instead")
        blob = json.dumps({"seed": self._seed, "state": self._engine.bit_generator.state}).encode()
        return Tensor._make(numpy.frombuffer(blob, dtype=numpy.uint8).copy())

    def set_state(self, new_state):
        """Restore a state from get_state."""
        array = new_state.array if isinstance(new_state, Tensor) else numpy.asarray(new_state)
        blob = json.loads(bytes(backend.to_device(array, backend.CPU).astype(numpy.uint8)).decode())
        self.manual_seed(blob["seed"])
        self._engine.bit_generator.state = blob["state"]
        return self

    def __repr__(self):
        return f"<gpugrad.Generator object on {self.device}>"

    # -- sampling into arrays (the functions below and the factories call these) --
    def uniform(self, shape, low, high, dtype):
        """Uniform samples in [low, high) (drawn in float32 or wider)."""
        draw = _draw_dtype(dtype)
        if self.device.type == "cpu":
            out = self._engine.random(shape, dtype=draw)
        else:
            with backend.device_guard(self.device):
                out = self._engine.random_sample(shape, dtype=draw)
        if low != 0 or high != 1:
            out = out * (high - low) + low
        return out.astype(dtype, copy=False)

    def philox(self, counters):
        """(key, first counter) for a counter-based draw (CUDA's dropout kernel)
        that uses ``counters`` Philox counters; the generator's offset moves past
        them, so the next draw is fresh and manual_seed replays them (no device
        work, no host sync)."""
        offset = self._philox_offset
        self._philox_offset = offset + counters
        return self._seed, offset

    def normal(self, shape, mean, std, dtype):
        draw = _draw_dtype(dtype)
        with backend.device_guard(self.device):
            out = self._engine.standard_normal(shape, dtype=draw)
        if not (isinstance(mean, (int, float)) and mean == 0 and isinstance(std, (int, float)) and std == 1):
            out = out * std + mean
        return out.astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype):
        """Integers in [low, high)."""
        if low >= high:
            raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
        if self.device.type == "cpu":
            return self._engine.integers(low, high, size=shape, dtype=numpy.int64).astype(dtype, copy=False)
        with backend.device_guard(self.device):
            return self._engine.randint(low, high, size=shape, dtype=numpy.int64).astype(dtype, copy=False)

    def permutation(self, n):
        with backend.device_guard(self.device):
            return self._engine.permutation(n).astype(numpy.int64, copy=False)


def _draw_dtype(dtype):
    return dtypes.float64 if dtype == dtypes.float64 else dtypes.float32


default_generator = Generator("cpu")
_cuda_generators = {}


def generator_for(device, generator=None):
    """The generator that samples for ``device``: ``generator`` if given (it
    must be on that device), else the device's default generator."""
    if generator is not None:
        if generator.device.type != device.type or (device.type == "cuda" and generator.device != device):
            raise RuntimeError(f"Expected a '{device.type}' device type for generator but found "
                               f"'{generator.device.type}'")
        return generator
    if device.type == "cpu":
        return default_generator
    found = _cuda_generators.get(device.index)
    if found is None:
        found = _cuda_generators[device.index] = Generator(device).manual_seed(default_generator.initial_seed())
    return found


def manual_seed(seed):
    """Seed the default generator of the CPU and of every GPU; returns the CPU generator."""
    seed = int(seed)
    default_generator.manual_seed(seed)
    for index in list(_cuda_generators):
        _cuda_generators[index].manual_seed(seed)
    return default_generator


def manual_seed_cuda(seed):
    """Seed the default generators of the GPUs only (torch.cuda.manual_seed_all)."""
    for index in range(backend.cupy_module().cuda.runtime.getDeviceCount() if backend.cuda_available() else 0):
        generator_for(backend.device("cuda", index)).manual_seed(seed)


def seed():
    """Seed every default generator from the operating system's entropy; returns the seed."""
    value = default_generator.seed()
    for generator in _cuda_generators.values():
        generator.manual_seed(value)
    return value


def initial_seed():
    """The seed of the CPU's default generator."""
    return default_generator.initial_seed()


def get_rng_state():
    """The state of the CPU's default generator (a uint8 tensor)."""
    return default_generator.get_state()


def set_rng_state(new_state):
    """Restore the CPU's default generator from get_rng_state()."""
    default_generator.set_state(new_state)


# -- sampling functions ---------------------------------------------------------------------

def _new(array, requires_grad):
    t = Tensor._make(array)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _place(dtype, device, default):
    dev = backend.as_device(device)
    return dev, dtypes.as_dtype(dtype) or default


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, **kwargs):
    """Uniform samples in [0, 1) of the given size (``rand(2, 3)`` or ``rand((2, 3))``)."""
    dev, dtype = _place(dtype, device, dtypes.get_default_dtype())
    shape = size_arg(size, kwargs.pop("size", None), "rand")
    validation.floating_only("check_uniform_bounds", dtype)
    _no_extra(kwargs, "rand")
    return _new(generator_for(dev, generator).uniform(shape, 0.0, 1.0, dtype), requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, **kwargs):
    """Standard normal samples of the given size."""
    dev, dtype = _place(dtype, device, dtypes.get_default_dtype())
    shape = size_arg(size, kwargs.pop("size", None), "randn")
    if math.prod(shape):                     # torch runs (and checks) no kernel for an empty tensor
        validation.floating_only("normal_kernel_cpu", dtype)
    _no_extra(kwargs, "randn")
    return _new(generator_for(dev, generator).normal(shape, 0.0, 1.0, dtype), requires_grad)


def _no_extra(kwargs, name):
    if kwargs:
        raise TypeError(f"{name}() got an unexpected keyword argument '{next(iter(kwargs))}'")


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers in [low, high): ``randint(high, size)`` or ``randint(low, high, size)`` (int64 by default)."""
    if size is None:                 # randint(high, size)
        low, high, size = 0, low, high
    elif high is None:               # randint(high, size=...)
        low, high = 0, low
    if size is None or high is None:
        raise TypeError("randint() missing required argument 'size'")
    dev, dtype = _place(dtype, device, dtypes.int64)
    if dtype in (dtypes.uint8, dtypes.int8, dtypes.int16, dtypes.int32):
        info = numpy.iinfo(dtype)
        for value, name in ((int(low), "from"), (int(high) - 1, "to - 1")):
            if not info.min <= value <= info.max:
                raise RuntimeError(f"{name} is out of bounds for {validation.C_TYPES[dtype]}")
    array = generator_for(dev, generator).integers(int(low), int(high), size_arg((size,)), dtype)
    return _new(array, requires_grad)


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0 .. n-1 (int64 by default)."""
    dev, dtype = _place(dtype, device, dtypes.int64)
    if n < 0:
        raise RuntimeError(f"Trying to create tensor with negative dimension {n}: [{n}]")
    return _new(generator_for(dev, generator).permutation(int(n)).astype(dtype, copy=False), requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) of input's shape, dtype and device."""
    return rand(input.shape, dtype=dtype or input.dtype, device=device or input.device, requires_grad=requires_grad)


def randn_like(input, *, dtype=None, device=None, requires_grad=False):
    """Standard normal samples of input's shape, dtype and device."""
    return randn(input.shape, dtype=dtype or input.dtype, device=device or input.device, requires_grad=requires_grad)


def randint_like(input, low=0, high=None, *, dtype=None, device=None):
    """Integers in [low, high) of input's shape, dtype and device."""
    if high is None:
        low, high = 0, low
    return randint(low, high, input.shape, dtype=dtype or input.dtype, device=device or input.device)


def check_std(std):
    """torch's errors for a normal's standard deviation (a number or a tensor)."""
    if isinstance(std, Tensor):
        if std.numel() and not bool((std.array >= 0).all()):
            raise RuntimeError("normal expects all elements of std >= 0.0")
    elif not std >= 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {_number(std)}")


def check_probability(p):
    """torch's error for a Bernoulli probability outside [0, 1] (nan included)."""
    if not 0 <= p <= 1:
        raise RuntimeError(f"bernoulli_ expects p to be in [0, 1], but got p={_number(p)}")


def _number(value):
    return int(value) if float(value).is_integer() else value


class Normal(InternalFunction):
    """mean + std * noise; the gradient is grad to mean and grad * (out - mean)
    / std to std (torch's)."""

    @staticmethod
    def forward(ctx, mean, std, noise):
        out = noise * std + mean
        ctx.save_for_backward(mean, std, out)
        return out.astype(noise.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        mean, std, out = ctx.saved_tensors
        needs = ctx.needs_input_grad
        return grad if needs[0] else None, grad * (out - mean) / std if needs[1] else None, None


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Normal samples: ``normal(mean, std)`` with tensors (elementwise, broadcast;
    differentiable in mean and std) or numbers and ``size``."""
    check_std(std)
    tensors = [t for t in (mean, std) if isinstance(t, Tensor)]
    if tensors:
        like = tensors[0]
        shape = validation.broadcast_shapes(*(t.shape for t in tensors)) if size is None else size_arg((size,))
        dtype = dtypes.as_dtype(dtype) or like.dtype
        noise = generator_for(like.device, generator).normal(shape, 0.0, 1.0, dtype)
        m = mean if isinstance(mean, Tensor) else dtype.type(mean)
        s = std if isinstance(std, Tensor) else dtype.type(std)
        out = Normal.apply(m, s, noise)
        return out.requires_grad_(True) if requires_grad else out
    if size is None:
        raise TypeError("normal() with number mean and std needs a size")
    dev, dtype = _place(dtype, device, dtypes.get_default_dtype())
    return _new(generator_for(dev, generator).normal(size_arg((size,)), mean, std, dtype), requires_grad)


class Bernoulli(InternalFunction):
    """0/1 samples, u < p; no gradient (zero, as torch's)."""

    @staticmethod
    def forward(ctx, p, u):
        return (u < p).astype(p.dtype)

    @staticmethod
    def backward(ctx, grad):
        return Tensor._make(grad.xp.zeros(grad.shape, dtype=grad.dtype)), None


def bernoulli(input, p=None, *, generator=None):
    """0/1 samples with the probabilities in ``input`` (or ``p``), of input's dtype."""
    u = generator_for(input.device, generator).uniform(input.shape, 0.0, 1.0, dtypes.float64)
    if p is not None:
        check_probability(p)
        return Bernoulli.apply(input * 0 + p, u) if input.requires_grad else Tensor._make((u < p).astype(input.dtype))
    probabilities = input.array
    if not bool(((probabilities >= 0) & (probabilities <= 1)).all()):
        raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.")
    return Bernoulli.apply(input, u)


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Class indices drawn with the (unnormalised) weights of each row of
    ``input`` ((C,) or (N, C)): int64 of shape (num_samples,) or (N, num_samples)."""
    if input.ndim not in (1, 2):
        raise RuntimeError("prob_dist must be 1 or 2 dim")
    if num_samples <= 0:
        raise RuntimeError("cannot sample n_sample <= 0 samples")
    classes = input.shape[-1]
    if not replacement and num_samples > classes:
        raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    xp = input.xp
    rows = input.shape[0] if input.ndim == 2 else 1
    weights = input.array.astype(dtypes.float64).reshape(rows, classes)
    if rows == 0:
        return Tensor._make(xp.zeros((0, num_samples), dtype=dtypes.int64))
    if bool((weights < 0).any()) or not bool(xp.isfinite(weights).all()):
        raise RuntimeError("invalid multinomial distribution (encountering probability entry < 0, inf or nan)")
    totals = weights.sum(axis=1, keepdims=True)
    if bool((totals <= 0).any()):
        raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
    gen = generator_for(input.device, generator)
    if replacement:
        cdf = xp.cumsum(weights / totals, axis=1)
        u = gen.uniform((weights.shape[0], num_samples), 0.0, 1.0, dtypes.float64)
        index = (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)
        index = xp.minimum(index, classes - 1)
        # a class of weight 0 at the end of the cdf must never be drawn: step back to the last positive one
        positive = weights > 0
        last = classes - 1 - xp.argmax(positive[:, ::-1], axis=1)
        index = xp.minimum(index, last[:, None])
    else:
        # Efraimidis-Spirakis: the k largest keys log(u) / w; zero weights come last, in
        # order (torch draws them once the others are exhausted)
        u = gen.uniform(weights.shape, 0.0, 1.0, dtypes.float64)
        with numpy.errstate(divide="ignore"):
            keys = xp.where(weights > 0, xp.log(u) / weights, -xp.inf)
        index = xp.argsort(-keys, axis=1, kind="stable")[:, :num_samples]
    index = index.astype(dtypes.int64)
    return Tensor._make(index if input.ndim == 2 else index[0])
