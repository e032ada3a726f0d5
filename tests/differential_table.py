"""The table of the differential fuzzer (``differential.py``): every public op
of gpugrad with how its arguments are drawn, and the names that are not ops.

An entry has a name, the *forms* it is called in (``torch``: ``gpugrad.name``
against ``torch.name``; ``method``: ``x.name(...)``; ``inplace``: ``x.name_(...)``
on a non-leaf copy of x, seen through x's view; ``F``: ``nn.functional.name``;
``call``: the entry's own function of the library, for operators and
compositions), and a ``draw(g, form)`` giving (args, kwargs) built of
``T`` (tensors), ``D`` (dtypes) and plain values.  ``covered()`` names the
public names the table reaches; ``EXCLUDED`` says why each other public
name is not fuzzed (not an op).  ``tests/test_differential.py`` fails when a
public name is in neither.
"""

import math

import numpy
import torch
from differential import (
    Mismatch,
    Skip,
    T,
    attempt,
    compare,
    compare_arrays,
    compare_errors,  # noqa: F401
    dtype_name,
    flat_tensors,
)

import gpugrad


class Entry:
    def __init__(self, name, draw, forms=("torch",), call=None, torch_name=None, check=None, gradients=True,
                 aliasing=True, grad_mode=None, program=None, covers=()):
        self.name, self._draw, self.forms = name, draw, tuple(forms)
        self._call, self.torch_name, self.check = call, torch_name, check
        self.gradients, self.aliasing, self.grad_mode, self.program = gradients, aliasing, grad_mode, program
        self.extra_covers = tuple(covers)

    def draw(self, g, form):
        if self.program is not None:
            return self._draw(g, form)
        args, kwargs = self._draw(g, form)
        if form == "inplace":
            args = (_nonleaf(args[0]),) + tuple(args[1:])
        return args, kwargs

    def call(self, form):
        name = self.name
        if form == "call":
            return self._call
        if form == "method":
            return lambda lib, x, *a, **k: getattr(x, name)(*a, **k)
        if form == "inplace":
            return lambda lib, x, *a, **k: getattr(x, name + "_")(*a, **k)
        if form == "F":
            return lambda lib, *a, **k: getattr(lib.nn.functional, name)(*a, **k)
        torch_path = self.torch_name or name

        def function(lib, *a, **k):
            target = lib
            for part in (torch_path if lib.__name__ == "torch" else name).split("."):
                target = getattr(target, part)
            return target(*a, **k)
        return function

    def in_torch(self, form):
        """Whether the installed torch has this form of the op (torch 2.11 has no F.linear_cross_entropy:
        a case of it has nothing to be compared with, and is skipped, not counted a mismatch)."""
        if form == "call" or self.program is not None:
            return True
        if form in ("method", "inplace"):
            return hasattr(torch.Tensor, self.name + ("_" if form == "inplace" else ""))
        if form == "F":
            return hasattr(torch.nn.functional, self.name)
        target = torch
        for part in (self.torch_name or self.name).split("."):
            if not hasattr(target, part):
                return False
            target = getattr(target, part)
        return True

    def covered(self):
        names = set(self.extra_covers)
        for form in self.forms:
            if form == "torch":
                names.add(f"gpugrad.{self.name}")
            elif form == "method":
                names.add(f"Tensor.{self.name}")
            elif form == "inplace":
                names.add(f"Tensor.{self.name}_")
            elif form == "F":
                names.add(f"F.{self.name}")
        return names


def _nonleaf(t):
    """The in-place form writes into a copy of the leaf (seen through the drawn view)."""
    if not isinstance(t, T):
        return t
    t = T(t.base, t.dtype, t.grad, t.layout, t.values)
    t.layout = ("clone",) + (t.layout,)
    return t


def forms_of(name, function=True, method=True, inplace=True, F=False):
    forms = []
    if function and hasattr(gpugrad, name):
        forms.append("torch")
    if method and hasattr(gpugrad.Tensor, name):
        forms.append("method")
    if inplace and hasattr(gpugrad.Tensor, name + "_") and hasattr(torch.Tensor, name + "_"):
        forms.append("inplace")
    if F and hasattr(gpugrad.nn.functional, name):
        forms.append("F")
    return tuple(forms)


ENTRIES = []


def entry(name, draw, forms=None, **options):
    ENTRIES.append(Entry(name, draw, forms if forms is not None else forms_of(name), **options))


# -- drawing helpers ---------------------------------------------------------------------------------

def float_or(g, p=0.08, options=("float32", "int64", "bool")):
    return g.choice(options) if g.chance(p) else "float64"


def unary(values=None, dtypes=0.08, options=("float32", "int64", "bool")):
    def draw(g, form):
        return (g.tensor(dtype=float_or(g, dtypes, options), values=values),), {}
    return draw


def binary(kwargs=None, second=None, dtypes=0.1, scalar=0.2):
    def draw(g, form):
        x = g.tensor(dtype=float_or(g, dtypes * 0.5))
        other = second(g, x) if second else g.other(x.shape, dtypes=dtypes, scalar=scalar)
        return (x, other), (kwargs(g) if kwargs else {})
    return draw


def ints(g, shape=None):
    return g.tensor(shape, dtype=g.choice(("int64", "int32", "bool", "int64")))


def optional_dim(g, ndim, none=0.3):
    return None if g.chance(none) else g.dim(ndim)


def dim_arg(g, ndim, none=0.25, tuples=0.35):
    if g.chance(none):
        return None
    if g.chance(tuples):
        return g.dims(ndim, min_count=0 if g.chance(0.1) else 1)
    return g.dim(ndim)


# -- elementwise: unary ---------------------------------------------------------------------------------

for _name in ("abs", "absolute", "ceil", "cos", "cosh", "erf", "exp", "exp2", "expm1", "fix", "floor", "frac",
              "log", "log10", "log1p", "log2", "neg", "negative", "reciprocal", "rsqrt", "sigmoid", "sign", "sin",
              "sinh", "sqrt", "square", "tan", "tanh", "trunc", "atan", "arctan", "relu"):
    entry(_name, unary())

entry("round", lambda g, form: ((g.tensor(dtype=float_or(g)),), {"decimals": g.int(-2, 3)} if g.chance(0.4) else {}))

for _name in ("isnan", "isinf", "isfinite", "isposinf", "isneginf"):
    entry(_name, unary(dtypes=0.2), gradients=False)


def _logical_not(g, form):
    x = g.tensor(dtype=float_or(g, 0.2))
    if form == "inplace" and x.grad:
        raise Skip      # torch's x.logical_not_() leaves x's history as it was: its gradient passes as the identity
    return (x,), {}


entry("logical_not", _logical_not, gradients=False)

entry("bitwise_not", unary(dtypes=0.9, options=("int64", "int32", "bool", "uint8")))


def _nan_to_num(g, form):
    kwargs = {}
    for key in ("nan", "posinf", "neginf"):
        if g.chance(0.4):
            kwargs[key] = g.float(-5, 5)
    return (g.tensor(dtype=float_or(g), values="special"),), kwargs


entry("nan_to_num", _nan_to_num)
entry("clone", unary())
entry("gelu", lambda g, form: ((g.tensor(),), {"approximate": g.choice(("none", "tanh", "tanh", "bad"))}
                                if g.chance(0.6) else {}), torch_name="nn.functional.gelu")
entry("silu", unary(dtypes=0), torch_name="nn.functional.silu")


# -- elementwise: binary --------------------------------------------------------------------------------

def _alpha(g):
    return {"alpha": g.choice((2, 0.5, -1, 0, True))} if g.chance(0.3) else {}


for _name in ("add", "sub", "subtract", "rsub"):
    entry(_name, binary(_alpha))
for _name in ("mul", "multiply", "true_divide", "divide", "floor_divide", "remainder", "fmod", "maximum", "minimum",
              "fmax", "fmin"):
    entry(_name, binary())
entry("div", binary(lambda g: {"rounding_mode": g.choice((None, "trunc", "floor", "bad"))} if g.chance(0.5) else {}))
entry("maximum_", binary(dtypes=0, scalar=0), forms=("call",), covers=("Tensor.maximum_",),
      call=lambda lib, x, y: x.clone().maximum_(y) if lib is gpugrad else x.clone().copy_(lib.maximum(x, y)))
entry("minimum_", binary(dtypes=0, scalar=0), forms=("call",), covers=("Tensor.minimum_",),
      call=lambda lib, x, y: x.clone().minimum_(y) if lib is gpugrad else x.clone().copy_(lib.minimum(x, y)))


def _exponent(g, x):
    if g.chance(0.5):
        return g.choice((0, 1, 2, 3, -1, -2, 0.5, -0.5, 1.5, 0.0, 2.0, math.inf, math.nan, True))
    return g.other(x.shape)


entry("pow", binary(second=_exponent))

for _name in ("eq", "ne", "lt", "le", "gt", "ge", "greater", "greater_equal", "less", "less_equal", "not_equal"):
    entry(_name, binary(dtypes=0.2), gradients=False)
for _name in ("logical_and", "logical_or", "logical_xor"):
    entry(_name, binary(dtypes=0.4), gradients=False)


def _int_pair(g, form):
    x = ints(g)
    other = g.scalar(("int", "bool")) if g.chance(0.2) else (
        g.tensor(g.broadcastable(x.shape), dtype=g.choice(("int64", "int32", "bool", "float64")))
        if g.chance(0.9) else g.tensor(g.broadcastable(x.shape)))
    return (x, other), {}


for _name in ("bitwise_and", "bitwise_or", "bitwise_xor"):
    entry(_name, _int_pair)


def _shift_pair(g, form):
    x = g.tensor(dtype=g.choice(("int64", "int32", "int64", "float64")))
    shift = g.int(0, 4) if g.chance(0.3) else g.tensor(g.broadcastable(x.shape), dtype="int64", values=None)
    if isinstance(shift, T):
        shift.base = numpy.abs(shift.base)
    return (x, shift), {}


entry("bitwise_left_shift", _shift_pair)
entry("bitwise_right_shift", _shift_pair)


def _close_options(g):
    kwargs = {}
    if g.chance(0.3):
        kwargs["rtol"] = g.choice((0.0, 1e-3, 0.1))
    if g.chance(0.3):
        kwargs["atol"] = g.choice((0.0, 1e-3, 0.5))
    if g.chance(0.4):
        kwargs["equal_nan"] = g.chance(0.5)
    return kwargs


def _close_pair(g, form):
    x = g.tensor(values=g.choice(("special", "ties", "normal")))
    if g.chance(0.2):
        other = g.choice((math.inf, -math.inf, math.nan, 0.0, 1.0))
    elif g.chance(0.5):
        other = T(x.base.copy() + g.rng.choice([0, 1e-9, 1e-6, 1e-2], x.base.shape), x.dtype, False, x.layout,
                  "near")
    else:
        other = g.tensor(g.broadcastable(x.shape), dtype=g.choice(("float64",) * 8 + ("float32", "int64")))
    return (x, other), _close_options(g)


entry("isclose", _close_pair, gradients=False)
entry("allclose", _close_pair, gradients=False)


def _equal_pair(g, form):
    x = g.tensor(dtype=float_or(g, 0.2))
    if g.chance(0.5):
        other = T(x.base.copy(), x.dtype, False, x.layout, "same")
    else:
        other = g.tensor(g.broadcastable(x.shape), dtype=float_or(g, 0.2))
    return (x, other), {}


entry("equal", _equal_pair, gradients=False)


def _lerp(g, form):
    x = g.tensor()
    end = g.tensor(g.broadcastable(x.shape))
    weight = g.float(-1, 2) if g.chance(0.5) else g.tensor(g.broadcastable(x.shape))
    return (x, end, weight), {}


entry("lerp", _lerp)


def _where(g, form):
    shape = g.shape()
    x = g.tensor(g.broadcastable(shape)) if g.chance(0.85) else g.scalar(("float", "int"))
    y = g.tensor(g.broadcastable(shape), dtype=float_or(g, 0.15)) if g.chance(0.85) else g.scalar(("float", "int"))
    cond = g.mask(g.broadcastable(shape), view=True) if g.chance(0.95) else g.tensor(shape)
    if form == "method":
        if not isinstance(x, T):
            raise Skip
        return (x, cond, y), {}
    return (cond, x, y), {}


entry("where", _where, forms=("torch", "method"))


def _overlapping(t):
    """An expanded view with elements sharing memory: torch's index_put_, masked_fill_ and tril_/triu_
    write into it unchecked (deprecated, their results depend on the order of the writes): not compared."""
    layout = t.layout[1] if t.layout[0] == "clone" else t.layout
    return layout[0] == "expand" and any(n > 1 for n in layout[1]) and t.base.size < numpy.prod(layout[1])


def _masked_fill(g, form):
    x = g.tensor(dtype=float_or(g, 0.1))
    if form == "inplace" and _overlapping(x):
        raise Skip
    mask = g.mask(g.broadcastable(x.shape, same=0.6), view=True) if g.chance(0.95) else ints(g, x.shape)
    value = g.scalar(("float", "int", "special")) if g.chance(0.7) else g.tensor(() if g.chance(0.85) else (2,))
    if form == "inplace":
        _written_value(x, value)
    return (x, mask, value), {}


entry("masked_fill", _masked_fill)


def _clamp(g, form):
    x = g.tensor(dtype=float_or(g, 0.08, ("float32", "int64")))

    def bound():
        r = g.rng.random()
        if r < 0.25:
            return None
        if r < 0.65:
            return g.choice((-0.5, 0.5, 0, 1, -1.5, math.nan, math.inf, -math.inf, 2.0))
        # bounds broadcasting past the input's shape: torch's forward broadcasts, its backward then
        # fails (a torch bug, not matched); bounds that fit the input
        shape = g.broadcastable(x.shape)
        if len(shape) > len(x.shape) or any(n != 1 and n != m for n, m in zip(shape[::-1], x.shape[::-1])):
            shape = x.shape
        return g.tensor(shape, values=g.choice(("normal", "special", "ties")))
    if form in ("torch", "method", "inplace"):
        low, high = bound(), bound()
        kwargs = {}
        if low is not None or g.chance(0.1):
            kwargs["min"] = low
        if high is not None or g.chance(0.1):
            kwargs["max"] = high
        return (x,), kwargs
    return (x, bound() or 0.0), {}


entry("clamp", _clamp)
entry("clip", _clamp)
entry("clamp_min", _clamp)
entry("clamp_max", _clamp)


def _addc(g, form):
    x = g.tensor()
    a, b = g.tensor(g.broadcastable(x.shape)), g.tensor(g.broadcastable(x.shape))
    return (x, a, b), ({"value": g.choice((0.5, 2, -1))} if g.chance(0.4) else {})


entry("addcmul", _addc, forms=("method", "inplace"))
entry("addcdiv", _addc, forms=("method", "inplace"))


# -- operators ---------------------------------------------------------------------------------------------

def _operator(symbol):
    return eval(f"lambda lib, a, b: a {symbol} b")      # noqa: S307 (a fixed table of operators)


def _reflected(symbol):
    return eval(f"lambda lib, a, b: b {symbol} a")      # noqa: S307


def _in_place_operator(symbol):
    namespace = {}
    exec(f"def f(lib, a, b):\n    a {symbol}= b\n    return a", namespace)   # noqa: S102
    return namespace["f"]


def _reflected_draw(draw, kinds):
    def reflected(g, form):
        (x, _), _ = draw(g, form)
        return (x, g.scalar(kinds)), {}
    return reflected


def _in_place_draw(draw):
    def in_place(g, form):
        (x, other), kwargs = draw(g, form)
        return (_nonleaf(x), other), kwargs
    return in_place


_OPERATORS = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
              "and": "&", "or": "|", "xor": "^", "lshift": "<<", "rshift": ">>", "matmul": "@"}
for _name, _symbol in _OPERATORS.items():
    if _name in ("and", "or", "xor"):
        _draw = _int_pair
    elif _name in ("lshift", "rshift"):
        _draw = _shift_pair
    elif _name == "matmul":
        _draw = None
    else:
        _draw = binary()
    if _draw is None:
        continue
    entry(f"__{_name}__", _draw, forms=("call",), call=_operator(_symbol), covers=(f"Tensor.__{_name}__",))
    if _name not in ("lshift", "rshift"):
        entry(f"__r{_name}__", _reflected_draw(_draw, ("int", "bool") if _name in ("and", "or", "xor") else
                                               ("float", "int", "bool", "special")),
              forms=("call",), call=_reflected(_symbol), covers=(f"Tensor.__r{_name}__",))
    entry(f"__i{_name}__", _in_place_draw(_draw), forms=("call",), call=_in_place_operator(_symbol),
          covers=(f"Tensor.__i{_name}__",))

for _name, _symbol in (("eq", "=="), ("ne", "!="), ("lt", "<"), ("le", "<="), ("gt", ">"), ("ge", ">=")):
    entry(f"__{_name}__", binary(dtypes=0.2), forms=("call",), call=_operator(_symbol), gradients=False,
          covers=(f"Tensor.__{_name}__",))
entry("__neg__", unary(), forms=("call",), call=lambda lib, a: -a, covers=("Tensor.__neg__",))
entry("__pos__", unary(), forms=("call",), call=lambda lib, a: +a, covers=("Tensor.__pos__",))
entry("__abs__", unary(), forms=("call",), call=lambda lib, a: abs(a), covers=("Tensor.__abs__",))
entry("__invert__", unary(dtypes=0.9, options=("int64", "bool", "int32")), forms=("call",), call=lambda lib, a: ~a,
      covers=("Tensor.__invert__",))


# -- reductions and scans --------------------------------------------------------------------------------

def _reduce(dtype_option=False, dims=True, keepdim=True, none=0.25, values=None, dtypes=0.08):
    def draw(g, form):
        x = g.tensor(dtype=float_or(g, dtypes), values=values)
        kwargs = {}
        if dims:
            d = dim_arg(g, len(x.shape), none=none)
            if d is not None or g.chance(0.2):
                kwargs["dim"] = d
        if keepdim and "dim" in kwargs and kwargs["dim"] is not None and g.chance(0.5):
            kwargs["keepdim"] = g.chance(0.5)
        if dtype_option and g.chance(0.15):
            kwargs["dtype"] = g.dtype(("float32", "float64", "int64"))
        return (x,), kwargs
    return draw


entry("sum", _reduce(dtype_option=True))
entry("mean", _reduce(dtype_option=True))
entry("amax", _reduce())
entry("amin", _reduce())
entry("any", _reduce(dtypes=0.4))
entry("all", _reduce(dtypes=0.4))
entry("count_nonzero", _reduce(keepdim=False, dtypes=0.3), gradients=False)


def _prod(g, form):
    x = g.tensor(dtype=float_or(g), values=g.choice(("zeros", "ties", "normal", "special", "small")))
    kwargs = {}
    if g.chance(0.7):
        kwargs["dim"] = g.dim(len(x.shape))
        if g.chance(0.5):
            kwargs["keepdim"] = g.chance(0.5)
    if g.chance(0.1):
        kwargs["dtype"] = g.dtype(("float64", "float32", "int64"))
    return (x,), kwargs


entry("prod", _prod)


def _max_min(g, form):
    x = g.tensor(dtype=float_or(g))
    r = g.rng.random()
    if r < 0.3:
        return (x,), {}
    if r < 0.45:
        return (x, g.tensor(g.broadcastable(x.shape), dtype=float_or(g, 0.1))), {}
    kwargs = {"keepdim": g.chance(0.5)} if g.chance(0.5) else {}
    return (x, g.dim(len(x.shape))), kwargs


entry("max", _max_min)
entry("min", _max_min)


def _arg_extremum(g, form):
    x = g.tensor(dtype=float_or(g))
    kwargs = {}
    if g.chance(0.6):
        kwargs["dim"] = g.dim(len(x.shape))
    if g.chance(0.4):
        kwargs["keepdim"] = g.chance(0.5)
    return (x,), kwargs


entry("argmax", _arg_extremum)
entry("argmin", _arg_extremum)


def _statistic(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("float32",)), values=g.choice(("normal", "ties", "special", "zeros")))
    kwargs = {}
    d = dim_arg(g, len(x.shape), none=0.3)
    args = (x,)
    if g.chance(0.1) and form != "inplace":
        args = (x, g.chance(0.5))          # the old positional unbiased
    else:
        if d == ():
            raise Skip      # torch's var over dim=() reduces everything but its backward divides by 1 - correction
        if d is not None or g.chance(0.2):
            kwargs["dim"] = d
        if g.chance(0.5):
            kwargs["correction"] = g.choice((0, 1, 2, 5, 0.5))
        elif g.chance(0.2) and "dim" in kwargs:
            # (without dim, torch's parser refuses unbiased= with keepdim=, an overload quirk gpugrad lets pass)
            kwargs["unbiased"] = g.chance(0.5)
        if g.chance(0.4):
            kwargs["keepdim"] = g.chance(0.5)
    return args, kwargs


def _statistic_check(ours, theirs, built_o, built_t):
    """Equal values (more than one) reduced: gpugrad's sum of squares is exactly 0, torch's keeps its mean's
    rounding residue where its algorithm leaves one (std ~1e-16, inf rather than nan past the degrees of
    freedom, a gradient of noise): those results are not compared, nor the gradients of such a case."""
    x = built_t.tensors[0].detach()
    dim = built_t.kwargs.get("dim")
    if not x.numel() or not x.is_floating_point() or x.numel() <= max(theirs.numel(), 1):
        compare(ours, theirs)
        return True
    dims = tuple(range(x.ndim)) if dim is None else dim
    keepdim = built_t.kwargs.get("keepdim", False)
    high, low = x.amax(dims, keepdim=keepdim), x.amin(dims, keepdim=keepdim)
    constant = ((high == low) & torch.isfinite(high)).numpy()
    if not constant.any():
        compare(ours, theirs)
        return True
    o, t = ours.detach().cpu().numpy().copy(), theirs.detach().numpy().copy()
    o[constant], t[constant] = 0, 0
    compare_arrays(o, t, dtype_name(theirs.dtype), "out")
    return False


entry("std", _statistic, check=_statistic_check)
entry("var", _statistic, check=_statistic_check)
def _statistic_mean_check(ours, theirs, built_o, built_t):
    """torch's var_mean/std_mean take the mean from a Welford pass, nan where the mean is +-inf (its plain
    mean() is not): the statistic against torch's, the mean against torch.mean."""
    compare(ours[0], theirs[0], "out[0]")
    x = built_t.args[0]
    dim = built_t.kwargs.get("dim")
    if len(built_t.args) > 1 and not isinstance(built_t.args[1], bool):
        dim = built_t.args[1]
    keepdim = built_t.kwargs.get("keepdim", False)
    with torch.no_grad():
        expected = x.mean(tuple(range(x.ndim)) if dim is None else dim, keepdim=keepdim)
    # (at the mean's own dtype's tolerance: float64's held a float32 mean to 1e-7, and gpugrad's float32 sum
    # 2 ulps from torch's failed, GPUGRAD_FUZZ_SEED=945203634, var_mean/torch:866809214)
    compare_arrays(numpy.asarray(ours[1].detach().to("cpu").array), expected.numpy(), dtype_name(expected.dtype),
                   "out[1]")
    if not isinstance(ours, tuple) or len(ours) != 2:
        raise Mismatch(f"{type(ours).__name__} where torch gives a pair")


entry("std_mean", _statistic, check=_statistic_mean_check)
entry("var_mean", _statistic, check=_statistic_mean_check)


def _norm(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("float32",)), values=g.choice(("normal", "zeros", "ties", "special")))
    kwargs = {}
    if g.chance(0.8):
        # (not 'nuc': the nuclear norm needs an SVD, which gpugrad does not have; it raises NotImplementedError)
        kwargs["p"] = g.choice((2, 1, 0, math.inf, -math.inf, 0.5, 3, "fro", 1.5, -1))
    d = dim_arg(g, len(x.shape), none=0.4)
    if d is not None:
        kwargs["dim"] = d
        if g.chance(0.4):
            kwargs["keepdim"] = g.chance(0.5)
    return (x,), kwargs


entry("norm", _norm)


def _logsumexp(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("float32", "int64")))
    dims = dim_arg(g, len(x.shape), none=0.0)
    if dims == ():
        raise Skip      # torch's logsumexp over dim=() fails writing its result (gpugrad reduces every dim)
    return (x, dims), ({"keepdim": g.chance(0.5)} if g.chance(0.4) else {})


entry("logsumexp", _logsumexp)


def _softmax(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("float32", "int64")))
    kwargs = {}
    if g.chance(0.15):
        kwargs["dtype"] = g.dtype(("float32", "float64"))
    return (x, g.dim(len(x.shape))), kwargs


entry("softmax", _softmax, forms=forms_of("softmax") + ("F",))
entry("log_softmax", _softmax, forms=forms_of("log_softmax") + ("F",))
entry("softmin", _softmax, forms=("F",))


def _median(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("int64",)))
    if x.dtype == "int64" and 0 in x.shape:
        raise Skip      # torch's median of an empty integer tensor is an uninitialised value
    if x.layout[0] == "expand":
        raise Skip      # torch's median(dim) of an expanded tensor reads past its storage (garbage values)
    if g.chance(0.4):
        return (x,), {}
    return (x, g.dim(len(x.shape))), ({"keepdim": g.chance(0.5)} if g.chance(0.5) else {})


def _selection(position):
    return lambda ours, theirs, built_o, built_t: _selection_check(ours, theirs, built_t, position)


def _selection_check(ours, theirs, built_t, position):
    """(values, indices) of an op whose index among ties torch leaves open (topk,
    kthvalue, median, an unstable sort): the values as torch's, and the indices
    pointing at those values; gradients only where the input has no ties (the
    index decides which tied element gets it)."""
    if not isinstance(theirs, tuple):
        compare(ours, theirs)
        return True
    compare(ours[0], theirs[0], "values")
    x = built_t.args[0].detach()
    values_o, indices_o = ours
    if dtype_name(indices_o.dtype) != "int64" or tuple(indices_o.shape) != tuple(theirs[1].shape):
        raise Mismatch(f"indices: {dtype_name(indices_o.dtype)} {list(indices_o.shape)} != torch's "
                       f"{list(theirs[1].shape)}")
    index = torch.from_numpy(numpy.asarray(indices_o.to("cpu").array))
    dim = built_t.args[position] if len(built_t.args) > position else built_t.kwargs.get("dim", -1)
    if x.ndim == 0:
        picked = x.expand(index.shape) if index.numel() else x.reshape(index.shape)
        if index.numel() and int(index.reshape(-1)[0]) != 0:
            raise Mismatch(f"index {index} of a 0-d input")
    else:
        if index.ndim != x.ndim:
            index_full = index.unsqueeze(dim)
        else:
            index_full = index
        picked = x.gather(dim, index_full).reshape(theirs[0].shape)
    compare_arrays(picked.numpy(), theirs[0].detach().numpy(), "float64", "input at the indices")
    flat = x.reshape(-1).numpy()
    finite = flat[~numpy.isnan(flat)]
    return len(numpy.unique(finite)) == len(finite) and len(finite) == len(flat)


entry("median", _median, check=_selection(1))


def _kthvalue(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("int64",)))
    d = g.dim(len(x.shape))
    size = x.shape[d] if x.shape and -len(x.shape) <= d < len(x.shape) else 1
    k = g.int(0, size + 1) if g.chance(0.1) else g.int(1, max(size, 1))
    kwargs = {"keepdim": g.chance(0.5)} if g.chance(0.4) else {}
    return ((x, k, d) if g.chance(0.8) else (x, k)), kwargs


entry("kthvalue", _kthvalue, check=_selection(2))


def _topk(g, form):
    x = g.tensor(dtype=float_or(g, 0.05, ("int64",)))
    d = g.dim(len(x.shape))
    size = x.shape[d] if x.shape and -len(x.shape) <= d < len(x.shape) else 1
    k = g.int(0, size + 1) if g.chance(0.1) else g.int(0, size)
    kwargs = {}
    if g.chance(0.5):
        kwargs["largest"] = g.chance(0.5)
    if g.chance(0.2):
        kwargs["sorted"] = True
    return (x, k, d), kwargs


entry("topk", _topk, check=_selection(2))


def _sort(g, form):
    x = g.tensor(dtype=float_or(g, 0.1, ("int64", "bool")))
    kwargs = {}
    if g.chance(0.7):
        kwargs["dim"] = g.dim(len(x.shape))
    if g.chance(0.5):
        kwargs["descending"] = g.chance(0.5)
    if g.chance(0.3):
        kwargs["stable"] = True
    return (x,), kwargs


entry("sort", _sort)
entry("argsort", _sort)


def _scan(g, form):
    x = g.tensor(dtype=float_or(g, 0.1, ("int64", "float32")), values=g.choice(("normal", "zeros", "special",
                                                                                 "ties")))
    kwargs = {"dtype": g.dtype(("float64", "float32", "int64"))} if g.chance(0.1) else {}
    return (x, g.dim(len(x.shape))), kwargs


entry("cumsum", _scan)
entry("cumprod", _scan)


def _sum_to_size(g, form):
    shape = g.shape(min_ndim=1)
    x = g.tensor(shape)
    target = list(g.broadcastable(shape, same=0.2))
    return (x, tuple(target)), {}


entry("sum_to_size", _sum_to_size, forms=("method",))


# -- shape ops -----------------------------------------------------------------------------------------------

def _reshape_target(g, shape):
    n = int(numpy.prod(shape))
    options = [(n,), (-1,), tuple(reversed(shape)), (1,) + tuple(shape), (n, 1)]
    if n % 2 == 0 and n:
        options.append((2, -1))
    if n == 0:
        options.append((0, -1))
    if g.chance(0.08):
        return (n + 1,)
    if g.chance(0.04):
        return (-1, -1)
    return g.choice(options)


def _reshape(g, form):
    x = g.tensor()
    target = _reshape_target(g, x.shape)
    return ((x, target) if g.chance(0.5) else (x, *target)), {}


entry("reshape", _reshape)
entry("view", _reshape, forms=("method",))


def _as_other(g, form):
    x = g.tensor()
    target = _reshape_target(g, x.shape) if g.chance(0.8) else g.broadcastable(x.shape)
    if -1 in target:
        known = int(numpy.prod([n for n in target if n != -1]))
        target = tuple(int(numpy.prod(x.shape)) // known if n == -1 and known else (0 if n == -1 else n)
                       for n in target)
    other = g.tensor(target, grad=False)
    return (x, other), {}


entry("view_as", _as_other, forms=("method",))
entry("reshape_as", _as_other, forms=("method",))
entry("expand_as", lambda g, form: ((lambda x: (x, g.tensor(
    tuple(n if n != 1 or g.chance(0.5) else g.int(0, 3) for n in x.shape), grad=False)))(g.tensor()), {}),
    forms=("method",))


def _flatten(g, form):
    x = g.tensor()
    kwargs = {}
    if g.chance(0.6):
        kwargs["start_dim"] = g.dim(len(x.shape))
    if g.chance(0.6):
        kwargs["end_dim"] = g.dim(len(x.shape))
    return (x,), kwargs


entry("flatten", _flatten)


def _unflatten(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    d = g.dim(len(x.shape))
    n = x.shape[d] if -len(x.shape) <= d < len(x.shape) else 1
    sizes = g.choice([(n,), (1, n), (-1,), (n, 1)] + ([(2, -1), (2, n // 2)] if n % 2 == 0 and n else [])
                     + [(3, -1)] * (g.chance(0.1)))
    return (x, d, sizes), {}


entry("unflatten", _unflatten)


def _two_dims(g, form):
    x = g.tensor()
    return (x, g.dim(len(x.shape)), g.dim(len(x.shape))), {}


for _name in ("transpose", "swapaxes", "swapdims"):
    entry(_name, _two_dims)
entry("t", lambda g, form: ((g.tensor(g.shape(max_ndim=3)),), {}))


def _permute(g, form):
    x = g.tensor()
    n = len(x.shape)
    perm = [int(p) for p in g.rng.permutation(n)]
    perm = [p - n if g.chance(0.3) else p for p in perm]
    if g.chance(0.05):
        perm = perm + [0]
    if g.chance(0.05) and perm:
        perm[0] = perm[-1]
    return ((x, tuple(perm)) if g.chance(0.5) or form != "method" else (x, *perm)), {}


entry("permute", _permute)


def _movedim(g, form):
    x = g.tensor()
    n = len(x.shape)
    if g.chance(0.5) or n == 0:
        return (x, g.dim(n), g.dim(n)), {}
    count = g.int(1, n)
    source = tuple(int(d) for d in g.rng.permutation(n)[:count])
    destination = tuple(int(d) for d in g.rng.permutation(n)[:count])
    return (x, source, destination), {}


entry("movedim", _movedim)
entry("moveaxis", _movedim)


def _squeeze(g, form):
    x = g.tensor(tuple(1 if g.chance(0.4) else n for n in g.shape()))
    if g.chance(0.3):
        return (x,), {}
    if g.chance(0.3) and x.shape:
        return (x, g.dims(len(x.shape))), {}
    return (x, g.dim(len(x.shape))), {}


entry("squeeze", _squeeze)


def _unsqueeze(g, form):
    x = g.tensor()
    return (x, g.dim(len(x.shape) + 1)), {}


entry("unsqueeze", _unsqueeze)


def _expand(g, form):
    x = g.tensor(tuple(1 if g.chance(0.5) else n for n in g.shape()))
    sizes = [g.int(0, 3) if n == 1 and g.chance(0.7) else (-1 if g.chance(0.3) else n) for n in x.shape]
    if g.chance(0.3):
        sizes = [g.int(1, 3)] + sizes
    if g.chance(0.05) and sizes:
        sizes[0] = 5
    if form == "method" and g.chance(0.5):
        return (x, *sizes), {}
    return (x, tuple(sizes)), {}


entry("expand", _expand, forms=("method",))
entry("broadcast_to", _expand)


def _broadcast_tensors(g, form):
    shape = g.shape()
    return tuple(g.tensor(g.broadcastable(shape)) for _ in range(g.int(1, 3))), {}


entry("broadcast_tensors", _broadcast_tensors)


def _joinable(g, count, cat=True):
    shape = list(g.shape(min_ndim=1))
    d = g.dim(len(shape))
    out = []
    for _ in range(count):
        s = list(shape)
        if cat and -len(s) <= d < len(s):
            s[d] = g.int(0, 3)
        if g.chance(0.04):
            s = s[:-1] if len(s) > 1 else s + [2]
        out.append(g.tensor(tuple(s), dtype=float_or(g, 0.05, ("float32", "int64"))))
    if cat and g.chance(0.08):
        out.append(g.tensor((0,)))
    if g.chance(0.03):
        out.append(g.tensor(()))
    return out, d


def _cat(g, form):
    tensors, d = _joinable(g, g.int(1, 3))
    if g.chance(0.3):
        return (tensors,), {"dim": d}
    return ((tuple(tensors) if g.chance(0.5) else tensors), d), {}


for _name in ("cat", "concat", "concatenate"):
    entry(_name, _cat)


def _stack(g, form):
    shape = g.shape()
    tensors = [g.tensor(shape if g.chance(0.95) else g.shape()) for _ in range(g.int(1, 3))]
    return (tensors, g.dim(len(shape) + 1)), {}


entry("stack", _stack)


def _hvstack(g, form):
    shape = list(g.shape(min_ndim=1, max_ndim=3))
    tensors = []
    for _ in range(g.int(1, 3)):
        s = list(shape)
        if len(s) > 1 and form == "hstack":
            s[1] = g.int(0, 3)
        if len(s) == 1 and form == "hstack":
            s[0] = g.int(0, 3)
        if form == "vstack" and len(s) > 1:
            s[0] = g.int(0, 3)
        tensors.append(g.tensor(tuple(s)))
    return (tensors,), {}


entry("hstack", lambda g, form: _hvstack(g, "hstack"))
entry("vstack", lambda g, form: _hvstack(g, "vstack"))


def _split(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    d = g.dim(len(x.shape))
    n = x.shape[d] if -len(x.shape) <= d < len(x.shape) else 2
    if g.chance(0.5):
        size = g.int(1, 3) if g.chance(0.95) else 0
    else:
        cut = sorted(g.rng.integers(0, n + 1, g.int(0, 2)).tolist())
        size = [b - a for a, b in zip([0] + cut, cut + [n])]
        if g.chance(0.05):
            size = size + [1]
    return (x, size, d), {}


entry("split", _split)


def _split_with_sizes(g, form):
    x, size, d = _split(g, form)[0]
    if isinstance(size, int):
        n = x.shape[d] if -len(x.shape) <= d < len(x.shape) else 0
        size = [size] * (n // size) + ([n % size] if n % size else []) if size else [n]
    return (x, size, d), {}


entry("split_with_sizes", _split_with_sizes)


def _chunk(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    return (x, g.int(1, 4) if g.chance(0.95) else 0, g.dim(len(x.shape))), {}


entry("chunk", _chunk)


def _tensor_split(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    d = g.dim(len(x.shape))
    if g.chance(0.5):
        sections = g.int(1, 4) if g.chance(0.95) else 0
    else:
        sections = sorted(g.rng.integers(-1, 5, g.int(0, 3)).tolist())
    return (x, sections, d), {}


entry("tensor_split", _tensor_split)


def _unbind(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    return (x, g.dim(len(x.shape))), {}


entry("unbind", _unbind)


def _gather(g, form):
    x = g.tensor(g.shape(min_ndim=0))
    n = len(x.shape)
    d = g.dim(n)
    size = x.shape[d] if n and -n <= d < n else 1
    shape = tuple(g.int(0, m) if m else 0 for m in x.shape) if n else ()
    if n and -n <= d < n:
        shape = list(shape)
        shape[d] = g.int(0, 4)
        shape = tuple(shape)
    index = g.index(shape, size)
    if g.chance(0.03) and n:
        index = g.index(shape[:-1], size)
    return (x, d, index), {}


entry("gather", _gather)
entry("take_along_dim", lambda g, form: (lambda a: ((a[0][0], a[0][2], a[0][1]), {}))(_gather(g, form)))


def _index_select(g, form):
    x = g.tensor()
    n = len(x.shape)
    d = g.dim(n)
    size = x.shape[d] if n and -n <= d < n else 1
    index = g.index((g.int(0, 4),) if g.chance(0.85) else (), size)
    return (x, d, index), {}


entry("index_select", _index_select)


def _masked_select(g, form):
    x = g.tensor()
    return (x, g.mask(g.broadcastable(x.shape, same=0.6), view=True)), {}


entry("masked_select", _masked_select)


def _narrow(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    d = g.dim(len(x.shape))
    n = x.shape[d] if -len(x.shape) <= d < len(x.shape) else 1
    start = g.int(-n, n) if n else 0
    length = g.int(0, n - (start % n if n else 0)) if n else 0
    if g.chance(0.05):
        length = n + 1
    return (x, d, start, length), {}


entry("narrow", _narrow)


def _select(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    d = g.dim(len(x.shape))
    n = x.shape[d] if -len(x.shape) <= d < len(x.shape) else 1
    return (x, d, g.int(-n, n - 1) if n and g.chance(0.95) else n), {}


entry("select", _select)


def _flip(g, form):
    x = g.tensor()
    dims = g.dims(len(x.shape), min_count=0)
    if form == "method" and g.chance(0.5):
        return (x, *dims), {}
    return (x, dims), {}


entry("flip", _flip)
entry("fliplr", lambda g, form: ((g.tensor(g.shape(min_ndim=1 if g.chance(0.1) else 2)),), {}))
entry("flipud", lambda g, form: ((g.tensor(g.shape(min_ndim=0 if g.chance(0.1) else 1)),), {}))


def _roll(g, form):
    x = g.tensor()
    if g.chance(0.3):
        return (x, g.int(-5, 5)), {}
    if g.chance(0.5):
        return (x, g.int(-5, 5), g.dim(len(x.shape))), {}
    dims = g.dims(len(x.shape))
    return (x, tuple(g.int(-4, 4) for _ in dims), dims), {}


entry("roll", _roll)


def _triangle(g, form):
    x = g.tensor(g.shape(min_ndim=0 if g.chance(0.1) else 2))
    if form == "inplace" and _overlapping(x):
        raise Skip
    return (x,), ({"diagonal": g.int(-3, 3)} if g.chance(0.6) else {})


entry("tril", _triangle)
entry("triu", _triangle)


def _repeat(g, form):
    x = g.tensor(g.shape(max_ndim=3))
    sizes = [g.int(0, 3) if g.chance(0.5) else 1 for _ in range(len(x.shape) + g.int(0 if g.chance(0.95) else -1, 2))]
    if form == "method" and g.chance(0.5):
        return (x, *sizes), {}
    return (x, tuple(sizes)), {}


entry("repeat", _repeat, forms=("method",))
entry("tile", lambda g, form: (lambda x: ((x, tuple(g.int(0, 3) if g.chance(0.4) else 1
                                                     for _ in range(g.int(0, 4)))), {}))(g.tensor()))


def _repeat_interleave(g, form):
    x = g.tensor()
    kwargs = {}
    d = optional_dim(g, len(x.shape))
    if d is not None:
        kwargs["dim"] = d
    n = (x.shape[d] if d is not None and x.shape and -len(x.shape) <= d < len(x.shape)
         else int(numpy.prod(x.shape)) if d is None else 1)
    repeats = g.int(0, 3) if g.chance(0.5) else g.index((n,) if g.chance(0.9) else (1,), 4)
    return (x, repeats), kwargs


entry("repeat_interleave", _repeat_interleave)


def _getitem_key(g, shape, advanced=True):
    key = []
    ndim = len(shape)
    d = 0
    while d < ndim and g.chance(0.8):
        n = shape[d]
        r = g.rng.random()
        if r < 0.3:
            key.append(slice(g.int(-n - 1, n + 1) if g.chance(0.5) else None, g.int(-n - 1, n + 1)
                             if g.chance(0.5) else None, g.int(1, 3) if g.chance(0.4) else None))
        elif r < 0.5 and n:
            key.append(g.int(-n, n - 1))
        elif r < 0.58:
            key.append(None)
            continue
        elif r < 0.62:
            key.append(Ellipsis)
            break
        elif r < 0.8 and advanced:
            key.append(g.index((g.int(0, 3),), max(n, 1) if n else 0, low=-n if n else 0))
        elif r < 0.88 and advanced:
            key.append(g.mask((n,)))
        elif r < 0.92 and advanced:
            key.append([g.int(-n, n - 1) for _ in range(g.int(1, 2))] if n else [])
        else:
            key.append(slice(None))
        d += 1
    if g.chance(0.03):
        key.append(g.int(0, 5))
    return key[0] if len(key) == 1 and g.chance(0.5) else tuple(key)


def _getitem(g, form):
    x = g.tensor()
    return (x, _getitem_key(g, x.shape)), {}


entry("__getitem__", _getitem, forms=("call",), call=lambda lib, x, key: x[key], covers=("Tensor.__getitem__",))


def _setitem_call(lib, x, key, value):
    x[key] = value
    return x


def _setitem(g, form):
    x = _nonleaf(g.tensor())
    key = _getitem_key(g, x.shape)
    if _overlapping(x) and any(isinstance(k, (T, list)) for k in (key if isinstance(key, tuple) else (key,))):
        raise Skip
    value = g.scalar(("float", "int", "special")) if g.chance(0.4) else g.tensor(
        g.shape(max_ndim=2) if g.chance(0.3) else ())
    return (x, key, value), {}


entry("__setitem__", _setitem, forms=("call",), call=_setitem_call, covers=("Tensor.__setitem__",))


def _index_put(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    if form == "inplace" and _overlapping(x):
        raise Skip
    n = x.shape[0]
    index = g.index((g.int(0, 4),), max(n, 1) if n else 0)
    value = g.tensor(g.broadcastable((index.shape[0],) + tuple(x.shape[1:])) if g.chance(0.8) else ())
    kwargs = {"accumulate": g.chance(0.5)} if g.chance(0.6) else {}
    return (x, (index,), value), kwargs


entry("index_put", _index_put, forms=("method", "inplace"))


def _nonzero(g, form):
    x = g.tensor(dtype=float_or(g, 0.3), values=g.choice(("zeros", "ties", "special")))
    return (x,), ({"as_tuple": g.chance(0.5)} if g.chance(0.4) and form != "argwhere" else {})


entry("nonzero", _nonzero, gradients=False)
entry("argwhere", lambda g, form: ((g.tensor(dtype=float_or(g, 0.3), values="zeros"),), {}), gradients=False)


# -- linear algebra --------------------------------------------------------------------------------------------

def _matmul_pair(g, form):
    a_nd, b_nd = g.int(1, 4), g.int(1, 4)
    n, k, m = g.int(0, 3), g.int(0, 3), g.int(0, 3)
    batch = g.shape(max_ndim=2, high=3)
    a = tuple(batch[len(batch) - max(a_nd - 2, 0):]) + ((n, k) if a_nd >= 2 else (k,))
    b = g.broadcastable(batch)[:max(b_nd - 2, 0)] + ((k if g.chance(0.95) else k + 1, m) if b_nd >= 2 else (k,))
    if g.chance(0.03):
        a = ()
    dtype = float_or(g, 0.04, ("float32",))
    if dtype != "float64" and len(a) > 2 and 0 in a + b:
        raise Skip      # torch's batched product skips its dtype check for an empty result (other's dtype)
    return (g.tensor(a, dtype=dtype), g.tensor(b)), {}


entry("matmul", _matmul_pair)
entry("__matmul__", _matmul_pair, forms=("call",), call=lambda lib, a, b: a @ b, covers=("Tensor.__matmul__",))
entry("__rmatmul__", _matmul_pair, forms=("call",), call=lambda lib, a, b: b.__rmatmul__(a),
      covers=("Tensor.__rmatmul__",))


def _shapes(*shapes):
    return shapes


def _mm(g, form):
    n, k, m = g.int(0, 4), g.int(0, 4), g.int(0, 4)
    a = (n, k) if g.chance(0.95) else (k,)
    b = (k if g.chance(0.95) else k + 1, m)
    return (g.tensor(a), g.tensor(b)), {}


entry("mm", _mm)


def _bmm(g, form):
    b, n, k, m = g.int(0, 3), g.int(0, 3), g.int(0, 3), g.int(0, 3)
    return (g.tensor((b, n, k)), g.tensor((b if g.chance(0.95) else b + 1, k, m))), {}


entry("bmm", _bmm)


def _mv(g, form):
    n, k = g.int(0, 4), g.int(0, 4)
    return (g.tensor((n, k)), g.tensor((k if g.chance(0.95) else k + 1,))), {}


entry("mv", _mv)


def _vectors(g, form):
    n = g.int(0, 5)
    return (g.tensor((n,) if g.chance(0.95) else (n, 2)), g.tensor((n if g.chance(0.95) else n + 1,))), {}


entry("dot", _vectors)


def _inner(g, form):
    k = g.int(0, 3)
    a = g.shape(max_ndim=2) + ((k,) if g.chance(0.9) else ())
    b = g.shape(max_ndim=2) + ((k if g.chance(0.95) else k + 1,) if g.chance(0.9) else ())
    return (g.tensor(a), g.tensor(b)), {}


entry("inner", _inner)


def _outer(g, form):
    return (g.tensor((g.int(0, 4),)), g.tensor((g.int(0, 4),) if g.chance(0.95) else (2, 2))), {}


entry("outer", _outer)
entry("ger", _outer)


def _addmm(g, form):
    n, k, m = g.int(0, 3), g.int(0, 3), g.int(0, 3)
    kwargs = {}
    if g.chance(0.3):
        kwargs["beta"] = g.choice((0, 0.5, 2))
    if g.chance(0.3):
        kwargs["alpha"] = g.choice((0, 0.5, 2))
    return (g.tensor(g.broadcastable((n, m))), g.tensor((n, k)), g.tensor((k, m))), kwargs


entry("addmm", _addmm)


def _einsum(g, form):
    options = [("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk", [(2, 3), (3, 2)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 1)]),
               ("i,i->", [(3,), (3,)]), ("i,j->ij", [(2,), (3,)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]),
               ("...ij,...jk->...ik", [(2, 1, 3), (3, 2)]), ("ii->i", [(3, 3)]), ("ii", [(3, 3)]),
               ("ij,ij->i", [(2, 3), (2, 3)]), ("i,i", [(3,), (4,)]), ("ijk->kj", [(2, 3, 1)]),
               ("b i d, b j d -> b i j", [(2, 3, 2), (2, 1, 2)])]
    equation, shapes = g.choice(options)
    return (equation, *[g.tensor(s) for s in shapes]), {}


# torch's einsum returns a view of its operand where the equation only permutes or takes a diagonal (an
# implementation detail its documentation does not promise): aliasing not compared
entry("einsum", _einsum, aliasing=False)


def _linear(g, form):
    batch = g.shape(max_ndim=2)
    n_in, n_out = g.int(0, 4), g.int(0, 4)
    x_shape = batch + (n_in if g.chance(0.95) else n_in + 1,)
    if g.chance(0.1):
        x_shape = (n_in,)
    w = g.tensor((n_out, n_in) if g.chance(0.97) else (n_in,))
    b = None if g.chance(0.3) else g.tensor((n_out,) if g.chance(0.9) else ())
    args = (g.tensor(x_shape), w) + ((b,) if b is not None or g.chance(0.5) else ())
    return args, {}


entry("linear", _linear, forms=("torch", "F"), torch_name="nn.functional.linear")


# -- nn.functional: activations -----------------------------------------------------------------------------------

def _activation(params=(), inplace=True, values=None):
    def draw(g, form):
        x = g.tensor(values=values)
        kwargs = {}
        for key, options in params:
            if g.chance(0.5):
                kwargs[key] = g.choice(options)
        if inplace and g.chance(0.25):
            kwargs["inplace"] = True
            x = _nonleaf(x)
        return (x,), kwargs
    return draw


def _gradients_without_nan(ours, theirs, built_o, built_t):
    """torch's hardtanh_backward (hardswish_, elu_backward) treat a nan input one way in their scalar loop
    (small tensors) and another in their vector loop (gpugrad takes the vector loop's): gradients compared
    where the input holds no nan."""
    compare(ours, theirs)
    return not bool(torch.isnan(built_t.args[0]).any())


entry("relu", _activation(), forms=("F",))
entry("relu_", lambda g, form: ((_nonleaf(g.tensor()),), {}), forms=("F",))
entry("relu6", _activation(), forms=("F",), check=_gradients_without_nan)
entry("elu", _activation((("alpha", (1.0, 0.5, 2.0)),)), forms=("F",), check=_gradients_without_nan)
entry("selu", _activation(), forms=("F",), check=_gradients_without_nan)
entry("leaky_relu", _activation((("negative_slope", (0.01, 0.2, 0.0, -0.5)),)), forms=("F",))
entry("threshold", lambda g, form: ((g.tensor(), g.choice((0.0, 0.5, -1.0)), g.choice((0.0, 2.0, -3.0))), {}),
      forms=("F",))
entry("hardtanh", _activation((("min_val", (-1.0, -0.5, 0.0, 2.0)), ("max_val", (1.0, 0.5, 3.0)))), forms=("F",),
      check=_gradients_without_nan)
entry("hardsigmoid", _activation(), forms=("F",))
entry("hardswish", _activation(), forms=("F",), check=_gradients_without_nan)
entry("silu", _activation(), forms=("F",))


def _mish_check(ours, theirs, built_o, built_t):
    """torch's mish double backward is nan where exp(x) overflows (x > 709.78 in float64, 88.7 in float32),
    the limit gpugrad gives is 0: gradients compared where the input stays below that (fuzzer seed 303)."""
    compare(ours, theirs)
    x = built_t.args[0].detach()
    return not bool((x.double() > (88.0 if x.dtype != torch.float64 else 709.0)).any())


entry("mish", _activation(), forms=("F",), check=_mish_check)
entry("logsigmoid", _activation(inplace=False), forms=("F",))
entry("softplus", _activation((("beta", (1.0, 0.5, 2.0)), ("threshold", (20.0, 1.0, 0.5))), inplace=False),
      forms=("F",))
entry("softsign", _activation(inplace=False), forms=("F",))
entry("tanhshrink", _activation(inplace=False), forms=("F",))
entry("gelu", lambda g, form: ((g.tensor(),), {"approximate": g.choice(("none", "tanh"))} if g.chance(0.5) else {}),
      forms=("F",))
entry("sigmoid", unary(dtypes=0), forms=("F",))
entry("tanh", unary(dtypes=0), forms=("F",))


def _glu(g, form):
    x = g.tensor(tuple(2 * n if g.chance(0.85) else n for n in g.shape(min_ndim=0 if g.chance(0.05) else 1)))
    return (x,), ({"dim": g.dim(len(x.shape))} if g.chance(0.6) else {})


entry("glu", _glu, forms=("F",))


def _normalize(g, form):
    x = g.tensor(values=g.choice(("normal", "zeros", "ties", "special")))
    kwargs = {}
    if g.chance(0.4):
        kwargs["p"] = g.choice((1.0, 2.0, 3.0, math.inf, 0.5))
    if g.chance(0.7):
        kwargs["dim"] = g.dim(len(x.shape))
    if g.chance(0.2):
        kwargs["eps"] = g.choice((1e-12, 0.5))
    return (x,), kwargs


entry("normalize", _normalize, forms=("F",))


def _cosine(g, form):
    shape = g.shape(min_ndim=1)
    x1 = g.tensor(g.broadcastable(shape), values=g.choice(("normal", "zeros", "ties")))
    x2 = g.tensor(g.broadcastable(shape), values=g.choice(("normal", "zeros", "ties")))
    kwargs = {}
    if g.chance(0.6):
        kwargs["dim"] = g.dim(len(shape))
    if g.chance(0.2):
        kwargs["eps"] = g.choice((1e-8, 0.5))
    if "zeros" in (x1.values, x2.values):
        # a row of zeros has the norm eps: with 1e-8 the second derivative is 1e16 times the rounding
        # of terms that cancel (noise in both libraries)
        kwargs["eps"] = g.choice((1e-3, 0.5))
    return (x1, x2), kwargs


entry("cosine_similarity", _cosine, forms=("F",))


def _pairwise(g, form):
    shape = g.shape(min_ndim=1, max_ndim=2)
    kwargs = {}
    if g.chance(0.4):
        kwargs["p"] = g.choice((1.0, 2.0, 3.0, math.inf, 0.5))
    if g.chance(0.3):
        kwargs["keepdim"] = True
    if g.chance(0.2):
        kwargs["eps"] = g.choice((0.0, 1e-3))
    return (g.tensor(shape), g.tensor(g.broadcastable(shape))), kwargs


entry("pairwise_distance", _pairwise, forms=("F",))


# -- nn.functional: losses ----------------------------------------------------------------------------------------

def _reduction(g):
    return {"reduction": g.choice(("mean", "sum", "none", "bad"))} if g.chance(0.7) else {}


def _class_problem(g, probabilities=False):
    n, c = g.int(0, 4), g.int(1, 4)
    extra = g.shape(max_ndim=2, high=3) if g.chance(0.25) else ()
    if g.chance(0.1):
        shape, target_shape = (c,), ()
    else:
        shape, target_shape = (n, c) + extra, (n,) + extra
    x = g.tensor(shape, values=g.choice(("normal", "normal", "special", "ties", "wide")))
    if probabilities:
        return x, g.tensor(shape, values="unit", grad=g.chance(0.3))
    target = g.index(target_shape, c, wrong=0.02)
    return x, target, c


def _class_options(g, c, smoothing=True):
    kwargs = _reduction(g)
    if g.chance(0.3):
        kwargs["weight"] = g.tensor((c,) if g.chance(0.95) else (c + 1,), values="positive", grad=g.chance(0.3))
    if g.chance(0.3):
        kwargs["ignore_index"] = g.choice((-100, 0, 1, -1))
    if smoothing and g.chance(0.25):
        kwargs["label_smoothing"] = g.choice((0.1, 0.5, 1.0, 0.0, 1.5))
    return kwargs


def _cross_entropy(g, form):
    if g.chance(0.2):
        x, target = _class_problem(g, probabilities=True)
        c = x.shape[1] if len(x.shape) > 1 else x.shape[0]
        kwargs = _class_options(g, c)
        kwargs.pop("ignore_index", None)
        return (x, target), kwargs
    x, target, c = _class_problem(g)
    return (x, target), _class_options(g, c)


entry("cross_entropy", _cross_entropy, forms=("F",))


def _nll(g, form):
    x, target, c = _class_problem(g)
    if len(x.shape) > 2 and x.layout[0] != "plain":
        raise Skip      # torch's nll_loss2d backward refuses a non-contiguous input ("grad_input must be contiguous")
    x.values = "log-probabilities"
    if g.chance(0.8):
        with numpy.errstate(all="ignore"):      # (inf and -inf among the values: a nan or inf base is fine)
            x.base = x.base - numpy.log(numpy.exp(numpy.where(numpy.isnan(x.base), 0, x.base)).sum())
    return (x, target), _class_options(g, c, smoothing=False)


entry("nll_loss", _nll, forms=("F",))


def _regression(weight=False, beta=None):
    def draw(g, form):
        shape = g.shape()
        x = g.tensor(shape, values=g.choice(("normal", "ties", "special")))
        target = g.tensor(shape if g.chance(0.85) else g.broadcastable(shape), grad=g.chance(0.4))
        kwargs = _reduction(g)
        if beta and g.chance(0.5):
            kwargs[beta[0]] = g.choice(beta[1])
        if weight and g.chance(0.2):
            kwargs["weight"] = g.tensor(shape, values="positive", grad=False)
        return (x, target), kwargs
    return draw


entry("mse_loss", _regression(weight=True), forms=("F",))
entry("l1_loss", _regression(weight=True), forms=("F",))
entry("smooth_l1_loss", _regression(beta=("beta", (1.0, 0.5, 0.0, 2.0, -1.0))), forms=("F",))
entry("huber_loss", _regression(weight=True, beta=("delta", (1.0, 0.5, 2.0, 0.0))), forms=("F",))


def _kl_div(g, form):
    shape = g.shape()
    log_target = g.chance(0.4)
    x = g.tensor(shape, values=g.choice(("normal", "special")))
    target = g.tensor(shape, values="normal" if log_target else g.choice(("unit", "unit_edges", "zeros")),
                      grad=g.chance(0.4))
    kwargs = {"reduction": g.choice(("mean", "sum", "none", "batchmean"))} if g.chance(0.8) else {}
    if log_target or g.chance(0.2):
        kwargs["log_target"] = log_target
    return (x, target), kwargs


entry("kl_div", _kl_div, forms=("F",))


def _bce(g, form):
    shape = g.shape()
    x = g.tensor(shape, values=g.choice(("unit", "unit_edges")))
    if g.chance(0.03):
        x = g.tensor(shape)
    target = g.tensor(shape if g.chance(0.95) else g.broadcastable(shape), values=g.choice(("unit", "unit_edges")),
                      grad=g.chance(0.3))
    kwargs = _reduction(g)
    if g.chance(0.25):
        kwargs["weight"] = g.tensor(g.broadcastable(shape), values="positive", grad=False)
    return (x, target), kwargs


entry("binary_cross_entropy", _bce, forms=("F",))


def _bce_logits(g, form):
    shape = g.shape()
    x = g.tensor(shape, values=g.choice(("normal", "wide", "special")))
    target = g.tensor(shape if g.chance(0.95) else g.broadcastable(shape), values=g.choice(("unit", "unit_edges")),
                      grad=g.chance(0.3))
    kwargs = _reduction(g)
    if g.chance(0.25):
        kwargs["weight"] = g.tensor(g.broadcastable(shape), values="positive", grad=False)
    if g.chance(0.25) and shape:
        kwargs["pos_weight"] = g.tensor(g.broadcastable(shape[-1:]), values="positive", grad=False)
    return (x, target), kwargs


entry("binary_cross_entropy_with_logits", _bce_logits, forms=("F",))


def _linear_ce(g, form):
    n, d, v = g.int(0, 4), g.int(1, 4), g.int(1, 5)
    x = g.tensor((n, d) if g.chance(0.85) else (d,))
    weight = g.tensor((v, d))
    target = g.index((n,) if len(x.shape) == 2 else (), v, wrong=0.02)
    kwargs = {}
    if g.chance(0.3):
        kwargs["linear_bias"] = g.tensor((v,))
    kwargs.update(_class_options(g, v))
    if kwargs.get("reduction") == "bad":
        kwargs["reduction"] = "mean"
    return (x, weight, target), kwargs


entry("linear_cross_entropy", _linear_ce, forms=("F",))


# -- nn.functional: layers ----------------------------------------------------------------------------------------

def _layer_norm(g, form):
    shape = g.shape(min_ndim=1)
    k = g.int(1, len(shape))
    normalized = shape[len(shape) - k:]
    if g.chance(0.05):
        normalized = tuple(n + 1 for n in normalized)
    x = g.tensor(shape, values=g.choice(("normal", "ties", "special", "zeros")))
    args = [x, normalized if g.chance(0.8) or k > 1 else normalized[0]]
    kwargs = {}
    if g.chance(0.5):
        kwargs["weight"] = g.tensor(normalized)
    if g.chance(0.5):
        kwargs["bias"] = g.tensor(normalized)
    if g.chance(0.2):
        kwargs["eps"] = g.choice((1e-5, 0.1, 0.0))
    return tuple(args), kwargs


entry("layer_norm", _layer_norm, forms=("F",))


def _batch_norm(g, form):
    shape = g.shape(min_ndim=2, max_ndim=4)
    c = shape[1]
    x = g.tensor(shape, values=g.choice(("normal", "ties", "zeros")))
    training = g.chance(0.6)
    stats = g.chance(0.8) or not training
    # the running statistics are written in place (plain tensors: torch writes an expanded one unchecked)
    mean = g.tensor((c,), grad=False, view=False) if stats else None
    var = g.tensor((c,), values="positive", grad=False, view=False) if stats else None
    kwargs = {"training": training}
    # plain weight and bias: torch's create_graph batch norm reads a strided weight as if contiguous (a bug);
    # finite: torch folds 1/std * weight and bias - mean / std * weight into two factors, so an infinite
    # weight's inf and nan land where that folding puts them (not matched)
    if g.chance(0.5):
        kwargs["weight"] = g.tensor((c,), view=False, values="normal")
    if g.chance(0.5):
        kwargs["bias"] = g.tensor((c,), view=False, values="normal")
    if g.chance(0.3):
        kwargs["momentum"] = g.choice((0.1, 0.5, None))
    if g.chance(0.2):
        kwargs["eps"] = g.choice((1e-5, 0.1))
    return (x, mean, var), kwargs


def _batch_norm_call(lib, x, *args, **kwargs):
    if lib is torch and x.ndim == 4 and not x.is_contiguous():
        # torch's CPU batch_norm backward with a channels-last (or ambiguous) input and a contiguous upstream
        # gradient mixes the two layouts (input gradients differ from those of x.contiguous(): a torch bug)
        x = x.contiguous()
    return lib.nn.functional.batch_norm(x, *args, **kwargs)


entry("batch_norm", _batch_norm, forms=("call",), call=_batch_norm_call, covers=("F.batch_norm",))


def _embedding(g, form):
    rows, dim = g.int(1, 5), g.int(0, 3)
    weight = g.tensor((rows, dim))
    index = g.index(g.shape(max_ndim=2), rows, dtype=g.choice(("int64", "int64", "int32")))
    if (index.base < 0).any():
        raise Skip      # torch refuses a negative index with IndexError or RuntimeError by the count of indices
    kwargs = {}
    if g.chance(0.3):
        kwargs["padding_idx"] = g.int(-rows - 1, rows)
    return (index, weight), kwargs


entry("embedding", _embedding, forms=("F",))


def _one_hot(g, form):
    index = g.index(g.shape(), 4, wrong=0.05)
    return (index,), ({"num_classes": g.choice((-1, 4, 5, 2))} if g.chance(0.6) else {})


entry("one_hot", _one_hot, forms=("F",), gradients=False)


def _pad(g, form):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=4))
    mode = g.choice(("constant", "constant", "reflect", "replicate", "circular"))
    count = g.int(1, min(len(x.shape), 3))
    low = -1 if mode == "constant" else 0
    pad = tuple(g.int(low, 2) for _ in range(2 * count))
    kwargs = {}
    if mode != "constant" or g.chance(0.3):
        kwargs["mode"] = mode
    if mode == "constant" and g.chance(0.4):
        kwargs["value"] = g.choice((0.0, 1.5, -2.0, math.nan))
    return (x, pad), kwargs


entry("pad", _pad, forms=("F",))


def _image(g, min_size=1, channels=None, batch=True):
    n = g.int(1, 2)
    c = channels or g.int(1, 3)
    h, w = g.int(min_size, 5), g.int(min_size, 5)
    shape = (n, c, h, w) if batch or g.chance(0.8) else (c, h, w)
    return shape


def _conv2d(g, form):
    groups = g.choice((1, 1, 2))
    c = groups * g.int(1, 2)
    shape = _image(g, channels=c, batch=g.chance(0.85))
    out = groups * g.int(1, 2)
    kh, kw = g.int(1, 3), g.int(1, 3)
    weight = g.tensor((out, c // groups, kh, kw))
    kwargs = {}
    if g.chance(0.5):
        kwargs["bias"] = g.tensor((out,))
    if g.chance(0.4):
        kwargs["stride"] = g.choice((1, 2, (1, 2), (2, 1)))
    if g.chance(0.4):
        kwargs["padding"] = g.choice((0, 1, (1, 0), "same", "valid", 2))
    if g.chance(0.3):
        kwargs["dilation"] = g.choice((1, 2, (2, 1)))
    if groups > 1 or g.chance(0.05):
        kwargs["groups"] = groups
    return (g.tensor(shape), weight), kwargs


entry("conv2d", _conv2d, forms=("F",))


def _conv1d(g, form):
    groups = g.choice((1, 1, 2))
    c = groups * g.int(1, 2)
    length = g.int(1, 6)
    shape = (g.int(1, 2), c, length) if g.chance(0.85) else (c, length)
    out = groups * g.int(1, 2)
    weight = g.tensor((out, c // groups, g.int(1, 3)))
    kwargs = {}
    if g.chance(0.5):
        kwargs["bias"] = g.tensor((out,))
    if g.chance(0.4):
        kwargs["stride"] = g.choice((1, 2, 3))
    if g.chance(0.4):
        kwargs["padding"] = g.choice((0, 1, "same", "valid", 2))
    if g.chance(0.3):
        kwargs["dilation"] = g.choice((1, 2))
    if groups > 1:
        kwargs["groups"] = groups
    return (g.tensor(shape), weight), kwargs


entry("conv1d", _conv1d, forms=("F",))


def _unfold(g, form):
    x = g.tensor(_image(g))
    kwargs = {}
    if g.chance(0.4):
        kwargs["dilation"] = g.choice((1, 2))
    if g.chance(0.4):
        kwargs["padding"] = g.choice((0, 1, (1, 0)))
    if g.chance(0.4):
        kwargs["stride"] = g.choice((1, 2, (2, 1)))
    return (x, g.choice((1, 2, (2, 1), 3))), kwargs


entry("unfold", _unfold, forms=("F",))


def _fold(g, form):
    h, w = g.int(1, 5), g.int(1, 5)
    kh, kw = g.int(1, min(h, 3)), g.int(1, min(w, 3))
    stride = g.choice((1, 2))
    lh, lw = (h - kh) // stride + 1, (w - kw) // stride + 1
    c = g.int(1, 2)
    x = g.tensor((g.int(1, 2), c * kh * kw, lh * lw if g.chance(0.95) else lh * lw + 1))
    return (x, (h, w), (kh, kw)), {"stride": stride}


entry("fold", _fold, forms=("F",))


def _no_expanded_max_pool(x, max_pool):
    if max_pool and x.layout[0] == "expand":
        raise Skip      # torch's max_pool backward writes past its buffer for an expanded input (aborts the process)


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _no_window_in_padding(x, kernel, kwargs, one_d=False):
    """torch's max_pool with a window lying wholly in the padding (dilation, ceil_mode) reads and writes past
    its buffers (heap corruption, the process aborts): such cases are not run."""
    def two(v, default):
        v = default if v is None else v
        return (1, v if isinstance(v, int) else v[0]) if one_d else _pair(v)
    kernel = two(kernel, None)
    stride = two(kwargs.get("stride"), kernel[1] if one_d else kernel)
    if one_d and kwargs.get("stride") is None:
        stride = kernel
    padding, dilation = two(kwargs.get("padding", 0), 0), two(kwargs.get("dilation", 1), 1)
    sizes = (1, x.shape[-1]) if one_d else x.shape[-2:]
    for n, k, s, p, d in zip(sizes, kernel, stride, padding, dilation):
        out = gpugrad.ops.conv._out_size(n, k, d, p, s, bool(kwargs.get("ceil_mode")))
        for i in range(max(out, 0)):
            if not any(0 <= i * s - p + d * j < n for j in range(k)):
                raise Skip


def _pool2d(max_pool):
    def draw(g, form):
        x = g.tensor(_image(g, batch=g.chance(0.85)), values=g.choice(("normal", "ties", "special")))
        _no_expanded_max_pool(x, max_pool)
        k = g.choice((1, 2, 3, (2, 1), (1, 3)))
        kwargs = {}
        if g.chance(0.5):
            kwargs["stride"] = g.choice((1, 2, (1, 2), None))
        if g.chance(0.4):
            kwargs["padding"] = g.choice((0, 1, (1, 0), 2))
        if g.chance(0.3):
            kwargs["ceil_mode"] = True
        if max_pool:
            if g.chance(0.3):
                kwargs["dilation"] = g.choice((1, 2))
            if g.chance(0.3):
                kwargs["return_indices"] = True
        else:
            if g.chance(0.3):
                kwargs["count_include_pad"] = False
            if g.chance(0.15):
                kwargs["divisor_override"] = g.choice((1, 3))
        if max_pool:
            _no_window_in_padding(x, k, kwargs)
        return (x, k), kwargs
    return draw


entry("max_pool2d", _pool2d(True), forms=("F",))
entry("avg_pool2d", _pool2d(False), forms=("F",))


def _pool1d(max_pool):
    def draw(g, form):
        length = g.int(1, 6)
        x = g.tensor((g.int(1, 2), g.int(1, 2), length) if g.chance(0.85) else (g.int(1, 2), length),
                     values=g.choice(("normal", "ties", "special")))
        _no_expanded_max_pool(x, max_pool)
        kwargs = {}
        if g.chance(0.5):
            kwargs["stride"] = g.choice((1, 2, 3))
        if g.chance(0.4):
            kwargs["padding"] = g.choice((0, 1))
        if g.chance(0.3):
            kwargs["ceil_mode"] = True
        if max_pool:
            if g.chance(0.3):
                kwargs["dilation"] = g.choice((1, 2))
            if g.chance(0.3):
                kwargs["return_indices"] = True
        elif g.chance(0.3):
            kwargs["count_include_pad"] = False
        k = g.choice((1, 2, 3))
        if max_pool:
            _no_window_in_padding(x, k, kwargs, one_d=True)
        return (x, k), kwargs
    return draw


entry("max_pool1d", _pool1d(True), forms=("F",))
entry("avg_pool1d", _pool1d(False), forms=("F",))


def _adaptive(g, form):
    x = g.tensor(_image(g, batch=g.chance(0.85)))
    return (x, g.choice((1, 2, 3, (2, 1), (None, 2), (3, 4)))), {}


entry("adaptive_avg_pool2d", _adaptive, forms=("F",))


def _sdpa(g, form):
    batch = g.shape(max_ndim=2, high=2, empty=False)
    length, source, e, ev = g.int(1, 4), g.int(1, 4), g.int(1, 3), g.int(1, 3)
    values = g.choice(("normal", "normal", "special", "ties"))
    q = g.tensor(batch + (length, e), values=values)
    k = g.tensor(batch + (source, e))
    v = g.tensor(batch + (source, ev))
    kwargs = {}
    r = g.rng.random()
    # masks of fewer than 2 dims: torch's paths disagree (the math path indexes dim -2, others broadcast)
    mask_shape = g.broadcastable((length, source))
    mask_shape = (1,) * (2 - len(mask_shape)) + tuple(mask_shape)
    if r < 0.3:
        kwargs["attn_mask"] = g.mask(mask_shape)
    elif r < 0.5:
        m = g.tensor(mask_shape, values=g.choice(("normal", "special")), grad=g.chance(0.4))
        kwargs["attn_mask"] = m
    elif r < 0.65:
        kwargs["is_causal"] = True
    if g.chance(0.3):
        kwargs["scale"] = g.choice((0.5, 2.0, 1.0))
    return (q, k, v), kwargs


def _sdpa_call(lib, q, k, v, **kwargs):
    if lib is torch and not all(bool(t.isfinite().all()) for t in (q, k, v)):
        # torch's CPU flash kernel (chosen without a mask) turns some rows with nan scores into 0 or
        # finite values where its math path, the reference gpugrad follows, keeps nan
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.MATH):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    return lib.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)


entry("scaled_dot_product_attention", _sdpa, forms=("call",), call=_sdpa_call,
      covers=("F.scaled_dot_product_attention",))


def _bilinear(g, form):
    # inf and nan in the first input only: torch's second contraction is a BLAS product, whose
    # handling of non-finite values depends on its blocking
    batch = g.shape(max_ndim=2, high=3)
    in1, in2, out = g.int(1, 4), g.int(1, 4), g.int(1, 4)

    def finite(shape):
        return g.tensor(shape, values=g.choice(("normal", "ties", "zeros", "wide")))

    args = (g.tensor(batch + (in1,)), finite(batch + (in2,)), finite((out, in1, in2)))
    return args + ((finite((out,)),) if g.chance(0.6) else ()), {}


entry("bilinear", _bilinear, forms=("F",))


def _multi_head_attention(g, form):
    # finite projections: with inf or nan in them, torch's fused CPU attention kernel sends zero
    # gradients where the composed math (gpugrad's, and torch's with need_weights) sends nan; not
    # "wide" (up to 1e3): the softmax saturates and the projections' gradients are rounding noise
    heads, head_dim = g.int(1, 3), g.int(1, 3)
    embed, length, source, batch = heads * head_dim, g.int(1, 4), g.int(1, 4), g.int(1, 3)

    def finite(shape):
        return g.tensor(shape, values=g.choice(("normal", "normal", "ties", "zeros", "small")))

    query = finite((length, batch, embed))
    key = query if length == source and g.chance(0.4) else finite((source, batch, embed))
    value = key if g.chance(0.5) else finite((source, batch, embed))
    bias = finite((3 * embed,)) if g.chance(0.7) else None
    bias_kv = (finite((1, 1, embed)), finite((1, 1, embed))) if g.chance(0.2) else (None, None)
    args = (query, key, value, embed, heads, finite((3 * embed, embed)), bias, *bias_kv, g.chance(0.2), 0.0,
            finite((embed, embed)), finite((embed,)) if bias is not None else None)
    kwargs = {"training": False, "need_weights": g.chance(0.5), "average_attn_weights": g.chance(0.7)}
    if g.chance(0.4):
        kwargs["attn_mask"] = g.tensor((length, source), grad=False)
    if g.chance(0.3):
        kwargs["key_padding_mask"] = g.mask((batch, source))
    return args, kwargs


entry("multi_head_attention_forward", _multi_head_attention, forms=("F",))


# -- random sampling: shapes, dtypes and errors (values are the library's own stream) ---------------------------

def _meta_check(ours, theirs, built_o, built_t):
    """Random results: the same structure, shapes and dtypes (the values come from another stream)."""
    o, t = flat_tensors(ours), flat_tensors(theirs)
    if len(o) != len(t):
        raise Mismatch(f"{len(o)} tensors != torch's {len(t)}")
    for i, (a, b) in enumerate(zip(o, t)):
        if tuple(a.shape) != tuple(b.shape):
            raise Mismatch(f"out[{i}]: shape {list(a.shape)} != torch's {list(b.shape)}")
        if dtype_name(a.dtype) != dtype_name(b.dtype):
            raise Mismatch(f"out[{i}]: dtype {dtype_name(a.dtype)} != torch's {dtype_name(b.dtype)}")
        if a.requires_grad != b.requires_grad:
            raise Mismatch(f"out[{i}]: requires_grad {a.requires_grad} != torch's {b.requires_grad}")


def _zero_one_check(ours, theirs, built_o, built_t):
    _meta_check(ours, theirs, built_o, built_t)
    values = numpy.asarray(ours.detach().to("cpu").array, dtype=numpy.float64)
    if not numpy.isin(values, (0.0, 1.0)).all():
        raise Mismatch("samples other than 0 and 1")


def _sizes(g):
    shape = g.shape()
    if g.chance(0.05):
        shape = shape + (-1,)
    r = g.rng.random()
    if r < 0.4:
        return shape, {}
    if r < 0.8:
        return (shape,), {}
    return (), {"size": shape}


def _factory_kwargs(g, options=("float32", "float64", "int64", "float16", "bool", "int32")):
    kwargs = {}
    if g.chance(0.4):
        kwargs["dtype"] = g.dtype(options)
    if g.chance(0.2):
        kwargs["requires_grad"] = True
    return kwargs


def _sized(g, form):
    args, kwargs = _sizes(g)
    kwargs.update(_factory_kwargs(g))
    return args, kwargs


for _name in ("rand", "randn"):
    entry(_name, _sized, check=_meta_check, gradients=False, aliasing=False)
for _name in ("zeros", "ones"):
    entry(_name, _sized, gradients=False)
entry("empty", _sized, check=_meta_check, gradients=False, aliasing=False)


def _randint(g, form):
    low, high = g.int(-3, 3), g.int(-3, 6)
    shape = g.shape()
    kwargs = _factory_kwargs(g, ("int64", "int32", "float32", "float64", "uint8"))
    kwargs.pop("requires_grad", None)
    return ((high, shape) if g.chance(0.4) else (low, high, shape)), kwargs


entry("randint", _randint, check=_meta_check, gradients=False, aliasing=False)


def _randperm(g, form):
    kwargs = _factory_kwargs(g, ("int64", "int32", "float32", "float64"))
    kwargs.pop("requires_grad", None)
    return (g.int(-2, 6),), kwargs


def _permutation_check(ours, theirs, built_o, built_t):
    _meta_check(ours, theirs, built_o, built_t)
    values = numpy.sort(numpy.asarray(ours.to("cpu").array, dtype=numpy.float64))
    if not numpy.array_equal(values, numpy.arange(len(values))):
        raise Mismatch(f"not a permutation: {values}")


entry("randperm", _randperm, check=_permutation_check, gradients=False, aliasing=False)


def _like(g, form):
    x = g.tensor(dtype=float_or(g, 0.2, ("float32", "int64", "bool")), grad=g.chance(0.3))
    return (x,), _factory_kwargs(g)


for _name in ("rand_like", "randn_like", "empty_like"):
    entry(_name, _like, check=_meta_check, gradients=False, aliasing=False)
for _name in ("zeros_like", "ones_like"):
    entry(_name, _like, gradients=False)


def _full_like(g, form):
    args, kwargs = _like(g, form)
    return args + (g.scalar(),), kwargs


entry("full_like", _full_like, gradients=False)


def _full(g, form):
    return (g.shape(), g.scalar()), _factory_kwargs(g)


entry("full", _full, gradients=False)


def _randint_like(g, form):
    x = g.tensor(dtype=float_or(g, 0.5, ("float32", "int64", "int32")), grad=False)
    high = g.int(-1, 5)
    return ((x, high) if g.chance(0.5) else (x, g.int(-2, 2), high)), {}


entry("randint_like", _randint_like, check=_meta_check, gradients=False, aliasing=False)


def _normal(g, form):
    r = g.rng.random()

    def param(positive=False):
        if g.chance(0.5):
            return g.choice((0.0, 1.0, 2.5, -1.0, math.nan, math.inf) if not positive else
                            (0.0, 1.0, 0.5, -1.0, math.nan, math.inf))
        return g.tensor(g.shape(), values="positive" if positive and g.chance(0.8) else None, grad=False)
    mean, std = param(), param(True)
    if r < 0.5 and not isinstance(mean, T) and not isinstance(std, T):
        return (mean, std, g.shape()), {}
    if not isinstance(mean, T) and not isinstance(std, T):
        mean = g.tensor(g.shape(), grad=False)
    return (mean, std), {}


entry("normal", _normal, check=_meta_check, gradients=False, aliasing=False)


def _bernoulli(g, form):
    x = g.tensor(values=g.choice(("unit", "unit_edges", "unit", "special", "normal")), grad=g.chance(0.2),
                 dtype=float_or(g, 0.1, ("float32",)))
    if g.chance(0.3):
        return (x,), {"p": g.choice((0.5, 0.0, 1.0, 1.5, math.nan, -0.1))}
    return (x,), {}


entry("bernoulli", _bernoulli, check=_zero_one_check, gradients=False, aliasing=False)


def _multinomial(g, form):
    x = g.tensor(g.shape(min_ndim=0 if g.chance(0.05) else 1, max_ndim=3 if g.chance(0.05) else 2),
                 values=g.choice(("positive", "zeros", "positive", "special")), grad=False)
    if x.values == "zeros":
        x.base = numpy.abs(x.base)
    n = x.shape[-1] if x.shape else 1
    return (x, g.int(0, n + 1)), ({"replacement": g.chance(0.5)} if g.chance(0.6) else {})


entry("multinomial", _multinomial, check=_meta_check, gradients=False, aliasing=False)


def _fill_random(params):
    def draw(g, form):
        x = _nonleaf(g.tensor(dtype=float_or(g, 0.1, ("float32", "int64")), grad=g.chance(0.3)))
        args = tuple(g.choice(options) for options in params[:g.int(0, len(params))])
        return (x,) + args, {}
    return draw


def _method_call(name):
    return lambda lib, x, *a, **k: getattr(x, name)(*a, **k)


for _name, _params in (("uniform_", ((0.0, -1.0, 2.0), (1.0, 3.0, -2.0))), ("normal_", ((0.0, 1.0), (1.0, 0.5, -1.0))),
                       ("bernoulli_", ((0.5, 0.0, 1.0, 1.5),)), ("random_", ((5, 0, -2), (8, 3))),
                       ("exponential_", ((1.0, 2.0, -1.0, 0.0),))):
    entry(_name, _fill_random(_params), forms=("call",), call=_method_call(_name), covers=(f"Tensor.{_name}",),
          check=_meta_check, gradients=False, aliasing=False)


def _dropout(g, form):
    x = g.tensor()
    kwargs = {}
    if g.chance(0.8):
        kwargs["p"] = g.choice((0.0, 0.5, 1.0, 0.2, 1.5, -0.1))
    if g.chance(0.4):
        kwargs["training"] = g.chance(0.5)
    return (x,), kwargs


def _dropout_check(ours, theirs, built_o, built_t):
    _meta_check(ours, theirs, built_o, built_t)
    p, training = built_t.kwargs.get("p", 0.5), built_t.kwargs.get("training", True)
    if not training or p == 0.0:
        compare(ours, theirs)
    elif p == 1.0:
        compare(ours, theirs)


entry("dropout", _dropout, forms=("F",), check=_dropout_check, gradients=False, aliasing=False)


def _gumbel(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    kwargs = {}
    if g.chance(0.4):
        kwargs["tau"] = g.choice((1.0, 0.5))
    if g.chance(0.4):
        kwargs["hard"] = True
    if g.chance(0.4):
        kwargs["dim"] = g.dim(len(x.shape))
    return (x,), kwargs


entry("gumbel_softmax", _gumbel, forms=("F",), check=_meta_check, gradients=False, aliasing=False)


# -- deterministic factories ---------------------------------------------------------------------------------------

def _data(g):
    r = g.rng.random()
    if r < 0.2:
        return g.scalar()
    if r < 0.4:
        return [g.scalar(("float", "int")) for _ in range(g.int(0, 3))]
    if r < 0.55:
        return [[g.int(-3, 3) for _ in range(2)] for _ in range(g.int(0, 2))]
    if r < 0.65:
        return [g.chance(0.5) for _ in range(g.int(1, 3))]
    if r < 0.7:
        return [[1, 2], [3]]
    if r < 0.85:
        return g.rng.standard_normal(g.shape())
    return g.rng.integers(-3, 3, g.shape())


def _tensor_factory(g, form):
    kwargs = _factory_kwargs(g)
    if kwargs.get("requires_grad") and kwargs.get("dtype") is not None and kwargs["dtype"].name in (
            "int64", "int32", "bool") and g.chance(0.7):
        kwargs.pop("requires_grad")
    return (_data(g),), kwargs


entry("tensor", _tensor_factory, gradients=False, aliasing=False)


def _as_tensor(g, form):
    kwargs = _factory_kwargs(g)
    kwargs.pop("requires_grad", None)
    if g.chance(0.3):
        return (g.tensor(dtype=float_or(g, 0.3), grad=False),), kwargs
    return (_data(g),), kwargs


entry("as_tensor", _as_tensor, gradients=False, aliasing=False)
entry("asarray", _as_tensor, gradients=False, aliasing=False)
entry("from_numpy", lambda g, form: ((numpy.asarray(g.rng.standard_normal(g.shape())).astype(
    g.choice(("float64", "float32", "int64", "int32", "bool", "uint8"))),), {}), gradients=False, aliasing=False)


def _arange(g, form):
    r = g.rng.random()
    kwargs = _factory_kwargs(g, ("float32", "float64", "int64", "int32"))
    if kwargs.get("dtype") is not None and kwargs["dtype"].name in ("int64", "int32"):
        kwargs.pop("requires_grad", None)
    number = (lambda: g.int(-4, 6)) if g.chance(0.6) else (lambda: round(g.float(-4, 6), 2))
    if r < 0.3:
        return (number(),), kwargs
    if r < 0.6:
        return (number(), number()), kwargs
    step = g.choice((1, 2, -1, 0.5, -0.5, 0, 3, math.inf, math.nan))
    return (number(), number(), step), kwargs


entry("arange", _arange, gradients=False, aliasing=False)


def _linspace(g, form):
    kwargs = _factory_kwargs(g, ("float32", "float64", "int64"))
    if kwargs.get("dtype") is not None and kwargs["dtype"].name == "int64":
        kwargs.pop("requires_grad", None)
    args = (round(g.float(-3, 3), 2), round(g.float(-3, 3), 2), g.int(-1, 6))
    if form == "logspace" and g.chance(0.4):
        args = args + (g.choice((2.0, 10.0, 0.5)),)
    return args, kwargs


entry("linspace", _linspace, gradients=False, aliasing=False)
entry("logspace", lambda g, form: _linspace(g, "logspace"), gradients=False, aliasing=False)


def _eye(g, form):
    kwargs = _factory_kwargs(g)
    if kwargs.get("dtype") is not None and kwargs["dtype"].name in ("int64", "int32", "bool"):
        kwargs.pop("requires_grad", None)
    return ((g.int(-1, 4),) if g.chance(0.5) else (g.int(0, 4), g.int(-1, 4))), kwargs


entry("eye", _eye, gradients=False, aliasing=False)


def _new_factory(name):
    def draw(g, form):
        x = g.tensor(dtype=float_or(g, 0.3), grad=False)
        kwargs = {}
        if g.chance(0.3):
            kwargs["dtype"] = g.dtype()
        if name == "new_tensor":
            return (x, _data(g)), kwargs
        shape = g.shape()
        if name == "new_full":
            return (x, shape, g.scalar()), kwargs
        return ((x, shape) if g.chance(0.5) else (x, *shape)), kwargs
    return draw


for _name in ("new_tensor", "new_zeros", "new_ones", "new_full"):
    entry(_name, _new_factory(_name), forms=("method",), gradients=False, aliasing=False)
entry("new_empty", _new_factory("new_empty"), forms=("method",), check=_meta_check, gradients=False, aliasing=False)


# -- Tensor conversions and metadata ---------------------------------------------------------------------------------

def _plain(dtypes=0.3):
    return lambda g, form: ((g.tensor(dtype=float_or(g, dtypes, ("float32", "int64", "bool", "int32"))),), {})


for _name in ("float", "double", "half", "bfloat16", "int", "long", "short", "byte", "bool", "cpu", "contiguous",
              "detach", "clone"):
    if _name in ("clone",):
        continue
    entry(_name, _plain(), forms=("method",),
          check=None if _name not in ("half", "bfloat16") else _meta_check)


def _to(g, form):
    x = g.tensor(dtype=float_or(g, 0.3, ("float32", "int64", "bool")))
    r = g.rng.random()
    if r < 0.4:
        return (x, g.dtype(("float32", "float64", "int64", "bool", "int32"))), {}
    if r < 0.6:
        return (x, "cpu"), {}
    if r < 0.7:
        return (x,), {"dtype": g.dtype(("float32", "float64")), "copy": g.chance(0.5)}
    if r < 0.85:
        return (x, g.tensor((), dtype=g.choice(("float32", "int64")), grad=False)), {}
    return (x, "cpu", g.dtype(("float32", "float64"))), {}


entry("to", _to, forms=("method",))
entry("type_as", lambda g, form: ((g.tensor(), g.tensor((), dtype=g.choice(("float32", "int64", "float64")),
                                                           grad=False)), {}), forms=("method",))
entry("type", lambda g, form: ((g.tensor(dtype=float_or(g, 0.3)),) + (
    (g.dtype(("float32", "float64", "int64")),) if g.chance(0.5) else ()), {}), forms=("method",))


def _metadata(name, dim=True):
    def draw(g, form):
        x = g.tensor(dtype=float_or(g, 0.3))
        if dim and g.chance(0.5):
            return (x, g.dim(len(x.shape))), {}
        return (x,), {}
    return draw


entry("size", _metadata("size"), forms=("method",), gradients=False)


def _stride_check(ours, theirs, built_o, built_t):
    """Strides of the dims of more than one element (those of a size-1 dim, or of an empty tensor, are not
    meaningful: torch's and NumPy's differ)."""
    x = built_t.args[0]
    if x.numel() == 0:
        return False
    if isinstance(theirs, int):
        dim = built_t.args[1]
        if x.shape[dim] > 1 and ours != theirs:
            raise Mismatch(f"stride {ours} != torch's {theirs}")
        return False
    for n, a, b in zip(x.shape, ours, theirs):
        if n > 1 and a != b:
            raise Mismatch(f"strides {ours} != torch's {theirs}")
    return False


entry("stride", _metadata("stride"), forms=("method",), check=_stride_check, gradients=False)
for _name in ("dim", "ndimension", "numel", "nelement", "element_size", "is_contiguous", "is_floating_point",
              "get_device"):
    entry(_name, _metadata(_name, dim=False), forms=("method",), gradients=False)


def _item(g, form):
    return (g.tensor(g.choice(((), (1,), (1, 1), (2,), (0,))), dtype=float_or(g, 0.4)),), {}


entry("item", _item, forms=("method",), gradients=False)
entry("tolist", _plain(), forms=("method",), gradients=False)
entry("numpy", lambda g, form: ((g.tensor(dtype=float_or(g, 0.3), grad=g.chance(0.3)),), {}), forms=("method",),
      gradients=False, aliasing=False)
entry("__len__", _item, forms=("call",), call=lambda lib, x: len(x), covers=("Tensor.__len__",), gradients=False)
entry("__bool__", _item, forms=("call",), call=lambda lib, x: bool(x), covers=("Tensor.__bool__",), gradients=False)
entry("__float__", _item, forms=("call",), call=lambda lib, x: float(x), covers=("Tensor.__float__",),
      gradients=False)
entry("__int__", _item, forms=("call",), call=lambda lib, x: int(x), covers=("Tensor.__int__",), gradients=False)
entry("__index__", lambda g, form: ((g.tensor(g.choice(((), (1,), (2,))), dtype=g.choice(
    ("int64", "float64", "bool"))),), {}), forms=("call",), call=lambda lib, x: [10, 11, 12][x],
    covers=("Tensor.__index__",), gradients=False)
entry("__iter__", lambda g, form: ((g.tensor(),), {}), forms=("call",), call=lambda lib, x: list(x),
      covers=("Tensor.__iter__",))


def _written_value(x, value):
    """torch marks an integer tensor as requiring grad when an in-place op writes a value that requires grad
    into it (a tensor it otherwise refuses to let require grad): not matched."""
    if isinstance(value, T) and value.grad and x.dtype not in ("float64", "float32", "float16", "bfloat16"):
        raise Skip


def _fill(g, form):
    x = _nonleaf(g.tensor(dtype=float_or(g, 0.2)))
    value = g.scalar() if g.chance(0.7) else g.tensor(g.choice(((), (), (1,))))
    _written_value(x, value)
    return (x, value), {}


entry("fill_", _fill, forms=("call",), call=_method_call("fill_"), covers=("Tensor.fill_",))
entry("zero_", lambda g, form: ((_nonleaf(g.tensor()),), {}), forms=("call",), call=_method_call("zero_"),
      covers=("Tensor.zero_",))


def _copy(g, form):
    x = _nonleaf(g.tensor(dtype=float_or(g, 0.2)))
    src = g.tensor(g.broadcastable(x.shape, same=0.6), dtype=float_or(g, 0.2))
    return (x, src), {}


entry("copy_", _copy, forms=("call",), call=_method_call("copy_"), covers=("Tensor.copy_",))


def _detach_(lib, x):
    y = x * 1
    y.detach_()
    return y


entry("detach_", unary(dtypes=0), forms=("call",), call=_detach_, covers=("Tensor.detach_",), gradients=False)
entry("requires_grad_", lambda g, form: ((g.tensor(dtype=float_or(g, 0.3), grad=False),) + (
    (g.chance(0.5),) if g.chance(0.5) else ()), {}), forms=("call",), call=_method_call("requires_grad_"),
    covers=("Tensor.requires_grad_",), gradients=False, aliasing=False)


def _hook_call(lib, x):
    y = x * 2
    y.register_hook(lambda grad: grad * 3)
    return y


entry("register_hook", unary(dtypes=0), forms=("call",), call=_hook_call, covers=("Tensor.register_hook",))


def _retain_call(lib, x):
    y = x.exp()
    y.retain_grad()
    (y * y).sum().backward()
    return y.grad


entry("retain_grad", unary(dtypes=0), forms=("call",), call=_retain_call, covers=("Tensor.retain_grad",),
      gradients=False)


def _post_hook_call(lib, x):
    leaf = x.detach().clone().requires_grad_(True)
    seen = []
    leaf.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.clone()))
    (leaf * leaf).sum().backward()
    return seen


entry("register_post_accumulate_grad_hook", unary(dtypes=0), forms=("call",), call=_post_hook_call,
      covers=("Tensor.register_post_accumulate_grad_hook",), gradients=False, aliasing=False)


def _backward_call(lib, x, mode):
    y = (x * x).sin()
    if mode == 0:
        y.sum().backward()
    elif mode == 1:
        y.backward(lib.ones_like(y))
    else:
        y.backward()
    return x.grad if x.is_leaf else None


entry("backward", lambda g, form: ((g.tensor(g.choice(((), (2,), (2, 3), (1,)))), g.int(0, 2)), {}), forms=("call",),
      call=lambda lib, x, mode: _backward_call(lib, x, mode), covers=("Tensor.backward",), gradients=False,
      aliasing=False)


# -- random programs with in-place steps ----------------------------------------------------------------------------

PROGRAM_STEPS = (
    ("exp", lambda lib, a, b, k: a.exp()), ("sigmoid", lambda lib, a, b, k: a.sigmoid()),
    ("mul", lambda lib, a, b, k: a * b), ("add", lambda lib, a, b, k: a + b),
    ("div", lambda lib, a, b, k: a / (b * b + 1)), ("sum_keep", lambda lib, a, b, k: a.sum(-1, keepdim=True) + a),
    ("transpose", lambda lib, a, b, k: a.T), ("slice", lambda lib, a, b, k: a[:, ::2]),
    ("row", lambda lib, a, b, k: a[k % a.shape[0]]), ("view", lambda lib, a, b, k: a.view(-1)),
    ("clone", lambda lib, a, b, k: a.clone()), ("tanh", lambda lib, a, b, k: a.tanh()),
    ("softmax", lambda lib, a, b, k: a.softmax(-1)), ("pow", lambda lib, a, b, k: a ** 2),
    ("mul_", lambda lib, a, b, k: a.mul_(b)), ("add_", lambda lib, a, b, k: a.add_(b, alpha=0.5)),
    ("sub_", lambda lib, a, b, k: a.sub_(1.5)), ("div_", lambda lib, a, b, k: a.div_(2.0)),
    ("exp_", lambda lib, a, b, k: a.exp_()), ("sigmoid_", lambda lib, a, b, k: a.sigmoid_()),
    ("tanh_", lambda lib, a, b, k: a.tanh_()), ("relu_", lambda lib, a, b, k: a.relu_()),
    ("clamp_", lambda lib, a, b, k: a.clamp_(-0.5, 0.7)), ("zero_", lambda lib, a, b, k: a.zero_()),
    ("fill_", lambda lib, a, b, k: a.fill_(0.25)), ("copy_", lambda lib, a, b, k: a.copy_(b)),
    ("pow_", lambda lib, a, b, k: a.pow_(2)), ("sqrt_", lambda lib, a, b, k: a.abs().sqrt_()),
    ("setitem_row", lambda lib, a, b, k: _program_setitem(a, k % a.shape[0], b[0] if b.ndim else b)),
    ("setitem_mask", lambda lib, a, b, k: _program_setitem(a, a > 0, 0.5)),
    ("setitem_index", lambda lib, a, b, k: _program_setitem(a, lib.tensor([0, k % a.shape[0]]), 1.5)),
    ("view_mul_", lambda lib, a, b, k: a[:1].mul_(3.0)), ("t_view_add_", lambda lib, a, b, k: a.T[0].add_(1.0)),
    ("masked_fill_", lambda lib, a, b, k: a.masked_fill_(a < 0, -1.0)),
    ("index_put_", lambda lib, a, b, k: a.index_put_((lib.tensor([0, 0]),), a[0] * 0 + 2.0, accumulate=True)),
)


def _same_memory(a, b):
    """Whether torch tensors a and b (not one tensor) are views of one storage."""
    return a is not b and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _program_setitem(a, key, value):
    a[key] = value
    return a


def _program_draw(g, form):
    leaves = g.int(1, 3)
    values = [g.values((3, 4), "float64", g.choice(("normal", "normal", "ties", "special")))[0] for _ in range(leaves)]
    steps = [(g.int(0, len(PROGRAM_STEPS) - 1), g.int(0, 100), g.int(0, 100), g.int(0, 7))
             for _ in range(g.int(1, 10))]
    return values, steps, g.chance(0.5)


def _program_run(g, drawn, device):
    values, steps, leaf_inplace = drawn
    description = f"program/call:? steps={[PROGRAM_STEPS[s][0] for s, *_ in steps]}"
    pools = {}
    for lib in (torch, gpugrad):
        if lib is torch:
            leaves = [torch.tensor(v, requires_grad=True) for v in values]
        else:
            leaves = [gpugrad.tensor(v, device=device, requires_grad=True) for v in values]
        pools[lib] = (leaves, [leaf * 1 if not leaf_inplace or i else leaf for i, leaf in enumerate(leaves)])
    try:
        for index, (step, i, j, k) in enumerate(steps):
            name, function = PROGRAM_STEPS[step]
            results = {}
            for lib in (torch, gpugrad):
                pool = pools[lib][1]
                a, b = pool[i % len(pool)], pool[j % len(pool)]
                if b.shape != a.shape:
                    b = b.reshape(-1)[:1].reshape(()) if b.numel() else b.sum()
                if b is not a and _same_memory(pools[torch][1][i % len(pool)], pools[torch][1][j % len(pool)]):
                    # an operand that is a different view of the memory written: torch reads it while it
                    # writes (element order decides, or its overlap check gives up): not compared
                    b = b.clone()
                results[lib] = attempt(lambda: function(lib, a, b, k))
            (out_t, et), (out_o, eo) = results[torch], results[gpugrad]
            if compare_errors(eo, et, f"step {index} ({name})"):
                continue
            compare(out_o, out_t, f"step {index} ({name})")
            for lib, out in ((torch, out_t), (gpugrad, out_o)):
                pools[lib][1].append(out)
        for lib in (torch, gpugrad):
            pool = pools[lib][1]
            pools[lib] = pools[lib] + ([p for p in pool if p.requires_grad and p.is_floating_point()],)
        weights = [g.rng.standard_normal(tuple(p.shape)) for p in pools[torch][2]]
        _, et = attempt(lambda: torch.autograd.backward(pools[torch][2], [torch.from_numpy(w) for w in weights]))
        _, eo = attempt(lambda: gpugrad.autograd.backward(
            pools[gpugrad][2], [gpugrad.tensor(w, device=device) for w in weights]))
        if compare_errors(eo, et, "backward"):
            return None
        for n, (lo, lt) in enumerate(zip(pools[gpugrad][0], pools[torch][0])):
            if lt.grad is None and lo.grad is None:
                continue
            compare_arrays(numpy.zeros(lt.shape) if lo.grad is None else lo.grad.to("cpu").array,
                           numpy.zeros(lt.shape) if lt.grad is None else lt.grad.numpy(), "float64",
                           f"grad of leaf {n}")
    except Mismatch as mismatch:
        return f"{description}\n    {mismatch}"
    return None


def _program_entry():
    e = Entry("program", _program_draw, forms=("call",), program=None)
    e.program = lambda g, drawn, device: _program_run(g, drawn, device)
    return e


ENTRIES.append(_program_entry())


# -- what the table does not fuzz, and why ------------------------------------------------------------------------

_NOT_OPS = "not an op: a type, dtype, module or namespace (its behaviour is covered by the tests of its module)"
_STATE = "global state or configuration, not an op on tensors (tests/test_random.py, test_autograd_engine.py, ...)"
_INTERNAL = "gpugrad's autograd protocol (DESIGN.md: what the core calls on a Tensor), not torch API"
_IO = "input/output or interop, covered by tests/test_serialization.py and test_tensor.py"
_PRINTING = "printing and representation, covered by tests/test_tensor.py against torch's text"

# -- issue 27's tensor functions: atan2, diagonals, as_strided, meshgrid, scatters, searches, linalg ----------

# (no bool operands: torch's double backward negates a bool input and raises, gpugrad's computes in floats)
entry("atan2", binary(dtypes=0.0, scalar=0))
entry("arctan2", binary(dtypes=0.0, scalar=0))


def _diagonal(g, form):
    x = g.tensor(g.shape(min_ndim=2, max_ndim=4))
    n = len(x.shape)
    args = []
    if g.chance(0.8):
        args.append(g.int(-3, 3))
        if g.chance(0.7):
            d1 = g.dim(n)
            d2 = g.dim(n) if g.chance(0.95) else d1
            args += [d1, d2]
    return (x, *args), {}


entry("diagonal", _diagonal)


def _diag(g, form):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=2) if g.chance(0.95) else g.shape(min_ndim=3, max_ndim=3))
    return (x,) + ((g.int(-3, 3),) if g.chance(0.7) else ()), {}


entry("diag", _diag)
entry("diagflat", lambda g, form: ((g.tensor(), g.int(-2, 2)), {}))
entry("diag_embed", lambda g, form: ((g.tensor(g.shape(max_ndim=2)),) + ((g.int(-2, 2),) if g.chance(0.6) else ()),
                                     {}))
entry("trace", lambda g, form: ((g.tensor(g.shape(min_ndim=2, max_ndim=2) if g.chance(0.95) else g.shape()),), {}))


def _as_strided(g, form):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=3, empty=False), view=False)
    numel = int(numpy.prod(x.base.shape))
    size = tuple(g.int(0, 3) for _ in range(g.int(0, 3)))
    stride = tuple(g.int(0, 3) for _ in size)
    extent = sum((n - 1) * st for n, st in zip(size, stride)) if all(size) else 0
    offset = g.int(0, max(numel - 1 - extent, 0)) if g.chance(0.5) else None
    return (x, size, stride) + ((offset,) if offset is not None else ()), {}


# gradients: torch's as_strided backward and gpugrad's differ where the view's elements overlap (a stride of 0)
entry("as_strided", _as_strided, aliasing=False)


def _meshgrid(g, form):
    tensors = [g.tensor((g.int(0, 3),) if g.chance(0.9) else ()) for _ in range(g.int(1, 3))]
    return tuple(tensors), {"indexing": g.choice(("ij", "xy"))}


entry("meshgrid", _meshgrid, aliasing=False)


def _scatter_args(g, form, distinct=False):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=3, empty=False))
    n = len(x.shape)
    d = g.dim(n, wrong=0.0)
    shape = tuple(g.int(1, m) for m in x.shape)
    if distinct:        # one write per position: the result does not depend on which write wins
        dd = d % n
        count = x.shape[dd]
        shape = tuple(min(m, count) if i == dd else m for i, m in enumerate(shape))
        moved = [g.rng.permutation(count)[:shape[dd]] for _ in range(int(numpy.prod(shape)) // shape[dd])]
        index = numpy.moveaxis(numpy.array(moved).reshape(tuple(m for i, m in enumerate(shape) if i != dd)
                                                          + (shape[dd],)), -1, dd)
        index = T(index.astype("int64"), "int64", False, ("plain",), "index")
    else:
        index = g.index(shape, x.shape[d % n])
    src = g.tensor(shape)
    return x, d, index, src


def _scatter(g, form):
    x, d, index, src = _scatter_args(g, form, distinct=True)
    if g.chance(0.3):
        return (x, d, index), {"value": g.float()}
    return (x, d, index, src), {}


entry("scatter", _scatter)


def _scatter_add(g, form):
    x, d, index, src = _scatter_args(g, form)
    return (x, d, index, src), {}


entry("scatter_add", _scatter_add)


def _scatter_reduce(g, form):
    x, d, index, src = _scatter_args(g, form)
    kwargs = {"include_self": g.chance(0.5)} if g.chance(0.6) else {}
    return (x, d, index, src, g.choice(("sum", "prod", "mean", "amax", "amin"))), kwargs


entry("scatter_reduce", _scatter_reduce)


def _index_add(g, form):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=3, empty=False))
    n = len(x.shape)
    d = g.dim(n, wrong=0.0)
    count = g.int(0, 4)
    index = g.index((count,), x.shape[d % n])
    source = g.tensor(tuple(count if i == d % n else m for i, m in enumerate(x.shape)))
    return (x, d, index, source), ({"alpha": g.choice((2, -0.5))} if g.chance(0.3) else {})


entry("index_add", _index_add)


def _index_copy(g, form):
    x = g.tensor(g.shape(min_ndim=1, max_ndim=3, empty=False))
    n = len(x.shape)
    d = g.dim(n, wrong=0.0)
    size = x.shape[d % n]
    count = g.int(0, size)
    index = T(g.rng.permutation(size)[:count].astype("int64"), "int64", False, ("plain",), "index")
    source = g.tensor(tuple(count if i == d % n else m for i, m in enumerate(x.shape)))
    return (x, d, index, source), {}


entry("index_copy", _index_copy)


def _index_fill(g, form):
    # (no expanded tensor in place: torch's index_fill_ writes one of its aliased elements, gpugrad refuses)
    x = g.tensor(g.shape(min_ndim=1, max_ndim=3, empty=False), view=form != "inplace")
    n = len(x.shape)
    d = g.dim(n, wrong=0.0)
    index = g.index((g.int(0, 3),), x.shape[d % n])
    return (x, d, index, g.float()), {}


entry("index_fill", _index_fill)


def _masked_scatter(g, form):
    x = g.tensor(g.shape(min_ndim=1))
    mask = g.mask(g.broadcastable(x.shape, same=0.6))
    source = g.tensor((int(numpy.prod(x.shape)) + g.int(0, 2),))
    return (x, mask, source), {}


entry("masked_scatter", _masked_scatter)


def _unique(g, form):
    x = g.tensor(dtype=g.choice(("int64", "float64")), values="ties", grad=False)
    kwargs = {}
    for name in ("return_inverse", "return_counts"):
        if g.chance(0.5):
            kwargs[name] = True
    if g.chance(0.3) and len(x.shape):
        kwargs["dim"] = g.dim(len(x.shape), wrong=0.0)
    return (x,), kwargs


entry("unique", _unique, gradients=False)
entry("unique_consecutive", _unique, gradients=False)


def _searchsorted(g, form):
    n = g.int(0, 6)
    boundaries = T(numpy.sort(g.rng.integers(-3, 4, n)).astype("float64"), "float64", False, ("plain",), "ties")
    values = g.tensor(values="ties", grad=False)
    kwargs = {}
    if g.chance(0.4):
        kwargs["right"] = g.chance(0.5)
    if g.chance(0.2):
        kwargs["out_int32"] = True
    return (boundaries, values), kwargs


entry("searchsorted", _searchsorted, gradients=False)
entry("bucketize", lambda g, form: (lambda a: ((a[0][1], a[0][0]), a[1]))(_searchsorted(g, form)), gradients=False)


def _histc(g, form):
    x = g.tensor(g.shape(max_ndim=2), values=g.choice(("normal", "ties")), grad=False)
    args = [g.int(1, 6)]
    if g.chance(0.7):
        low = g.choice((-1.0, 0.0, 0.5))
        args += [low, low + g.choice((0.0, 1.0, 2.5))]
    return (x, *args), {}


entry("histc", _histc, gradients=False)


def _histogram(g, form):
    x = g.tensor((g.int(1, 8),), values=g.choice(("normal", "ties")), grad=False)
    kwargs = {}
    if g.chance(0.3):
        kwargs["range"] = (-1.0, 1.5)
    if g.chance(0.3):
        kwargs["density"] = True
    return (x, g.int(1, 5)), kwargs


entry("histogram", _histogram, gradients=False)


def _square(g, min_n=1):
    n = g.int(min_n, 4)
    batch = g.shape(max_ndim=1, empty=False)
    a = numpy.asarray(g.rng.standard_normal(batch + (n, n))) + 2.5 * numpy.eye(n)
    return T(a, "float64", True, ("plain",), "normal")


entry("det", lambda g, form: ((_square(g),), {}))
entry("logdet", lambda g, form: ((_square(g),), {}))
entry("slogdet", lambda g, form: ((_square(g),), {}))
entry("inverse", lambda g, form: ((_square(g),), {}))
entry("pinverse", lambda g, form: ((g.tensor(g.shape(min_ndim=2, max_ndim=2, empty=False), values="normal"),), {}))

# -- issue 27's layers: group/instance norm, transposed convolutions, interpolation, pixel shuffle, bags ----------

def _group_norm(g, form):
    groups = g.int(1, 3)
    c = groups * g.int(1, 2)
    shape = (g.int(1, 2), c) + tuple(g.int(1, 3) for _ in range(g.int(0, 2)))
    if g.chance(0.03):
        c += 1
        shape = (shape[0], c) + shape[2:]
    kwargs = {}
    # (plain weight and bias, and a bias only with a weight: torch's backward fails on an expanded bias,
    # and its second derivative without a weight)
    if g.chance(0.6):
        kwargs["weight"] = g.tensor((c,), values="normal", view=False)
        if g.chance(0.6):
            kwargs["bias"] = g.tensor((c,), values="normal", view=False)
    if g.chance(0.2):
        kwargs["eps"] = g.choice((1e-5, 0.1))
    return (g.tensor(shape, values=g.choice(("normal", "ties", "zeros"))), groups), kwargs


entry("group_norm", _group_norm, forms=("F",))


def _instance_norm(g, form):
    shape = (g.int(1, 2), g.int(1, 3)) + tuple(g.int(2, 3) for _ in range(g.int(1, 2)))
    c = shape[1]
    kwargs = {}
    # finite weights and statistics: the composed backward's inf and nan are not placed as torch's fused one's
    if g.chance(0.4):
        kwargs["weight"] = g.tensor((c,), values="normal")
        kwargs["bias"] = g.tensor((c,), values="normal")
    if g.chance(0.4):
        kwargs["running_mean"] = g.tensor((c,), values="normal", grad=False, view=False)
        kwargs["running_var"] = g.tensor((c,), values="positive", grad=False, view=False)
        if g.chance(0.3):
            kwargs["use_input_stats"] = False
        if g.chance(0.3):
            kwargs["momentum"] = 0.5
    return (g.tensor(shape, values=g.choice(("normal", "ties"))),), kwargs


entry("instance_norm", _instance_norm, forms=("F",))


def _conv_transpose(g, form, spatial):
    groups = g.choice((1, 1, 2))
    c = groups * g.int(1, 2)
    out = g.int(1, 2)
    size = tuple(g.int(1, 4) for _ in range(spatial))
    kernel = tuple(g.int(1, 3) for _ in range(spatial))
    x = g.tensor((g.int(1, 2), c) + size if g.chance(0.85) else (c,) + size)
    weight = g.tensor((c, out) + kernel, view=False)    # (torch's double backward wants it contiguous)
    kwargs = {}
    stride = g.int(1, 3)
    dilation = g.choice((1, 1, 2))
    if g.chance(0.5):
        kwargs["bias"] = g.tensor((out * groups,))
    if stride > 1 or g.chance(0.2):
        kwargs["stride"] = stride
    if g.chance(0.4):
        kwargs["padding"] = g.int(0, 1)
    if g.chance(0.4):
        kwargs["output_padding"] = g.int(0, max(stride, dilation) - 1) if g.chance(0.95) else max(stride, dilation)
    if dilation > 1:
        kwargs["dilation"] = dilation
    if groups > 1:
        kwargs["groups"] = groups
    return (x, weight), kwargs


entry("conv_transpose2d", lambda g, form: _conv_transpose(g, form, 2), forms=("F",))
entry("conv_transpose1d", lambda g, form: _conv_transpose(g, form, 1), forms=("F",))


def _interpolate(g, form):
    mode = g.choice(("nearest", "nearest", "nearest-exact", "bilinear", "linear"))
    spatial = {"bilinear": 2, "linear": 1}.get(mode, g.int(1, 2))
    # (finite values for the linear modes: where a weight is 0, torch's kernels give inf or nan as their code
    # path has it, 1-D and 2-D differently)
    x = g.tensor((g.int(1, 2), g.int(1, 2)) + tuple(g.int(1, 5) for _ in range(spatial)),
                 **({"values": "normal"} if "linear" in mode else {}))
    kwargs = {"mode": mode}
    if g.chance(0.5):
        kwargs["size"] = tuple(g.int(1, 7) for _ in range(spatial)) if spatial > 1 or g.chance(0.5) else g.int(1, 7)
    else:
        kwargs["scale_factor"] = g.choice((2, 0.5, 1.5, 3, 2.25, 0.7))
        if g.chance(0.2):
            kwargs["recompute_scale_factor"] = True
    if mode in ("bilinear", "linear") and g.chance(0.6):
        kwargs["align_corners"] = g.chance(0.5)
    return (x,), kwargs


entry("interpolate", _interpolate, forms=("F",))
entry("upsample", lambda g, form: (lambda a: (a[0], {k: v for k, v in a[1].items()
                                                     if k != "recompute_scale_factor"}))(_interpolate(g, form)),
      forms=("F",))
entry("upsample_nearest", lambda g, form: ((g.tensor((1, 2, g.int(1, 3), g.int(1, 3))),), {"scale_factor": 2}),
      forms=("F",))
entry("upsample_bilinear", lambda g, form: ((g.tensor((1, 2, g.int(1, 3), g.int(1, 3))),), {"size": g.int(1, 5)}),
      forms=("F",))


def _pixel_shuffle(g, form):
    r = g.int(1, 3)
    c = r * r * g.int(1, 2) + (1 if g.chance(0.03) else 0)
    # (no empty batch: torch's backward of an empty shuffle fails)
    return (g.tensor(g.shape(max_ndim=1, empty=False) + (c, g.int(1, 3), g.int(1, 3))), r), {}


entry("pixel_shuffle", _pixel_shuffle, forms=("F",))


def _pixel_unshuffle(g, form):
    r = g.int(1, 3)
    return (g.tensor(g.shape(max_ndim=1, empty=False) + (g.int(1, 2), r * g.int(1, 2), r * g.int(1, 2))), r), {}


entry("pixel_unshuffle", _pixel_unshuffle, forms=("F",))


def _embedding_bag(g, form):
    rows, dim = g.int(1, 5), g.int(1, 3)
    weight = g.tensor((rows, dim), view=False)
    mode = g.choice(("sum", "mean", "max"))
    kwargs = {"mode": mode}
    # (indices in range: torch's embedding_bag reads out of bounds, and may crash, on a bad one)
    if g.chance(0.5):
        index = g.index((g.int(1, 3), g.int(1, 3)), rows, wrong=0.0)
        offsets = None
    else:
        count = g.int(0, 6)
        index = g.index((count,), rows, wrong=0.0)
        starts = numpy.sort(g.rng.integers(0, count + 1, g.int(1, 3)))
        starts[0] = 0
        if g.chance(0.3):       # the end appended (torch reads out of bounds without it)
            kwargs["include_last_offset"] = True
            starts = numpy.append(starts, count)
        offsets = T(starts.astype("int64"), "int64", False, ("plain",), "index")
    if mode == "sum" and g.chance(0.3):
        kwargs["per_sample_weights"] = g.tensor(tuple(index.base.shape))
    if g.chance(0.2):
        kwargs["padding_idx"] = g.int(0, rows - 1)
    return (index, weight, offsets), kwargs


# (no second derivatives: torch has none for per_sample_weights, and max's is of a selection)
entry("embedding_bag", _embedding_bag, forms=("F",))


def _signs(g, shape):
    t = g.tensor(shape, grad=False)
    t.base = g.rng.choice([-1.0, 1.0, 0.0], t.base.shape, p=[0.45, 0.45, 0.1])
    return t


def _cosine_embedding(g, form):
    batched = g.chance(0.8)
    shape = (g.int(0, 3), g.int(1, 4)) if batched else (g.int(1, 4),)
    kwargs = _reduction(g)
    if g.chance(0.5):
        kwargs["margin"] = g.choice((0.0, 0.5, -0.2))
    # (normal values: near a zero vector the squared norm is torch's 1e-12, whose second derivatives round apart)
    return (g.tensor(shape, values="normal"), g.tensor(shape, values="normal"),
            _signs(g, shape[:1] if batched else ())), kwargs


entry("cosine_embedding_loss", _cosine_embedding, forms=("F",))


def _margin_ranking(g, form):
    shape = g.shape(min_ndim=1)
    kwargs = _reduction(g)
    if g.chance(0.5):
        kwargs["margin"] = g.choice((0.0, 0.5))
    return (g.tensor(shape), g.tensor(shape), _signs(g, shape)), kwargs


entry("margin_ranking_loss", _margin_ranking, forms=("F",))


def _triplet(g, form):
    shape = (g.int(1, 3), g.int(1, 4)) if g.chance(0.8) else (g.int(1, 4),)
    kwargs = _reduction(g)
    if g.chance(0.4):
        kwargs["p"] = g.choice((1.0, 2.0, 3.0))
    if g.chance(0.3):
        kwargs["swap"] = True
    if g.chance(0.3):
        kwargs["margin"] = g.choice((0.5, 2.0, 0.0))
    return (g.tensor(shape), g.tensor(shape), g.tensor(shape)), kwargs


entry("triplet_margin_loss", _triplet, forms=("F",))


def _poisson_nll(g, form):
    shape = g.shape()
    kwargs = _reduction(g)
    log_input = g.chance(0.6)
    if not log_input:
        kwargs["log_input"] = False
    if g.chance(0.4):
        kwargs["full"] = True
    x = g.tensor(shape, values="normal" if log_input else "positive")
    target = g.tensor(shape, grad=g.chance(0.3))
    target.base = g.rng.poisson(2.0, target.base.shape).astype("float64")
    return (x, target), kwargs


entry("poisson_nll_loss", _poisson_nll, forms=("F",))


def _gaussian_nll(g, form):
    shape = (g.int(1, 3), g.int(1, 4))
    var_shape = g.choice((shape, shape[:1], (shape[0], 1), (1, shape[1])))
    kwargs = {"reduction": g.choice(("mean", "sum", "none"))} if g.chance(0.6) else {}
    if g.chance(0.4):
        kwargs["full"] = True
    if g.chance(0.3):
        kwargs["eps"] = g.choice((1e-6, 0.5))
    return (g.tensor(shape), g.tensor(shape, grad=g.chance(0.4)), g.tensor(var_shape, values="positive")), kwargs


entry("gaussian_nll_loss", _gaussian_nll, forms=("F",))


def _multilabel_soft_margin(g, form):
    shape = (g.int(1, 3), g.int(1, 4)) if g.chance(0.8) else (g.int(1, 4),)
    kwargs = _reduction(g)
    if g.chance(0.3):
        kwargs["weight"] = g.tensor(shape[-1:], values="positive", grad=False)
    return (g.tensor(shape), g.tensor(shape, values="unit", grad=g.chance(0.3))), kwargs


entry("multilabel_soft_margin_loss", _multilabel_soft_margin, forms=("F",))


def _ctc(g, form):
    unbatched = g.chance(0.15)
    steps, count, classes = g.int(1, 5), 1 if unbatched else g.int(1, 3), g.int(2, 4)
    input_lengths = tuple(g.int(0, steps + (1 if g.chance(0.03) else 0)) for _ in range(count))
    target_lengths = tuple(g.int(0, 3) for _ in range(count))     # (some longer than their inputs: inf losses)
    if g.chance(0.5):
        targets = g.index((count, max(target_lengths) + g.int(0, 1)), classes, wrong=0)
    else:
        targets = g.index((sum(target_lengths),), classes, wrong=0)
    kwargs = _reduction(g)
    if g.chance(0.5):
        kwargs["blank"] = g.int(0, classes - 1)
    if g.chance(0.4):
        kwargs["zero_infinity"] = True
    x = g.tensor((steps, classes) if unbatched else (steps, count, classes), values="normal")
    return (x, targets, input_lengths, target_lengths), kwargs


entry("ctc_loss", _ctc, forms=("F",))


def _prelu(g, form):
    shape = g.shape()
    channels = shape[1] if len(shape) >= 2 else 1
    count = g.choice((1, channels)) if g.chance(0.97) else channels + 1
    return (g.tensor(shape), g.tensor((count,) if g.chance(0.9) else (), values="normal")), {}


entry("prelu", _prelu, forms=("F",))


def _cdist(g, form):
    batch = g.shape(max_ndim=1)
    m = g.int(1, 3)
    # (finite values: torch's cdist kernels treat nan and inf apart from its norms; and its matrix-product form
    # rounds apart)
    x1 = g.tensor(batch + (g.int(1, 4), m), values=g.choice(("normal", "ties")))
    x2 = g.tensor(batch + (g.int(1, 4), m if g.chance(0.97) else m + 1), values=g.choice(("normal", "ties")))
    kwargs = {"compute_mode": "donot_use_mm_for_euclid_dist"}
    if g.chance(0.6):
        kwargs["p"] = g.choice((1.0, 2.0, 3.0, 0.0, math.inf, 0.5))
    return (x1, x2), kwargs


entry("cdist", _cdist)
# (no p=0: torch's backward of it fails)
entry("dist", lambda g, form: ((g.tensor(g.shape()), g.tensor(g.shape(max_ndim=1))),
                               {"p": g.choice((2, 1, math.inf, 3.0))} if g.chance(0.5) else {}))

EXCLUDED = {}
for _name in ("BFloat16Tensor", "BoolTensor", "ByteTensor", "DoubleTensor", "FloatTensor", "HalfTensor", "IntTensor",
              "LongTensor", "ShortTensor", "Generator", "Size", "Tensor", "autocast", "device", "finfo", "iinfo",
              "no_grad", "enable_grad", "inference_mode",
              "set_grad_enabled"):
    EXCLUDED[f"gpugrad.{_name}"] = _NOT_OPS
for _name in ("get_default_device", "set_default_device", "get_default_dtype", "set_default_dtype", "manual_seed",
              "seed", "initial_seed", "get_rng_state", "set_rng_state", "is_grad_enabled", "is_inference_mode_enabled",
              "get_autocast_dtype", "is_autocast_enabled", "set_printoptions", "promote_types", "result_type",
              "get_float32_matmul_precision", "set_float32_matmul_precision", "get_num_threads", "set_num_threads"):
    EXCLUDED[f"gpugrad.{_name}"] = _STATE
for _name in ("save", "load", "from_dlpack"):
    EXCLUDED[f"gpugrad.{_name}"] = _IO
for _name in ("alias", "become_view_of", "gradient_edge", "increment_version",
              "leaf_hooks", "post_accumulate_hooks", "set_history", "view_chain"):
    EXCLUDED[f"Tensor.{_name}"] = _INTERNAL
for _name in ("data_ptr", "cuda", "__dlpack__", "__dlpack_device__", "__array__", "__reduce_ex__", "__deepcopy__"):
    EXCLUDED[f"Tensor.{_name}"] = _IO
for _name in ("__repr__", "__format__"):
    EXCLUDED[f"Tensor.{_name}"] = _PRINTING
EXCLUDED["gpugrad.compile"] = "torch.compile's stand-in (returns the function), not an op"
EXCLUDED["gpugrad.is_tensor"] = "a type test, not an op"
EXCLUDED["gpugrad.is_floating_point"] = "a dtype test, not an op (Tensor.is_floating_point is a property of the tensor)"


def covered():
    names = set()
    for e in ENTRIES:
        names |= e.covered()
    return names


# entries whose comparison needs the host: the device of their result is the point (cpu(), numpy(), ...)
HOST_ONLY = {"cpu", "numpy", "get_device", "to", "from_numpy", "data_ptr", "type"}
