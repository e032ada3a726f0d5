"""The differential fuzzer: gpugrad against torch, case by case.

A *case* is one call of one public op (an entry of ``differential_table.py``)
on inputs drawn from a seeded NumPy generator: 0-d, empty, broadcast,
transposed, step-sliced, expanded and permuted tensors holding normal values,
ties, zeros, nan and +-inf, with the op's options drawn too (valid and
invalid).  The same inputs are built in both libraries (float64 unless a
case asks for another dtype), the op runs in both, and the case passes when

* both raise, gpugrad an exception of torch's class (the builtin one torch's
  exception derives from: RuntimeError, IndexError, ValueError, TypeError,
  NotImplementedError), or neither raises and
* the outputs have the same structure, shapes, dtypes, values (nan and inf in
  the same places, finite values within a tolerance scaled by the output's
  size), ``requires_grad`` and aliasing (an output that shares memory with an
  input in torch does in gpugrad, and conversely), and
* with random upstream gradients the gradients of every input agree, by
  ``backward()`` into ``.grad`` (the engine's array path) or by
  ``autograd.grad(create_graph=True)`` followed by a second derivative
  (the differentiable path), chosen per case.

Random *programs* (entry ``program``) chain out-of-place and in-place steps
(views written through, saved tensors overwritten) and compare every step,
the errors torch raises at a step or in backward, and the leaves' gradients.

Each case has its own seed, derived from the run's seed and the case number,
and a failing case is printed as ``entry/form:seed``: ``GPUGRAD_FUZZ_CASE``
replays it (``python tests/differential.py --case 'exp/method:123'``).
"""

import argparse
import math
import os
import sys
import time
import traceback
import warnings
import zlib

import numpy
import torch

import gpugrad

SPECIAL = (math.nan, math.inf, -math.inf)
TORCH_CATEGORIES = (IndexError, ValueError, TypeError, NotImplementedError, KeyError, RuntimeError)


class Skip(Exception):
    """Raised by a generator when the drawn combination is not worth running."""


# -- input descriptions ----------------------------------------------------------------------------

class T:
    """A tensor argument: the leaf's values (``base``), its dtype, whether it
    requires grad, and the view taken of the leaf before the op (``layout``)."""

    __slots__ = ("base", "dtype", "grad", "layout", "values")

    def __init__(self, base, dtype, grad, layout, values):
        self.base, self.dtype, self.grad, self.layout, self.values = base, dtype, grad, layout, values

    @property
    def shape(self):
        return layout_shape(self.base.shape, self.layout)

    def __repr__(self):
        view = "" if self.layout[0] == "plain" else f" {self.layout}"
        grad = " grad" if self.grad else ""
        return f"T{list(self.shape)} {self.dtype} {self.values}{view}{grad}"


class D:
    """A dtype argument, named (``D('float32')`` is gpugrad.float32 / torch.float32)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


class Raw:
    """An argument built by a function of the library (``Raw(lambda lib: lib.Size([2]))``)."""

    __slots__ = ("make", "label")

    def __init__(self, make, label):
        self.make, self.label = make, label

    def __repr__(self):
        return self.label


def layout_shape(shape, layout):
    kind = layout[0]
    if kind == "clone":
        return layout_shape(shape, layout[1])
    if kind == "plain":
        return tuple(shape)
    if kind == "transpose":
        s = list(shape)
        s[layout[1]], s[layout[2]] = s[layout[2]], s[layout[1]]
        return tuple(s)
    if kind == "slice":
        _, dim, start, step = layout
        s = list(shape)
        s[dim] = len(range(start, shape[dim], step))
        return tuple(s)
    if kind == "expand":
        return tuple(layout[1])
    if kind == "permute":
        return tuple(shape[p] for p in layout[1])
    raise AssertionError(kind)


def apply_layout(x, layout):
    kind = layout[0]
    if kind == "clone":         # a non-leaf copy first (what an in-place op may write into)
        return apply_layout(x.clone(), layout[1])
    if kind == "plain":
        return x
    if kind == "transpose":
        return x.transpose(layout[1], layout[2])
    if kind == "slice":
        _, dim, start, step = layout
        return x[(slice(None),) * dim + (slice(start, None, step),)]
    if kind == "expand":
        return x.expand(*layout[1])
    if kind == "permute":
        return x.permute(*layout[1])
    raise AssertionError(kind)


FLOATS = ("float64", "float32", "float16", "bfloat16")


class Gen:
    """What a table entry draws its arguments with (one NumPy generator per case)."""

    def __init__(self, rng):
        self.rng = rng

    def chance(self, p):
        return self.rng.random() < p

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def int(self, low, high):
        """An int in [low, high]."""
        return int(self.rng.integers(low, high + 1))

    def float(self, low=-2.0, high=2.0):
        return float(self.rng.uniform(low, high))

    # -- shapes and dims --
    def shape(self, min_ndim=0, max_ndim=3, empty=True, low=1, high=4):
        ndim = self.int(min_ndim, max_ndim)
        shape = [self.int(low, high) for _ in range(ndim)]
        if empty and ndim and self.chance(0.12):
            shape[self.int(0, ndim - 1)] = 0
        return tuple(shape)

    def broadcastable(self, shape, same=0.4):
        """A shape broadcasting against ``shape``: itself, fewer leading dims, dims of 1, a leading dim more."""
        if self.chance(same):
            return tuple(shape)
        s = list(shape)
        if s and self.chance(0.4):
            s = s[self.int(1, len(s)):]
        s = [1 if n and self.chance(0.35) else n for n in s]
        if self.chance(0.15) and len(s) < 4:
            s = [self.int(1, 3)] + s
        if self.chance(0.04) and s:     # does not broadcast (both must raise)
            i = self.int(0, len(s) - 1)
            s[i] = s[i] + 2
        return tuple(s)

    def dim(self, ndim, wrong=0.03):
        """A dim of a tensor of ``ndim`` dims, sometimes negative, rarely out of range."""
        size = max(ndim, 1)
        if self.chance(wrong):
            return self.choice([size, -size - 1])
        d = self.int(0, size - 1)
        return d - size if self.chance(0.3) else d

    def dims(self, ndim, min_count=1):
        """A tuple of distinct dims."""
        if ndim == 0:
            return self.choice([(), (0,), (-1,)])
        count = self.int(min_count, ndim)
        picked = self.rng.permutation(ndim)[:count]
        return tuple(int(d) - ndim if self.chance(0.3) else int(d) for d in picked)

    # -- values --
    def values(self, shape, dtype, values=None):
        rng = self.rng
        if dtype == "bool":
            return rng.random(shape) < 0.5, "bool"
        if dtype in ("int64", "int32", "int16", "int8", "uint8"):
            low = 0 if dtype == "uint8" else -4
            return rng.integers(low, 5, shape).astype(dtype), "ints"
        kind = values or self.choice(("normal", "normal", "ties", "zeros", "special", "special", "wide"))
        if kind == "normal":
            a = rng.standard_normal(shape)
        elif kind == "wide":
            a = rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 4, shape)
        elif kind == "ties":
            a = rng.integers(-2, 3, shape).astype(numpy.float64)
        elif kind == "zeros":
            a = numpy.where(rng.random(shape) < 0.35, 0.0, rng.standard_normal(shape))
        elif kind == "special":
            a = rng.standard_normal(shape)
            pick = rng.random(shape)
            a = numpy.where(pick < 0.08, math.nan, numpy.where(pick < 0.14, math.inf, numpy.where(
                pick < 0.2, -math.inf, numpy.where(pick < 0.26, 0.0, a))))
        elif kind == "positive":
            a = numpy.abs(rng.standard_normal(shape)) + 0.1
        elif kind == "unit":
            a = rng.uniform(0.02, 0.98, shape)
        elif kind == "unit_edges":
            a = numpy.where(rng.random(shape) < 0.3, rng.integers(0, 2, shape).astype(float),
                            rng.uniform(0, 1, shape))
        elif kind == "distinct":
            a = rng.permutation(max(int(numpy.prod(shape)), 1))[:int(numpy.prod(shape))].reshape(shape) * 0.5
            a = a + rng.uniform(-0.1, 0.1, shape)
        elif kind == "small":
            a = rng.uniform(-0.9, 0.9, shape)
        else:
            raise AssertionError(kind)
        return numpy.asarray(a, dtype=numpy.float64), kind

    def layout(self, shape, allow=("transpose", "slice", "expand", "permute")):
        """A view whose result has ``shape``, and the shape of the leaf it is taken of."""
        ndim = len(shape)
        options = ["plain", "plain", "plain"]
        if ndim >= 2 and "transpose" in allow:
            options.append("transpose")
        if ndim >= 1 and "slice" in allow:
            options.append("slice")
        if ndim >= 1 and "expand" in allow and any(n != 1 for n in shape):
            options.append("expand")
        if ndim >= 2 and "permute" in allow:
            options.append("permute")
        kind = self.choice(options)
        if kind == "plain":
            return tuple(shape), ("plain",)
        if kind == "transpose":
            d0, d1 = sorted(self.rng.permutation(ndim)[:2].tolist())
            s = list(shape)
            s[d0], s[d1] = s[d1], s[d0]
            return tuple(s), ("transpose", d0, d1)
        if kind == "slice":
            dim, step, start = self.int(0, ndim - 1), self.int(2, 3), self.int(0, 1)
            n = shape[dim]
            s = list(shape)
            s[dim] = start + (n - 1) * step + 1 if n else start
            return tuple(s), ("slice", dim, start, step)
        if kind == "expand":
            s = [1 if n != 1 and self.chance(0.6) else n for n in shape]
            if list(s) == list(shape):
                s[[i for i, n in enumerate(shape) if n != 1][0]] = 1
            if self.chance(0.3):
                while s and s[0] == 1 and self.chance(0.7):
                    s = s[1:]
            return tuple(s), ("expand", tuple(shape))
        perm = [int(p) for p in self.rng.permutation(ndim)]
        base = [0] * ndim
        for i, p in enumerate(perm):
            base[p] = shape[i]
        return tuple(base), ("permute", tuple(perm))

    def tensor(self, shape=None, dtype="float64", values=None, grad=True, view=True):
        """A tensor argument of ``shape`` (drawn when None)."""
        if shape is None:
            shape = self.shape()
        base_shape, layout = self.layout(shape) if view else (tuple(shape), ("plain",))
        base, kind = self.values(base_shape, dtype, values)
        return T(base, dtype, grad and dtype in FLOATS, layout, kind)

    def index(self, shape, high, low=0, dtype="int64", view=False, wrong=0.03):
        """Integer indices in [low, high) (rarely one out of range)."""
        base_shape, layout = self.layout(shape) if view else (tuple(shape), ("plain",))
        if high <= low:
            base = numpy.full(base_shape, low, dtype=dtype)
        else:
            base = self.rng.integers(low, high, base_shape).astype(dtype)
        if base.size and self.chance(wrong):
            base.reshape(-1)[self.int(0, base.size - 1)] = self.choice([high, -high - 1 if low < 0 else -1])
        return T(base, dtype, False, layout, "index")

    def mask(self, shape, view=False):
        base_shape, layout = self.layout(shape) if view else (tuple(shape), ("plain",))
        return T(self.rng.random(base_shape) < 0.5, "bool", False, layout, "mask")

    def scalar(self, kinds=("float", "int", "bool", "special")):
        kind = self.choice(kinds)
        if kind == "float":
            return float(numpy.round(self.rng.standard_normal(), 3))
        if kind == "int":
            return self.int(-3, 3)
        if kind == "bool":
            return self.chance(0.5)
        return self.choice(SPECIAL + (0.0,))

    def other(self, shape, dtype="float64", scalar=0.2, dtypes=0.1, zero_d=0.1):
        """A second operand for ``shape``: a broadcastable tensor, a number or a 0-d tensor, of any dtype."""
        if self.chance(scalar):
            return self.scalar()
        if self.chance(dtypes):
            dtype = self.choice(("float32", "int64", "bool", "int32"))
        if self.chance(zero_d):
            return self.tensor((), dtype)
        return self.tensor(self.broadcastable(shape), dtype)

    def dtype(self, options=("float32", "float64", "int64", "int32", "bool", "float16")):
        return D(self.choice(options))


# -- building the same arguments in both libraries ---------------------------------------------------

def _dtype(lib, name):
    return getattr(lib, name)


class Built:
    """One library's arguments: args, kwargs and the leaves that require grad (in description order)."""

    def __init__(self, lib, args, kwargs, device, widen=False):
        self.lib, self.device, self.widen = lib, device, widen
        self.leaves, self.tensors = [], []
        self.args = self._build(args)
        self.kwargs = {k: self._build(v) for k, v in kwargs.items()}

    def _build(self, value):
        if isinstance(value, T):
            return self._tensor(value)
        if isinstance(value, D):
            return _dtype(self.lib, value.name)
        if isinstance(value, Raw):
            return value.make(self.lib)
        if isinstance(value, tuple) and type(value) is tuple:
            return tuple(self._build(v) for v in value)
        if isinstance(value, list):
            return [self._build(v) for v in value]
        if isinstance(value, dict):
            return {k: self._build(v) for k, v in value.items()}
        return value

    def _tensor(self, t):
        lib = self.lib
        data = t.base
        if lib is torch:
            leaf = torch.from_numpy(numpy.array(data, copy=True)).to(getattr(torch, t.dtype))
            if self.widen and leaf.is_floating_point():
                leaf = leaf.to(torch.float64)       # the value its own dtype holds, carried in float64
        else:
            leaf = gpugrad.tensor(numpy.array(data, copy=True), device=self.device).to(getattr(gpugrad, t.dtype))
        if t.grad:
            leaf.requires_grad_(True)
            self.leaves.append(leaf)
        x = apply_layout(leaf, t.layout)
        self.tensors.append(x)
        return x


def build_pair(args, kwargs, device):
    return Built(torch, args, kwargs, "cpu"), Built(gpugrad, args, kwargs, device)


# -- comparing results --------------------------------------------------------------------------------

class Mismatch(Exception):
    pass


def category(error):
    for kind in TORCH_CATEGORIES:
        if isinstance(error, kind):
            return kind
    return type(error)


def _host(t):
    if isinstance(t, torch.Tensor):
        t = t.detach()
        if t._is_zerotensor():
            return numpy.zeros(tuple(t.shape))
        if t.dtype == torch.bfloat16:
            t = t.float()
        return t.numpy()
    return numpy.asarray(t.detach().to("cpu").array)


TOLERANCE = {"float64": (1e-7, 1e-9), "float32": (2e-4, 2e-5), "float16": (2e-2, 2e-3), "bfloat16": (5e-2, 1e-2)}


def dtype_name(dtype):
    return str(dtype).replace("torch.", "").replace("gpugrad.", "")


def compare_arrays(ours, theirs, dtype, what, scale=None):
    """Values of one tensor: nan and inf where torch has them, finite values close."""
    a = numpy.asarray(ours)
    e = numpy.asarray(theirs)
    if a.shape != e.shape:
        raise Mismatch(f"{what}: shape {list(a.shape)} != torch's {list(e.shape)}")
    if e.dtype.kind == "b" or e.dtype.kind in "iu":
        if not numpy.array_equal(a.astype(e.dtype), e):
            bad = numpy.argwhere(a != e)
            raise Mismatch(f"{what}: {len(bad)} of {e.size} differ, first at {tuple(bad[0])}: "
                           f"{a[tuple(bad[0])]} != torch's {e[tuple(bad[0])]}")
        return
    a = a.astype(numpy.float64)
    e = e.astype(numpy.float64)
    nan_a, nan_e = numpy.isnan(a), numpy.isnan(e)
    if (nan_a != nan_e).any():
        i = tuple(numpy.argwhere(nan_a != nan_e)[0])
        raise Mismatch(f"{what}: nan in other places ({int(nan_a.sum())} vs torch's {int(nan_e.sum())}); "
                       f"at {i}: {a[i]} != torch's {e[i]}")
    inf_e = numpy.isinf(e)
    if (numpy.isinf(a) != inf_e).any() or (a[inf_e] != e[inf_e]).any():
        i = tuple(numpy.argwhere((numpy.isinf(a) != inf_e) | (inf_e & (a != e)))[0])
        raise Mismatch(f"{what}: inf in other places; at {i}: {a[i]} != torch's {e[i]}")
    finite = numpy.isfinite(e)
    if not finite.any():
        return
    rtol, atol = TOLERANCE.get(dtype, TOLERANCE["float64"])
    size = numpy.abs(e[finite]).max() if scale is None else scale
    err = numpy.abs(a[finite] - e[finite])
    bound = atol * max(size, 1.0) + rtol * numpy.abs(e[finite])
    if (err > bound).any():
        k = int(numpy.argmax(err - bound))
        where = tuple(numpy.argwhere(finite)[k])
        raise Mismatch(f"{what}: max error {err.max():.3g} (scale {size:.3g}); at {where}: "
                       f"{a[where]!r} != torch's {e[where]!r}")


def compare(ours, theirs, what="out"):
    """Structure, shapes, dtypes, requires_grad and values of an op's result."""
    if isinstance(theirs, torch.Tensor):
        if not isinstance(ours, gpugrad.Tensor):
            raise Mismatch(f"{what}: {type(ours).__name__} where torch gives a Tensor")
        if tuple(ours.shape) != tuple(theirs.shape):
            raise Mismatch(f"{what}: shape {list(ours.shape)} != torch's {list(theirs.shape)}")
        if dtype_name(ours.dtype) != dtype_name(theirs.dtype):
            raise Mismatch(f"{what}: dtype {dtype_name(ours.dtype)} != torch's {dtype_name(theirs.dtype)}")
        if ours.requires_grad != theirs.requires_grad:
            raise Mismatch(f"{what}: requires_grad {ours.requires_grad} != torch's {theirs.requires_grad}")
        compare_arrays(_host(ours), _host(theirs), dtype_name(theirs.dtype), what)
        return
    if isinstance(theirs, (tuple, list)):
        if not isinstance(ours, (tuple, list)):
            raise Mismatch(f"{what}: {type(ours).__name__} where torch gives a {type(theirs).__name__}")
        if len(ours) != len(theirs):
            raise Mismatch(f"{what}: {len(ours)} items != torch's {len(theirs)}")
        for field in ("values", "indices"):
            if hasattr(theirs, field) != hasattr(ours, field):
                raise Mismatch(f"{what}: field {field!r} {'missing' if hasattr(theirs, field) else 'extra'}")
        for i, (o, t) in enumerate(zip(ours, theirs)):
            compare(o, t, f"{what}[{i}]")
        return
    if isinstance(theirs, torch.dtype):
        if dtype_name(ours) != dtype_name(theirs):
            raise Mismatch(f"{what}: {ours} != torch's {theirs}")
        return
    if isinstance(theirs, (bool, int, float)) or theirs is None:
        if type(ours) is not type(theirs) and not (
                isinstance(theirs, float) and isinstance(ours, float)) and not (
                isinstance(theirs, int) and not isinstance(theirs, bool) and isinstance(ours, int)
                and not isinstance(ours, bool)):
            raise Mismatch(f"{what}: {type(ours).__name__} {ours!r} where torch gives {type(theirs).__name__} "
                           f"{theirs!r}")
        if isinstance(theirs, float):
            compare_arrays(numpy.float64(ours), numpy.float64(theirs), "float64", what)
        elif ours != theirs:
            raise Mismatch(f"{what}: {ours!r} != torch's {theirs!r}")
        return
    if isinstance(theirs, torch.Size):
        if tuple(ours) != tuple(theirs):
            raise Mismatch(f"{what}: {tuple(ours)} != torch's {tuple(theirs)}")
        return
    if isinstance(theirs, numpy.ndarray):
        compare_arrays(numpy.asarray(ours), theirs, str(theirs.dtype), what)
        return
    if isinstance(theirs, torch.device):
        if str(ours) != str(theirs):
            raise Mismatch(f"{what}: device {ours} != torch's {theirs}")
        return
    if ours != theirs:
        raise Mismatch(f"{what}: {ours!r} != torch's {theirs!r}")


def flat_tensors(value):
    if isinstance(value, (torch.Tensor, gpugrad.Tensor)):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in flat_tensors(v)]
    return []


def _shares(a, b):
    if isinstance(a, torch.Tensor):
        if a.numel() == 0 or b.numel() == 0:
            return False
        sa, sb = a.untyped_storage(), b.untyped_storage()
        return sa.data_ptr() == sb.data_ptr()
    if a.numel() == 0 or b.numel() == 0:
        return False
    x, y = a.array, b.array
    if isinstance(x, numpy.ndarray) and isinstance(y, numpy.ndarray):
        return bool(numpy.shares_memory(x, y))
    if type(x) is not type(y):
        return False
    return bool(gpugrad.backend.may_share_memory(x, y))


def compare_aliasing(ours_out, theirs_out, ours_in, theirs_in):
    o_out, t_out = flat_tensors(ours_out), flat_tensors(theirs_out)
    for k, (o, t) in enumerate(zip(o_out, t_out)):
        for i, (oi, ti) in enumerate(zip(ours_in, theirs_in)):
            if (o is oi) != (t is ti):
                raise Mismatch(f"output {k} {'is' if o is oi else 'is not'} input {i} (torch: "
                               f"{'is' if t is ti else 'is not'})")
            to, tt = _shares(o, oi), _shares(t, ti)
            if to != tt:
                raise Mismatch(f"output {k} {'shares' if to else 'does not share'} memory with input {i} "
                               f"(torch: {'shares' if tt else 'does not'})")


# -- running a case -------------------------------------------------------------------------------------

def attempt(function):
    """(result, None) or (None, exception), warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(), None
        except Exception as error:      # noqa: BLE001 (any exception is a result to compare)
            return None, error


def synced(function, device):
    """``function`` and, on a cuda device, a sync after it: an index error a kernel recorded is raised at the
    next synchronising call (DESIGN.md, Errors), which belongs to this case, not to the next one's first read."""
    def run():
        result = function()
        if device != "cpu":
            gpugrad.cuda.synchronize()
        return result
    return run


def where_raised(error):
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if "/gpugrad/" in frame.filename:
            return f" at {frame.filename.split('/gpugrad/')[-1]}:{frame.lineno}"
    return ""


def compare_errors(ours_error, theirs_error, stage):
    """Both raise, or neither: Mismatch otherwise (or for an exception of another class)."""
    if theirs_error is None and ours_error is None:
        return False
    if theirs_error is not None and "INTERNAL ASSERT FAILED" in str(theirs_error):
        return True         # a bug of torch's, not a behaviour to match
    if theirs_error is not None and ours_error is None:
        raise Mismatch(f"{stage}: accepted where torch raises {type(theirs_error).__name__}: "
                       f"{str(theirs_error).splitlines()[0][:200] if str(theirs_error) else ''}")
    if theirs_error is None:
        raise Mismatch(f"{stage}: raises {type(ours_error).__name__}{where_raised(ours_error)}: "
                       f"{str(ours_error).splitlines()[0][:200] if str(ours_error) else ''}")
    kind = category(theirs_error)
    if not isinstance(ours_error, kind):
        raise Mismatch(f"{stage}: raises {type(ours_error).__name__}{where_raised(ours_error)} where torch raises "
                       f"{type(theirs_error).__name__} ({str(theirs_error).splitlines()[0][:120]}); ours: "
                       f"{str(ours_error).splitlines()[0][:160] if str(ours_error) else ''}")
    return True


def _upstreams(rng, outputs):
    return [rng.standard_normal(tuple(o.shape)) for o in outputs]


def _grad_outputs(lib, values, outputs, device):
    out = []
    for v, o in zip(values, outputs):
        if lib is torch:
            out.append(torch.from_numpy(v).to(o.dtype))
        else:
            out.append(gpugrad.tensor(v, device=device).to(o.dtype))
    return out


def _differentiable(outputs):
    return [o for o in flat_tensors(outputs) if o.requires_grad and o.is_floating_point()]


def _precision(tensors):
    """The least precise floating dtype among tensors (their gradients are computed at that precision)."""
    names = [dtype_name(t.dtype) for t in tensors if t.is_floating_point()]
    return max(names, key=lambda name: TOLERANCE.get(name, TOLERANCE["float64"])[0], default="float64")


class Widened:
    """torch in float64 on the same values (each rounded to its own dtype first) and the same upstream gradients:
    the arbiter of a low-precision mismatch.  Where an op's result is ill-conditioned (a second derivative that
    cancels terms thousands of times its size), torch's float32 result is itself far from the exact one, and
    gpugrad's float32 result, computed by another formula, cannot be expected to be near torch's; it must then be
    no further from the float64 result than torch's is (`judge`)."""

    def __init__(self, build, call):
        self.build, self.call = build, call
        self.results = {}

    def gradients(self, mode, upstream, dtypes, implicit=False, weights=None, leaf_dtypes=None):
        """The leaves' gradients (mode "backward"/"grad") or second derivatives ("second") in float64."""
        key = mode
        if key not in self.results:
            ref = self.build()
            out = self.call(torch, *ref.args, **ref.kwargs)
            diff = _differentiable(out)
            if implicit:
                first = torch.autograd.grad(diff, ref.leaves, [torch.ones_like(diff[0])], allow_unused=True,
                                            create_graph=mode == "second")
            else:
                grads = [torch.from_numpy(v).to(d).to(o.dtype) for v, o, d in zip(upstream, diff, dtypes)]
                first = torch.autograd.grad(diff, ref.leaves, grads, allow_unused=True,
                                            create_graph=mode == "second")
            if mode == "second":
                pairs = [(g, torch.from_numpy(w).to(d).to(g.dtype)) for g, w, d in zip(first, weights, leaf_dtypes)
                         if g is not None and g.requires_grad]
                first = torch.autograd.grad([g for g, _ in pairs], ref.leaves, [w for _, w in pairs],
                                            allow_unused=True) if pairs else [None] * len(ref.leaves)
            self.results[key] = [None if g is None else g.detach().numpy() for g in first]
        return self.results[key]


def judge(o, t, ref, precision, what):
    """A low-precision mismatch stands only where gpugrad is further from the float64 result than torch is."""
    o, t, ref = (numpy.asarray(a, dtype=numpy.float64) for a in (o, t, ref))
    finite = numpy.isfinite(ref) & numpy.isfinite(t) & numpy.isfinite(o)
    rtol, atol = TOLERANCE[precision]
    size = max(numpy.abs(ref[finite]).max(initial=0.0), 1.0)
    allowed = atol * size + rtol * numpy.abs(ref) + 2 * numpy.abs(t - ref)
    err = numpy.abs(o - ref)
    bad = finite & (err > allowed)
    if bad.any():
        where = tuple(numpy.argwhere(bad)[0])
        raise Mismatch(f"{what}: {o[where]!r} != torch's {t[where]!r}, and further from the float64 result "
                       f"{ref[where]!r} than torch's ({err[where]:.3g} against {abs(t[where] - ref[where]):.3g})")


def compare_gradients(rng, entry, ours, theirs, out_o, out_t, device, widened=None):
    """Gradients of the leaves under random upstream gradients: backward() or grad(create_graph) + a second order."""
    diff_t = _differentiable(out_t)
    diff_o = _differentiable(out_o)
    if not theirs.leaves or not diff_t:
        return
    precision = _precision(list(theirs.tensors) + flat_tensors(out_t))
    if len(diff_t) != len(diff_o):
        raise Mismatch(f"{len(diff_o)} differentiable outputs != torch's {len(diff_t)}")
    upstream = _upstreams(rng, diff_t)
    mode = entry.grad_mode or ("backward" if rng.random() < 0.45 else "double")
    if mode == "backward":
        implicit = len(diff_t) == 1 and diff_t[0].numel() == 1 and rng.random() < 0.5
        gt = None if implicit else _grad_outputs(torch, upstream, diff_t, device)
        go = None if implicit else _grad_outputs(gpugrad, upstream, diff_o, device)
        if implicit and diff_t[0].ndim:
            gt = [torch.ones_like(diff_t[0])]
            go = [gpugrad.ones_like(diff_o[0])]
        _, et = attempt(lambda: torch.autograd.backward(diff_t, gt))
        _, eo = attempt(synced(lambda: gpugrad.autograd.backward(diff_o, go), device))
        if compare_errors(eo, et, "backward"):
            return
        dtypes = [o.dtype for o in diff_t]
        for i, (lo, lt) in enumerate(zip(ours.leaves, theirs.leaves)):
            reference = widened and (lambda i=i: widened.gradients("backward", upstream, dtypes, implicit)[i])
            _compare_grad(lo.grad, lt.grad, lt, f"grad of input {i}", precision, reference)
        return
    gt = _grad_outputs(torch, upstream, diff_t, device)
    go = _grad_outputs(gpugrad, upstream, diff_o, device)
    first_t, et = attempt(lambda: torch.autograd.grad(diff_t, theirs.leaves, gt, create_graph=True,
                                                      allow_unused=True))
    first_o, eo = attempt(synced(lambda: gpugrad.autograd.grad(diff_o, ours.leaves, go, create_graph=True,
                                                               allow_unused=True), device))
    if et is not None and eo is None and isinstance(et, NotImplementedError):
        return          # torch lacks this derivative
    if compare_errors(eo, et, "grad(create_graph=True)"):
        return
    dtypes = [o.dtype for o in diff_t]
    for i, (go_, gt_) in enumerate(zip(first_o, first_t)):
        reference = widened and (lambda i=i: widened.gradients("grad", upstream, dtypes)[i])
        _compare_grad(go_, gt_, theirs.leaves[i], f"grad of input {i}", precision, reference)
    # second order: d/dx <grad, w>
    weights = [rng.standard_normal(tuple(leaf.shape)) for leaf in theirs.leaves]
    second_t, et = attempt(lambda: _second(torch, first_t, theirs.leaves, weights, device))
    second_o, eo = attempt(synced(lambda: _second(gpugrad, first_o, ours.leaves, weights, device), device))
    if et is not None and eo is None:
        return          # torch cannot differentiate its gradient here; gpugrad may
    if compare_errors(eo, et, "second derivative"):
        return
    leaf_dtypes = [leaf.dtype for leaf in theirs.leaves]
    for i, (so, st) in enumerate(zip(second_o, second_t)):
        reference = widened and (lambda i=i: widened.gradients("second", upstream, dtypes, weights=weights,
                                                                leaf_dtypes=leaf_dtypes)[i])
        _compare_grad(so, st, theirs.leaves[i], f"second derivative of input {i}", precision, reference)


def _second(lib, firsts, leaves, weights, device):
    pairs = [(g, w) for g, w in zip(firsts, weights) if g is not None and g.requires_grad]
    if not pairs:
        return [None] * len(leaves)
    outputs = [g for g, _ in pairs]
    grads = _grad_outputs(lib, [w for _, w in pairs], outputs, device)
    return lib.autograd.grad(outputs, leaves, grads, allow_unused=True)


def _compare_grad(ours, theirs, leaf, what, precision="float64", reference=None):
    if theirs is None and ours is None:
        return
    t = numpy.zeros(tuple(leaf.shape)) if theirs is None else _host(theirs)
    if ours is None:
        o = numpy.zeros(tuple(leaf.shape))
    else:
        if tuple(ours.shape) != tuple(leaf.shape):
            raise Mismatch(f"{what}: shape {list(ours.shape)} != the input's {list(leaf.shape)}")
        if theirs is not None and dtype_name(ours.dtype) != dtype_name(theirs.dtype):
            raise Mismatch(f"{what}: dtype {dtype_name(ours.dtype)} != torch's {dtype_name(theirs.dtype)}")
        o = _host(ours)
    try:
        compare_arrays(o, t, precision, what)
    except Mismatch as mismatch:
        # only finite values' distance is arbitrated (nan and inf in other places stand); float64 is its own reference
        if reference is None or precision == "float64" or "max error" not in str(mismatch):
            raise
        try:
            ref = reference()
        except Exception:                      # noqa: BLE001 (no float64 replica: torch's value is the reference)
            raise mismatch from None
        if ref is None:
            raise
        judge(o, t, ref, precision, what)


def run_case(entry, form, seed, device="cpu"):
    """One case: None when gpugrad agrees with torch, else the mismatch's description."""
    if not entry.in_torch(form):
        return None
    rng = numpy.random.default_rng(seed)
    gen = Gen(rng)
    try:
        drawn = entry.draw(gen, form)
    except Skip:
        return None
    except Exception as error:      # noqa: BLE001 (a bug of the table: reported, the run goes on)
        return f"{entry.name}/{form}:{seed} drawing the arguments raised {type(error).__name__}: {error}"
    if entry.program is not None:
        return entry.program(gen, drawn, device)
    args, kwargs = drawn
    theirs, ours = build_pair(args, kwargs, device)
    call = entry.call(form)
    out_t, et = attempt(lambda: call(torch, *theirs.args, **theirs.kwargs))
    out_o, eo = attempt(synced(lambda: call(gpugrad, *ours.args, **ours.kwargs), device))
    description = f"{entry.name}/{form}:{seed} args={args!r} kwargs={kwargs!r}"
    try:
        if compare_errors(eo, et, "forward"):
            return None
        gradients = entry.gradients
        if entry.check is not None:
            gradients = entry.check(out_o, out_t, ours, theirs) is not False and gradients
        else:
            compare(out_o, out_t)
        if entry.aliasing:
            compare_aliasing(out_o, out_t, ours.tensors, theirs.tensors)
        if gradients:
            widened = Widened(lambda: Built(torch, args, kwargs, "cpu", widen=True), call)
            compare_gradients(rng, entry, ours, theirs, out_o, out_t, device, widened)
    except Mismatch as mismatch:
        return f"{description}\n    {mismatch}"
    except Exception as error:      # noqa: BLE001 (a crash of the comparison is a finding too)
        return f"{description}\n    comparing raised {type(error).__name__}{where_raised(error)}: {error}"
    return None


# -- runs ------------------------------------------------------------------------------------------------

def case_seed(run_seed, index):
    return zlib.crc32(f"{run_seed}:{index}".encode()) ^ (index * 0x9E3779B1 & 0xFFFFFFFF)


def cases_of(entries, run_seed, count):
    """(entry, form, seed) for ``count`` cases, every form of every entry in turn."""
    forms = [(entry, form) for entry in entries for form in entry.forms]
    for index in range(count):
        entry, form = forms[index % len(forms)]
        yield entry, form, case_seed(run_seed, index)


def run(entries, run_seed, count, device="cpu", log=None, deadline=None):
    """Run ``count`` cases; returns (cases run, mismatches)."""
    mismatches = []
    done = 0
    for entry, form, seed in cases_of(entries, run_seed, count):
        if deadline is not None and time.monotonic() > deadline:
            break
        result = run_case(entry, form, seed, device)
        done += 1
        if result is not None:
            mismatches.append(result)
            if log is not None:
                log(result)
    return done, mismatches


def replay(entries, spec, device="cpu"):
    """Run the case ``entry/form:seed``."""
    key, seed = spec.rsplit(":", 1)
    name, form = key.rsplit("/", 1)
    entry = next(e for e in entries if e.name == name and form in e.forms)
    return run_case(entry, form, int(seed), device)


def main(argv=None):
    import differential_table       # noqa: I001 (the table imports this module)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--filter", default=None, help="run only entries whose name contains this")
    parser.add_argument("--case", default=None, help="replay one case, 'entry/form:seed'")
    parser.add_argument("--start", type=int, default=0, help="skip the first cases of the run (run it in pieces)")
    options = parser.parse_args(argv)
    entries = differential_table.ENTRIES
    if options.case:
        result = replay(entries, options.case, options.device)
        print(result or "agrees with torch")
        return 0 if result is None else 1
    if options.filter:
        entries = [e for e in entries if options.filter in e.name]
    seed = options.seed if options.seed is not None else int.from_bytes(os.urandom(4), "little")
    print(f"differential run: seed {seed}, {options.cases} cases from {options.start}, {len(entries)} entries, "
          f"device {options.device}", flush=True)
    start = time.monotonic()
    mismatches = []
    done = 0
    for i, (entry, form, cseed) in enumerate(cases_of(entries, seed, options.start + options.cases)):
        if i < options.start:
            continue
        result = run_case(entry, form, cseed, options.device)
        done += 1
        if result is not None:
            mismatches.append(result)
            print(result, flush=True)
    print(f"{done} cases, {len(mismatches)} mismatches, {time.monotonic() - start:.0f} s (seed {seed})", flush=True)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import differential  # the table's classes are this module's, not __main__'s
    sys.exit(differential.main())
