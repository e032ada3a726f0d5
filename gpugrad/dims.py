"""Dimension and size arguments, read the way torch reads them."""

import functools
import inspect
import math
import numbers
import operator


class Size(tuple):
    """A tensor's shape: a tuple of ints (it compares equal to one), printed
    as ``gpugrad.Size([2, 3])``; slices and sums stay Sizes, as torch.Size's."""

    __slots__ = ()

    def __repr__(self):
        return f"gpugrad.Size({list(self)})"

    __str__ = __repr__

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item

    def __add__(self, other):
        return Size(tuple.__add__(self, tuple(other)))

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self))

    def numel(self):
        """The number of elements a tensor of this shape holds."""
        return math.prod(self)


def wrap_dim(dim, ndim):
    """``dim`` in [0, ndim) (negative dims count from the end; a 0-d tensor
    accepts 0 and -1); IndexError naming the range otherwise."""
    top = ndim if ndim else 1
    if not -top <= dim < top:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-top}, {top - 1}], "
                         f"but got {dim})")
    return dim % top


def wrap_dim_of_tensor(dim, ndim):
    """wrap_dim for ops that take no dim of a 0-d tensor (roll, take_along_dim: torch's IndexError)."""
    if ndim == 0:
        raise IndexError(f"Dimension specified as {dim} but tensor has no dimensions")
    return wrap_dim(dim, ndim)


def normalize_dims(dim, ndim, empty_means_all=True):
    """``dim`` (None, an int or a sequence) as a sorted tuple of non-negative dims;
    None means every dim, and so does an empty sequence (torch's reductions;
    ``empty_means_all=False``: none, as any/all take it)."""
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (tuple, list)):
        if not dim and empty_means_all:
            return tuple(range(ndim))
        dims = tuple(sorted({wrap_dim(d, ndim) for d in dim}))
        if len(dims) != len(dim):
            raise RuntimeError(f"dim {wrap_dim(dim[0], ndim)} appears multiple times in the list of dims")
        return dims if ndim else ()
    wrapped = wrap_dim(dim, ndim)
    return (wrapped,) if ndim else ()


def keepdim_shape(shape, dims):
    """``shape`` with the reduced ``dims`` kept as 1."""
    return tuple(1 if i in dims else n for i, n in enumerate(shape))


def reduced_shape(shape, dims):
    """``shape`` without the reduced ``dims``."""
    return tuple(n for i, n in enumerate(shape) if i not in dims)


def shape_arg(args):
    """A shape given as f(2, 3), f((2, 3)) or f([2, 3]), as a tuple of ints (-1 allowed)."""
    if len(args) == 1 and not isinstance(args[0], numbers.Integral):
        args = args[0]
        if isinstance(args, numbers.Integral) or (hasattr(args, "__index__") and getattr(args, "ndim", 1) == 0):
            args = (args,)        # an int, or an integer 0-d tensor or array
    if isinstance(args, (str, bytes)) or not hasattr(args, "__iter__"):
        raise TypeError(f"a size must be a sequence of ints, got {type(args).__name__}")
    shape = []
    for position, n in enumerate(args, 1):
        try:
            shape.append(operator.index(n))       # ints only, as torch's parser (2.5 is no size)
        except TypeError:
            raise TypeError(f"a size must be a sequence of ints, but got {type(n).__name__} at pos {position}: "
                            f"{args!r}") from None
    return tuple(shape)


def size_arg(args, size=None, function=None):
    """The size of a new tensor, given as f(2, 3), f((2, 3)), f([2, 3]) or
    f(size=(2, 3)); RuntimeError for a negative dimension, TypeError (naming
    ``function``) for none at all."""
    if size is not None:
        if args:
            raise TypeError("the size was given both positionally and as size=")
        args = (size,)
    elif not args and function is not None:
        raise TypeError(f"{function}() missing 1 required positional arguments: \"size\"")
    shape = shape_arg(args)
    if any(n < 0 for n in shape):
        raise RuntimeError(f"Trying to create tensor with negative dimension: {list(shape)}")
    return shape


def sequence_arg(value, function, name, position):
    """A function's shape or dims argument, which torch's parser takes only as a
    sequence of ints (``torch.reshape(x, 6)`` is a TypeError; the method takes ints)."""
    if isinstance(value, numbers.Integral) or not hasattr(value, "__iter__"):
        raise TypeError(f"{function}(): argument '{name}' (position {position}) must be tuple of ints, not "
                        f"{type(value).__name__}")
    return shape_arg((value,))


def method_sizes(args, function, name):
    """A method's sizes, given as ints or one sequence (``x.reshape(2, 3)``,
    ``x.reshape((2, 3))``); TypeError when none is given, as torch's."""
    if not args:
        raise TypeError(f"{function}() missing 1 required positional arguments: \"{name}\"")
    return shape_arg(args)


def numpy_keywords(function):
    """``function`` taking NumPy's keyword names as torch's argument parser does:
    ``axis=`` for ``dim``, ``keepdims=`` for ``keepdim`` (``x.sum(axis=0)``);
    the function itself where it has no such argument or takes both already."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function
    aliases = {alias: name for alias, name in (("axis", "dim"), ("keepdims", "keepdim"))
               if name in parameters and alias not in parameters}
    if not aliases:
        return function

    @functools.wraps(function)
    def with_aliases(*args, **kwargs):
        if kwargs:
            for alias, name in aliases.items():
                if alias in kwargs:
                    if name in kwargs:
                        raise TypeError(f"{function.__name__}() got multiple values for argument '{name}'")
                    kwargs[name] = kwargs.pop(alias)
        return function(*args, **kwargs)
    return with_aliases
