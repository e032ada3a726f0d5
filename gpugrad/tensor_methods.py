"""Tensor's op methods, bound from the ops (DESIGN.md: the one late binding).

``tensor.py`` holds the Tensor's state and protocol and cannot import the ops
(they import it); this module, imported once by ``gpugrad/__init__.py``,
sets each method on the class from the tables below.  A method is the public
function itself wherever the tensor is its first argument (``x.exp()`` is
``gpugrad.exp(x)``: one docstring, one implementation); operators with the
tensor on the right and the in-place forms are made here from those.
"""

from gpugrad import backend, dims, dtypes, random, validation
from gpugrad.autograd import engine, inplace
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.creation import new_empty, new_full, new_ones, new_tensor, new_zeros
from gpugrad.cuda import errors as device_errors
from gpugrad.ops import decomposition, linalg, reduction, scatter, search, shape
from gpugrad.ops import elementwise as ew
from gpugrad.ops.fused.logsumexp import logsumexp
from gpugrad.ops.fused.softmax import log_softmax, softmax
from gpugrad.tensor import Tensor, parse_to

# method name -> function(self, ...)
METHODS = {
    # arithmetic
    "add": ew.add,
    "sub": ew.sub,
    "subtract": ew.sub,
    "mul": ew.mul,
    "multiply": ew.mul,
    "div": ew.div,
    "divide": ew.div,
    "true_divide": ew.div,
    "floor_divide": ew.floor_divide,
    "remainder": ew.remainder,
    "fmod": ew.fmod,
    "pow": ew.pow,
    "neg": ew.neg,
    "negative": ew.neg,
    "abs": ew.abs,
    "absolute": ew.abs,
    "sign": ew.sign,
    "floor": ew.floor,
    "ceil": ew.ceil,
    "round": ew.round,
    "trunc": ew.trunc,
    "fix": ew.trunc,
    "frac": ew.frac,
    "exp": ew.exp,
    "exp2": ew.exp2,
    "log": ew.log,
    "log2": ew.log2,
    "log10": ew.log10,
    "log1p": ew.log1p,
    "expm1": ew.expm1,
    "sqrt": ew.sqrt,
    "rsqrt": ew.rsqrt,
    "square": ew.square,
    "reciprocal": ew.reciprocal,
    "atan2": ew.atan2,
    "arctan2": ew.atan2,
    "sin": ew.sin,
    "cos": ew.cos,
    "tan": ew.tan,
    "atan": ew.atan,
    "arctan": ew.atan,
    "sinh": ew.sinh,
    "cosh": ew.cosh,
    "tanh": ew.tanh,
    "sigmoid": ew.sigmoid,
    "relu": ew.relu,
    "erf": ew.erf,
    "clamp": ew.clamp,
    "clip": ew.clamp,
    "clamp_min": ew.clamp_min,
    "clamp_max": ew.clamp_max,
    "maximum": ew.maximum,
    "minimum": ew.minimum,
    "fmax": ew.fmax,
    "fmin": ew.fmin,
    "masked_fill": ew.masked_fill,
    "lerp": ew.lerp,
    "nan_to_num": ew.nan_to_num,
    "clone": ew.clone,
    # comparison and logic
    "eq": ew.eq,
    "ne": ew.ne,
    "lt": ew.lt,
    "le": ew.le,
    "gt": ew.gt,
    "ge": ew.ge,
    "greater": ew.gt,
    "greater_equal": ew.ge,
    "less": ew.lt,
    "less_equal": ew.le,
    "not_equal": ew.ne,
    "isnan": ew.isnan,
    "isinf": ew.isinf,
    "isfinite": ew.isfinite,
    "isposinf": ew.isposinf,
    "isneginf": ew.isneginf,
    "isclose": ew.isclose,
    "allclose": ew.allclose,
    "equal": ew.equal,
    "logical_not": ew.logical_not,
    "logical_and": ew.logical_and,
    "logical_or": ew.logical_or,
    "logical_xor": ew.logical_xor,
    "bitwise_not": ew.bitwise_not,
    "bitwise_and": ew.bitwise_and,
    "bitwise_or": ew.bitwise_or,
    "bitwise_xor": ew.bitwise_xor,
    "nonzero": ew.nonzero,
    "argwhere": ew.argwhere,
    # reductions and scans
    "sum": reduction.sum,
    "mean": reduction.mean,
    "prod": reduction.prod,
    "max": reduction.max,
    "min": reduction.min,
    "amax": reduction.amax,
    "amin": reduction.amin,
    "argmax": reduction.argmax,
    "argmin": reduction.argmin,
    "any": reduction.any,
    "all": reduction.all,
    "var": reduction.var,
    "std": reduction.std,
    "norm": reduction.norm,
    "count_nonzero": reduction.count_nonzero,
    "cumsum": reduction.cumsum,
    "cumprod": reduction.cumprod,
    "sort": reduction.sort,
    "argsort": reduction.argsort,
    "topk": reduction.topk,
    "kthvalue": reduction.kthvalue,
    "median": reduction.median,
    "sum_to_size": reduction.sum_to_size,
    "logsumexp": logsumexp,
    "softmax": softmax,
    "log_softmax": log_softmax,
    # shape
    "view": shape.view,
    "view_as": shape.view_as,
    "reshape_as": shape.reshape_as,
    "flatten": shape.flatten,
    "unflatten": shape.unflatten,
    "transpose": shape.transpose,
    "swapaxes": shape.transpose,
    "swapdims": shape.transpose,
    "t": shape.t,
    "movedim": shape.movedim,
    "moveaxis": shape.movedim,
    "squeeze": shape.squeeze,
    "unsqueeze": shape.unsqueeze,
    "expand": shape.expand,
    "expand_as": shape.expand_as,
    "split": shape.split,
    "chunk": shape.chunk,
    "tensor_split": shape.tensor_split,
    "unbind": shape.unbind,
    "gather": shape.gather,
    "take_along_dim": shape.take_along_dim,
    "index_select": shape.index_select,
    "masked_select": shape.masked_select,
    "narrow": shape.narrow,
    "select": shape.select,
    "fliplr": shape.fliplr,
    "flipud": shape.flipud,
    "roll": shape.roll,
    "tril": shape.tril,
    "triu": shape.triu,
    "repeat": shape.repeat,
    "repeat_interleave": shape.repeat_interleave,
    "__getitem__": shape.getitem,
    "diagonal": shape.diagonal,
    "diag": shape.diag,
    "diag_embed": shape.diag_embed,
    "trace": shape.trace,
    "as_strided": shape.as_strided,
    "scatter": scatter.scatter,
    "scatter_add": scatter.scatter_add,
    "scatter_reduce": scatter.scatter_reduce,
    "index_add": scatter.index_add,
    "index_copy": scatter.index_copy,
    "index_fill": scatter.index_fill,
    "masked_scatter": scatter.masked_scatter,
    "unique": search.unique,
    "unique_consecutive": search.unique_consecutive,
    "histc": search.histc,
    "histogram": search.histogram,
    "det": decomposition.det,
    "dist": decomposition.dist,
    "logdet": decomposition.logdet,
    "slogdet": decomposition.slogdet,
    "inverse": decomposition.inv,
    "pinverse": decomposition.pinv,
    # linear algebra
    "matmul": linalg.matmul,
    "mm": linalg.mm,
    "bmm": linalg.bmm,
    "mv": linalg.mv,
    "dot": linalg.dot,
    "inner": linalg.inner,
    "outer": linalg.outer,
    "ger": linalg.outer,
    "addmm": linalg.addmm,
    # factories on a tensor's dtype and device
    "new_tensor": new_tensor,
    "new_zeros": new_zeros,
    "new_ones": new_ones,
    "new_empty": new_empty,
    "new_full": new_full,
}


def _sizes_method(function, name, argument):
    """The method form of a function taking one sequence: the method takes ints too (``x.permute(1, 0)``)."""
    def method(self, *sizes):
        return function(self, dims.method_sizes(sizes, name, argument))
    method.__name__ = name
    method.__doc__ = function.__doc__
    return method


# method name -> function(self, sequence), the method also taking the sequence as ints
SIZES_METHODS = {
    "reshape": (shape.reshape, "shape"),
    "permute": (shape.permute, "dims"),
    "flip": (shape.flip, "dims"),
    "tile": (shape.tile, "dims"),
    "broadcast_to": (shape.broadcast_to, "size"),
}


def _positive(self):
    if self.dtype == dtypes.bool_:
        raise RuntimeError("The `+` operator, on a bool tensor is not supported.")
    return self


def _invert(self):
    if dtypes.is_floating_point(self.dtype):
        raise TypeError("~ (operator.invert) is only implemented on integer and Boolean-type tensors")
    return ew.bitwise_not(self)


def _reflected(function):
    def method(self, other):
        return function(other, self)
    method.__name__ = f"r{function.__name__}"
    method.__doc__ = f"``other {function.__name__} self`` (the reflected operator of {function.__name__})."
    return method


def _bitwise_operator(function):
    def method(self, other):
        if not isinstance(other, (Tensor, bool, int)):
            return NotImplemented
        return function(self, other)
    method.__doc__ = function.__doc__
    return method


def _comparison(function):
    def method(self, other):
        return function(self, other)
    method.__doc__ = function.__doc__
    return method


OPERATORS = {
    "__add__": ew.add,
    "__radd__": _reflected(ew.add),
    "__sub__": ew.sub,
    "__rsub__": _reflected(ew.sub),
    "__mul__": ew.mul,
    "__rmul__": _reflected(ew.mul),
    "__truediv__": ew.div,
    "__rtruediv__": _reflected(ew.div),
    "__floordiv__": ew.floor_divide,
    "__rfloordiv__": _reflected(ew.floor_divide),
    "__mod__": ew.remainder,
    "__rmod__": _reflected(ew.remainder),
    "__pow__": ew.pow,
    "__rpow__": _reflected(ew.pow),
    "__matmul__": linalg.matmul,
    "__rmatmul__": _reflected(linalg.matmul),
    "__neg__": ew.neg,
    "__abs__": ew.abs,
    "__eq__": _comparison(ew.eq),
    "__ne__": _comparison(ew.ne),
    "__lt__": ew.lt,
    "__le__": ew.le,
    "__gt__": ew.gt,
    "__ge__": ew.ge,
    "__and__": _bitwise_operator(ew.bitwise_and),
    "__rand__": _bitwise_operator(ew.bitwise_and),
    "__or__": _bitwise_operator(ew.bitwise_or),
    "__ror__": _bitwise_operator(ew.bitwise_or),
    "__xor__": _bitwise_operator(ew.bitwise_xor),
    "__rxor__": _bitwise_operator(ew.bitwise_xor),
    "__lshift__": ew.bitwise_left_shift,
    "__rshift__": ew.bitwise_right_shift,
    "__invert__": _invert,
}


def _in_place(function, any_cast=False):
    def method(self, *args, **kwargs):
        return inplace.apply(self, function, args, kwargs, any_cast=any_cast)
    method.__name__ = f"{function.__name__}_"
    method.__doc__ = f"In-place ``{function.__name__}``: writes the result into this tensor and returns it."
    return method


# in-place method name -> the out-of-place function it writes back
IN_PLACE = {
    "add_": ew.add,
    "sub_": ew.sub,
    "subtract_": ew.sub,
    "mul_": ew.mul,
    "multiply_": ew.mul,
    "div_": ew.div,
    "divide_": ew.div,
    "true_divide_": ew.div,
    "floor_divide_": ew.floor_divide,
    "remainder_": ew.remainder,
    "fmod_": ew.fmod,
    "pow_": ew.pow,
    "neg_": ew.neg,
    "negative_": ew.neg,
    "abs_": ew.abs,
    "sign_": ew.sign,
    "floor_": ew.floor,
    "ceil_": ew.ceil,
    "round_": ew.round,
    "trunc_": ew.trunc,
    "frac_": ew.frac,
    "exp_": ew.exp,
    "log_": ew.log,
    "log2_": ew.log2,
    "log10_": ew.log10,
    "log1p_": ew.log1p,
    "expm1_": ew.expm1,
    "sqrt_": ew.sqrt,
    "rsqrt_": ew.rsqrt,
    "square_": ew.square,
    "reciprocal_": ew.reciprocal,
    "sin_": ew.sin,
    "cos_": ew.cos,
    "tan_": ew.tan,
    "atan_": ew.atan,
    "tanh_": ew.tanh,
    "sigmoid_": ew.sigmoid,
    "relu_": ew.relu,
    "erf_": ew.erf,
    "clamp_": ew.clamp,
    "clip_": ew.clamp,
    "clamp_min_": ew.clamp_min,
    "clamp_max_": ew.clamp_max,
    "masked_fill_": ew.masked_fill,
    "lerp_": ew.lerp,
    "maximum_": ew.maximum,
    "minimum_": ew.minimum,
    "bitwise_and_": ew.bitwise_and,
    "bitwise_or_": ew.bitwise_or,
    "bitwise_xor_": ew.bitwise_xor,
    "tril_": shape.tril,
    "triu_": shape.triu,
    "logical_not_": ew.logical_not,
    "atan2_": ew.atan2,
    "arctan2_": ew.atan2,
    "scatter_": scatter.scatter,
    "scatter_add_": scatter.scatter_add,
    "scatter_reduce_": scatter.scatter_reduce,
    "index_add_": scatter.index_add,
    "index_copy_": scatter.index_copy,
    "index_fill_": scatter.index_fill,
    "masked_scatter_": scatter.masked_scatter,
    "__iadd__": ew.add,
    "__isub__": ew.sub,
    "__imul__": ew.mul,
    "__itruediv__": ew.div,
    "__ifloordiv__": ew.floor_divide,
    "__imod__": ew.remainder,
    "__ipow__": ew.pow,
    "__iand__": ew.bitwise_and,
    "__ior__": ew.bitwise_or,
    "__ixor__": ew.bitwise_xor,
    "__ilshift__": ew.bitwise_left_shift,
    "__irshift__": ew.bitwise_right_shift,
}


# -- methods whose argument order or behaviour differs from a public function ----------------

def where(self, condition, other):
    """``condition ? self : other`` (torch's Tensor.where)."""
    return ew.where(condition, self, other)


def to(self, *args, **kwargs):
    """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``;
    returns self when nothing changes (``copy=True`` always copies).  Differentiable."""
    device, dtype = parse_to(args, kwargs)
    target_device = self.device if device is None else backend.as_device(device)
    target_dtype = self.dtype if dtype is None else dtypes.as_dtype(dtype)
    if target_device == self.device and target_dtype == self.dtype and not kwargs.get("copy", False):
        return self
    out = ew.ToCopy.apply(self, target_dtype, target_device)
    if self.is_cuda and target_device.type == "cpu":    # a copy to the host is a synchronising read
        device_errors.raise_recorded(self.device.index)
    return out


def contiguous(self, memory_format=None):
    """self when its memory is C-contiguous, else a contiguous copy (differentiable)."""
    return self if self.array.flags.c_contiguous else ew.clone(self)


def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Compute the gradient of this tensor w.r.t. the graph's leaves and add
    it to their ``.grad``.  ``gradient`` is required unless the tensor holds
    a single element."""
    engine.backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph, inputs=inputs)


def __setitem__(self, key, value):
    """``x[key] = value``: in place (every alias and view sees it); recorded
    for autograd like torch's index_put_ / copy_ on the view x[key]."""
    key, advanced = shape.convert_key(self, key)
    if isinstance(value, Tensor) and value.ndim and value.shape[0] == 1:
        # torch drops the value's leading dims of size 1 (x[0] = v of shape (1, n) writes a row of n)
        lead = next((d for d, n in enumerate(value.shape) if n != 1), value.ndim)
        value = value.reshape(tuple(value.shape[lead:]))
    if self.array.size and inplace.overlaps(self.array):       # expanded: the written region must not be
        target = None if advanced else self.array[key]
        if target is None or target.size and inplace.overlaps(target):
            raise RuntimeError(inplace.OVERLAP)
    if not is_grad_enabled() or not (self.requires_grad or isinstance(value, Tensor) and value.requires_grad):
        if isinstance(value, Tensor):
            value = value.to(device=self.device).array
        elif backend.is_array(value):
            value = backend.to_device(value, self.device)
        shape.put_values(self.array, key, value)
        self.increment_version()
        return
    if advanced:
        inplace.apply(self, shape.index_put, (key, value))
        return
    view = shape.GetItem.apply(self, key, False)
    inplace.apply(view, ew.copy_from, (value,), any_cast=True)


def index_put_(self, indices, values, accumulate=False):
    return inplace.apply(self, shape.index_put, (tuple(indices), values), {"accumulate": accumulate})


def index_put(self, indices, values, accumulate=False):
    return shape.index_put(self, tuple(indices), values, accumulate)


def copy_(self, src, non_blocking=False):
    """Copy ``src`` (broadcast, cast, moved across devices) into self; returns self."""
    return inplace.apply(self, ew.copy_from, (src,), any_cast=True)


def fill_(self, value):
    """Fill self with ``value`` (a number or a 0-d tensor); returns self."""
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with {value.ndim} "
                           "dimensions.")
    # every element gets one value: torch writes an expanded tensor, unless the value is differentiable
    differentiable = is_grad_enabled() and isinstance(value, Tensor) and value.requires_grad
    if isinstance(value, Tensor) and not differentiable:
        value = value.item()         # read first, as torch does (no overlap with the tensor written)
    return inplace.apply(self, ew.copy_from, (value,), any_cast=True, overlap_ok=not differentiable)


def zero_(self):
    """Fill self with zeros; returns self."""
    return fill_(self, 0)


def uniform_(self, from_=0.0, to=1.0, *, generator=None):
    """Fill self with uniform samples in [from_, to)."""
    validation.floating_only("check_uniform_bounds", self.dtype)
    if from_ > to:
        raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={from_} > to={to}")
    g = random.generator_for(self.device, generator)
    return inplace.apply(self, ew.copy_from, (Tensor._make(g.uniform(self.shape, from_, to, self.dtype)),),
                         any_cast=True)


def normal_(self, mean=0.0, std=1.0, *, generator=None):
    """Fill self with normal samples."""
    for value, name, position in ((mean, "mean", 1), (std, "std", 2)):
        if isinstance(value, Tensor) and value.ndim:    # a 0-d tensor reads as its number
            raise TypeError(f"normal_(): argument '{name}' (position {position}) must be float, not Tensor")
    mean, std = (float(v) if isinstance(v, Tensor) else v for v in (mean, std))
    if self.numel():
        validation.floating_only("normal_kernel_cpu", self.dtype)
    random.check_std(std)
    g = random.generator_for(self.device, generator)
    return inplace.apply(self, ew.copy_from, (Tensor._make(g.normal(self.shape, mean, std, self.dtype)),),
                         any_cast=True)


def bernoulli_(self, p=0.5, *, generator=None):
    """Fill self with 0/1 samples of probability p."""
    if isinstance(p, Tensor):
        if not bool(((p.array >= 0) & (p.array <= 1)).all()):
            raise RuntimeError("Expected p_in >= 0 && p_in <= 1 to be true, but got false.")
    else:
        random.check_probability(p)
    g = random.generator_for(self.device, generator)
    sample = g.uniform(self.shape, 0.0, 1.0, dtypes.float64) < (p.array if isinstance(p, Tensor) else p)
    return inplace.apply(self, ew.copy_from, (Tensor._make(sample),), any_cast=True)


def random_(self, from_=None, to=None, *, generator=None):
    """Fill self with integers in [from_, to) ([0, from_) with one argument; with
    none, from 0 to the largest integer the dtype holds exactly, as torch's)."""
    if from_ is None:
        if dtypes.is_floating_point(self.dtype):
            to = 2 ** (dtypes.finfo(self.dtype).nmant + 1) + 1
        else:
            to = 2 if self.dtype == dtypes.bool_ else int(dtypes.iinfo(self.dtype).max)
        from_ = 0
    elif to is None:
        from_, to = 0, from_
    g = random.generator_for(self.device, generator)
    return inplace.apply(self, ew.copy_from, (Tensor._make(g.integers(from_, to, self.shape, dtypes.int64)),),
                         any_cast=True)


def nan_to_num_(self, nan=0.0, posinf=None, neginf=None):
    """nan_to_num in place (an integer or bool tensor is left as it is, unwritten, as torch's)."""
    if not dtypes.is_floating_point(self.dtype):
        return self
    return inplace.apply(self, ew.nan_to_num, (nan, posinf, neginf))


def exponential_(self, lambd=1.0, *, generator=None):
    """Fill self with exponential samples of rate ``lambd``."""
    if not dtypes.is_floating_point(self.dtype) and self.numel():
        raise RuntimeError("Exponential distribution is a continuous probability distribution. dtype must be a "
                           f"floating point but you specified {dtypes.dtype_name(self.dtype)}")
    if not lambd > 0:
        raise RuntimeError(f"exponential_ expects lambda > 0.0, but found lambda={lambd}")
    g = random.generator_for(self.device, generator)
    u = g.uniform(self.shape, 0.0, 1.0, dtypes.float64)
    return inplace.apply(self, ew.copy_from, (Tensor._make(-self.xp.log1p(-u) / lambd),), any_cast=True)


def bernoulli(self, p=None, *, generator=None):
    return random.bernoulli(self, p, generator=generator)


SPECIAL = {
    "where": where,
    "to": to,
    "contiguous": contiguous,
    "backward": backward,
    "__setitem__": __setitem__,
    "index_put_": index_put_,
    "index_put": index_put,
    "copy_": copy_,
    "fill_": fill_,
    "zero_": zero_,
    "uniform_": uniform_,
    "normal_": normal_,
    "bernoulli_": bernoulli_,
    "random_": random_,
    "exponential_": exponential_,
    "bernoulli": bernoulli,
    "nan_to_num_": nan_to_num_,
    "addcmul": ew.addcmul,
    "addcdiv": ew.addcdiv,
    "addcmul_": _in_place(ew.addcmul),
    "addcdiv_": _in_place(ew.addcdiv),
    "multinomial": random.multinomial,
    "__pos__": lambda self: _positive(self),
    "T": property(lambda self: shape.permute(self, tuple(reversed(range(self.ndim))))),
    "mT": property(lambda self: shape.transpose(self, -2, -1)),
    "__rand__": OPERATORS["__rand__"],
}


def bind():
    """Set every method of the tables on Tensor (idempotent)."""
    for name, function in METHODS.items():
        setattr(Tensor, name, dims.numpy_keywords(function))
    for name, function in OPERATORS.items():
        setattr(Tensor, name, function)
    for name, function in IN_PLACE.items():
        setattr(Tensor, name, _in_place(function))
    for name, function in SPECIAL.items():
        setattr(Tensor, name, function)
    for name, (function, argument) in SIZES_METHODS.items():
        setattr(Tensor, name, _sizes_method(function, name, argument))
    Tensor.__hash__ = object.__hash__       # __eq__ is elementwise; tensors hash by identity, as in torch


bind()
