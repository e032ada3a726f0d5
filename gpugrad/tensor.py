"""Tensor: an ndarray (NumPy on the CPU, CuPy on the GPU) plus autograd state.

This module holds the Tensor's state (``array``, ``grad``, ``requires_grad``,
``grad_fn``, the version counter) and its protocol (metadata, conversion,
hooks, printing).  The op methods (``x.exp()``, ``x + y``, ``x.sum(1)``, the
in-place ``x.add_(y)``, ``x.backward()``) are bound onto the class from a
table in ``gpugrad/tensor_methods.py``: the ops import this module, so this
module cannot import them (DESIGN.md, the one late binding).
"""

import warnings
import weakref

import numpy

from gpugrad import backend, dims, dtypes
from gpugrad.autograd.grad_mode import enable_grad
from gpugrad.autograd.graph import AccumulateGrad, RemovableHandle
from gpugrad.cuda import errors as device_errors
from gpugrad.printing import format_tensor

_post_accumulate_hooks = {}     # id(leaf) -> (weak reference, [hook]): rare, so kept off the Tensor's slots


class Tensor:
    """A multi-dimensional array on the CPU or a CUDA GPU that records the
    operations applied to it, so gradients can be computed with ``backward()``.

    Create tensors with :func:`gpugrad.tensor`, :func:`gpugrad.zeros`, ... .
    ``Tensor(2, 3)`` is an uninitialised 2x3 float tensor and ``Tensor([1, 2])``
    a float tensor of those values, as in torch.  ``.array`` is the underlying
    ``numpy.ndarray`` or ``cupy.ndarray``; ``.data`` is a Tensor sharing it,
    outside the graph.
    """

    # Every tensor sets its three slots; the rest of the state is rare (leaves, hooks, views, the
    # outputs after the first of a node) and defaults to the class attributes below until a
    # tensor sets it (in its __dict__, made then): a new tensor costs three stores (_make).
    __slots__ = ("array", "grad_fn", "_version_counter", "__dict__", "__weakref__")
    _requires_grad = False
    _grad = None
    _output_nr = 0
    _hooks = None
    _grad_accumulator = None
    _view = None

    __array_ufunc__ = None        # NumPy operators defer to ours (ndarray * tensor -> Tensor)
    __array_priority__ = 1000

    def __init__(self, *args, device=None, dtype=None):
        dtype = dtypes.as_dtype(dtype) or dtypes.get_default_dtype()
        dev = backend.as_device(device)
        if len(args) == 1 and isinstance(args[0], Tensor):
            array = backend.to_device(args[0].array, dev).astype(dtype, copy=False)
        elif not args or all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            with backend.device_guard(dev):      # Tensor() is an empty 1-D tensor, as in torch
                array = backend.xp_for_device(dev).empty(dims.size_arg(args) if args else (0,), dtype=dtype)
        elif len(args) == 1:
            host = numpy.asarray(args[0].tolist() if backend.is_cupy_array(args[0]) else args[0])
            array = backend.to_device(host.astype(dtype), dev)
        else:
            raise TypeError(f"Tensor() takes sizes (ints) or one sequence of data, got {args!r}")
        _init(self, array)

    @classmethod
    def _make(cls, array, grad_fn=None, output_nr=0, version_counter=None):
        """Wrap an ndarray without checks (the ops' fast path); a NumPy scalar
        (a ufunc's result on 0-d arrays) becomes a 0-d array.  ``version_counter``:
        share another tensor's (a saved output unpacked for backward)."""
        t = object.__new__(cls)
        t.array = array if type(array) is numpy.ndarray else backend.keep_array(array)
        t.grad_fn = grad_fn
        t._version_counter = [0] if version_counter is None else version_counter
        if output_nr:
            t._output_nr = output_nr
        return t

    # -- metadata ------------------------------------------------------------
    @property
    def shape(self):
        return dims.Size(self.array.shape)

    def size(self, dim=None):
        """The shape, or the length of dimension ``dim``."""
        if dim is None:
            return dims.Size(self.array.shape)
        return self.array.shape[dims.wrap_dim(dim, self.array.ndim)]

    @property
    def ndim(self):
        return self.array.ndim

    def dim(self):
        return self.array.ndim

    ndimension = dim

    def numel(self):
        return int(self.array.size)

    nelement = numel

    def element_size(self):
        return self.array.itemsize

    @property
    def itemsize(self):
        return self.array.itemsize

    @property
    def nbytes(self):
        return self.array.nbytes

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def is_cuda(self):
        return backend.is_cupy_array(self.array)

    @property
    def is_cpu(self):
        return not backend.is_cupy_array(self.array)

    @property
    def xp(self):
        """The array module (numpy or cupy) holding this tensor."""
        return backend.xp_for(self.array)

    def is_floating_point(self):
        return dtypes.is_floating_point(self.array.dtype)

    def stride(self, dim=None):
        strides = tuple(s // self.array.itemsize for s in self.array.strides)
        return strides if dim is None else strides[dims.wrap_dim(dim, self.ndim)]

    def is_contiguous(self):
        return bool(self.array.flags.c_contiguous)

    def data_ptr(self):
        if self.is_cuda:
            return self.array.data.ptr
        return self.array.ctypes.data

    def get_device(self):
        """The CUDA ordinal of a CUDA tensor, -1 on the CPU (torch's convention)."""
        return backend.device_key(self.array)

    # -- autograd state --------------------------------------------------------
    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def requires_grad(self):
        return self._requires_grad or self.grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        """Set whether autograd records ops on this leaf; returns self."""
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if requires_grad and not dtypes.is_floating_point(self.array.dtype):
            raise RuntimeError("only Tensors of floating point dtype can require gradients, "
                               f"got {self.array.dtype}")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def grad(self):
        """The gradient accumulated by ``backward()`` (leaves, and non-leaves
        after ``retain_grad()``); None until then."""
        if self._grad is None and self.grad_fn is not None and not self.retains_grad:
            warnings.warn(
                "The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
                "Its .grad attribute won't be populated during autograd.backward(). If you "
                "indeed want the gradient for a non-leaf Tensor, use .retain_grad() on the "
                "non-leaf Tensor.", UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"assigned grad has data of a different size: {value.shape} vs {self.shape}")
            if value.dtype != self.dtype:
                raise RuntimeError(f"assigned grad has data of a different type: {value.dtype} vs {self.dtype}")
            if value.device != self.device:
                raise RuntimeError(f"assigned grad has data located on a different device: "
                                   f"{value.device} vs {self.device}")
        self._grad = value

    @grad.deleter
    def grad(self):
        self._grad = None

    @property
    def data(self):
        """A Tensor sharing this one's memory, outside the graph (no grad_fn,
        no requires_grad, a version counter of its own: changes through it are
        invisible to autograd).  Assigning ``t.data = other`` makes ``t`` hold
        ``other``'s array (shape, dtype and device may change)."""
        return Tensor._make(self.array)

    @data.setter
    def data(self, value):
        if not isinstance(value, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(value).__name__}")
        if self.requires_grad and not dtypes.is_floating_point(value.dtype):
            raise RuntimeError("data set to a tensor that requires gradients must be floating point "
                               "or complex dtype")
        self.array = value.array

    @property
    def _version(self):
        return self._version_counter[0]

    def increment_version(self):
        """Record that the data changed in place outside the graph
        (``torch.autograd.graph.increment_version``): a node that saved this
        tensor then raises at backward instead of using the new values."""
        self._version_counter[0] += 1

    def detach(self):
        """A new tensor sharing this one's data (and version counter), outside the graph."""
        out = Tensor._make(self.array)
        out._version_counter = self._version_counter
        return out

    def detach_(self):
        """Take this tensor out of the graph in place: it becomes a leaf that
        does not require grad."""
        if self._view is not None and self._view[0].requires_grad:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def retain_grad(self):
        """Populate ``.grad`` of this non-leaf tensor during backward."""
        if self.grad_fn is None:
            if not self.requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        self.grad_fn.retain_output(self)

    @property
    def retains_grad(self):
        node = self.grad_fn
        return node is not None and node._retained is not None and self._output_nr in node._retained

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a
        non-None return value replaces the gradient (also what ``.grad``
        accumulates and what ``autograd.grad`` returns).  Returns a handle
        with ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.register_prehook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return RemovableHandle(self._hooks, hook)

    def leaf_hooks(self):
        """The hooks registered on this leaf (run by the engine before accumulation)."""
        return self._hooks or ()

    def register_post_accumulate_grad_hook(self, hook):
        """Call ``hook(tensor)`` after this leaf's ``.grad`` has been
        accumulated by a backward pass (torch's; DistributedDataParallel uses
        it to start all-reducing a bucket of gradients).  Returns a handle."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        key = id(self)
        entry = _post_accumulate_hooks.get(key)
        if entry is None or entry[0]() is not self:
            entry = (weakref.ref(self, lambda _, key=key: _post_accumulate_hooks.pop(key, None)), [])
            _post_accumulate_hooks[key] = entry
        entry[1].append(hook)
        return RemovableHandle(entry[1], hook)

    def post_accumulate_hooks(self):
        """The hooks to call after this leaf's gradient is accumulated."""
        if not _post_accumulate_hooks:
            return ()
        entry = _post_accumulate_hooks.get(id(self))
        return entry[1] if entry is not None and entry[0]() is self else ()

    def gradient_edge(self):
        """(node, output number) of the graph: the grad_fn that made this
        tensor, or the accumulation node of a leaf."""
        view = self._view
        if view is not None and view[2] != self._version_counter[0]:
            self._regenerate_view()
        if self.grad_fn is not None:
            return self.grad_fn, self._output_nr
        node = self._grad_accumulator() if self._grad_accumulator is not None else None
        if node is None:
            node = AccumulateGrad(self)
            self._grad_accumulator = weakref.ref(node)   # held weakly, as in torch
        return node, 0

    def alias(self):
        """A new Tensor object over the same array that stands where this one
        stands in the graph (same grad_fn, version counter and leaf state): what
        an in-place op computes from before this tensor takes the result."""
        if self._view is not None and self._view[2] != self._version_counter[0] and self.requires_grad:
            self._regenerate_view()
        out = Tensor._make(self.array, self.grad_fn, self._output_nr)
        out._version_counter = self._version_counter
        out._requires_grad = self._requires_grad
        out._grad_accumulator = self._grad_accumulator
        return out

    def set_history(self, node, output_nr=0):
        """Make this tensor output ``output_nr`` of graph node ``node`` (the
        autograd core's call: ops, and the in-place protocol)."""
        self.grad_fn = node
        self._output_nr = output_nr

    @property
    def _base(self):
        """The tensor this one is a view of (None when it owns its memory)."""
        return None if self._view is None else self._view[0]

    def become_view_of(self, base, view_op, view_args):
        """Record that this tensor is ``view_op.apply(base, *view_args)`` and
        shares ``base``'s memory and version counter.  A view of a view
        records the chain from the root base, so its history can be replayed
        after an in-place change of the base (torch regenerates it the same way)."""
        if base._view is None:
            root, chain = base, ((view_op, view_args),)
        else:
            root, chain = base._view[0], base._view[1] + ((view_op, view_args),)
        self._version_counter = base._version_counter
        self._view = (root, chain, self._version_counter[0])

    def view_chain(self):
        """(root base, ((view Function, its arguments), ...)) of a view, else None."""
        return None if self._view is None else self._view[:2]

    def _regenerate_view(self):
        """The base changed in place since this view's history was set: replay
        the view on the base's current history."""
        root, chain = self._view[0], self._view[1]
        with enable_grad():
            replay = root
            for view_op, view_args in chain:
                replay = view_op.apply(replay, *view_args)
        self.grad_fn, self._output_nr = replay.grad_fn, replay._output_nr
        self._view = (root, chain, self._version_counter[0])

    # -- conversion ----------------------------------------------------------
    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.array.size != 1:
            raise RuntimeError(f"a Tensor with {self.array.size} elements cannot be converted to Scalar")
        value = self.array.reshape(()).item()
        _raise_device_errors(self)
        return _python_number(value, self.array.dtype)

    def tolist(self):
        """The data as (nested) Python lists of numbers."""
        host = backend.to_device(self.array, backend.CPU)
        _raise_device_errors(self)
        if host.dtype == dtypes.bfloat16:
            host = host.astype(dtypes.float32)
        return host.tolist()

    def numpy(self, force=False):
        """The data as a NumPy array, sharing memory on the CPU (``force=True``:
        copied from the GPU, and allowed on a tensor that requires grad)."""
        if not force:
            if self.requires_grad:
                raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                                   "Use tensor.detach().numpy() instead.")
            if self.is_cuda:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
        host = backend.to_device(self.array, backend.CPU)
        _raise_device_errors(self)
        return host

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        try:
            return self.array.__dlpack__(*args, **kwargs)
        except BufferError:
            if self.array.dtype == dtypes.bfloat16:
                raise BufferError("a bfloat16 tensor on the CPU cannot be exported through DLPack (NumPy's "
                                  "DLPack has no bfloat16): convert it to float32 first (x.float()), or export "
                                  "it from the GPU, where CuPy's has") from None
            raise

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def cpu(self):
        """This tensor on the CPU (itself when already there)."""
        return self.to("cpu")

    def cuda(self, device=None, non_blocking=False):
        """This tensor on a CUDA device (the current one by default)."""
        if isinstance(device, int):
            device = backend.device("cuda", device)
        return self.to("cuda" if device is None else device)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def bfloat16(self):
        return self.to(dtypes.bfloat16)

    def int(self):
        return self.to(dtypes.int32)

    def long(self):
        return self.to(dtypes.int64)

    def short(self):
        return self.to(dtypes.int16)

    def byte(self):
        return self.to(dtypes.uint8)

    def bool(self):
        return self.to(dtypes.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def type(self, dtype=None):
        """Without an argument, torch's type string ('torch.FloatTensor',
        'torch.cuda.LongTensor'); with a dtype or such a string, a cast."""
        if dtype is None:
            name = _TYPE_NAMES[self.dtype]
            return f"torch.cuda.{name}" if self.is_cuda else f"torch.{name}"
        if isinstance(dtype, str) and dtype.endswith("Tensor"):
            cuda = ".cuda." in dtype
            name = dtype.rsplit(".", 1)[-1]
            target = next((d for d, n in _TYPE_NAMES.items() if n == name), None)
            if target is None:
                raise ValueError(f"invalid type: {dtype!r}")
            return self.to(device="cuda" if cuda else "cpu", dtype=target)
        return self.to(dtype)

    # -- Python protocol -------------------------------------------------------
    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self):
        if self.array.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def _scalar(self):
        if self.array.size != 1:
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __float__(self):
        return float(self._scalar())

    def __int__(self):
        return int(self._scalar())

    def __index__(self):
        if self.dtype.kind not in "iub" or self.array.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __format__(self, spec):
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        return format_tensor(self)

    __hash__ = object.__hash__

    def __reduce_ex__(self, protocol):
        # pickling (multiprocessing DataLoader workers, copy.deepcopy): data and requires_grad
        return (_rebuild, (type(self), backend.to_device(self.array, backend.CPU), str(self.device),
                           self._requires_grad and self.grad_fn is None))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support "
                               "the deepcopy protocol at the moment.")
        out = type(self).__new__(type(self))
        _init(out, self.array.copy())
        out._requires_grad = self._requires_grad
        if self._grad is not None:
            out._grad = self._grad.__deepcopy__(memo)
        memo[id(self)] = out
        return out


def is_tensor(obj):
    """True when ``obj`` is a gpugrad Tensor."""
    return isinstance(obj, Tensor)


def is_floating_point(input):
    """True when ``input``'s dtype is a floating-point one."""
    if not isinstance(input, Tensor):
        raise TypeError(f"is_floating_point(): argument 'input' (position 1) must be Tensor, not "
                        f"{type(input).__name__}")
    return input.is_floating_point()


def parse_to(args, kwargs):
    """(device, dtype) from the arguments of Tensor.to and Module.to:
    a device (str, int, device), a dtype, or a tensor (both), positionally
    or as ``device=`` / ``dtype=``."""
    device = kwargs.get("device")
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, backend.device) or isinstance(a, str) and not _is_dtype_name(a):
            device = a
        elif isinstance(a, int) and not isinstance(a, bool):
            device = backend.device("cuda", a)
        elif a is not None:
            dtype = a
    return device, dtype


def _is_dtype_name(value):
    try:
        dtypes.as_dtype(value)
        return True
    except TypeError:
        return False


def _init(tensor, array):
    tensor.array = array
    tensor.grad_fn = None
    tensor._version_counter = [0]


def _rebuild(cls, array, device, requires_grad):
    out = object.__new__(cls)
    _init(out, backend.to_device(array, backend.as_device(device)))
    out._requires_grad = requires_grad
    return out


def _raise_device_errors(tensor):
    """A synchronising read: raise what a kernel recorded on this tensor's device."""
    if backend.is_cupy_array(tensor.array):
        device_errors.raise_recorded(tensor.array.device.id)


def _python_number(value, dtype):
    if dtype == dtypes.bfloat16:
        return float(value)
    return value


_TYPE_NAMES = {dtypes.float32: "FloatTensor", dtypes.float64: "DoubleTensor", dtypes.float16: "HalfTensor",
               dtypes.bfloat16: "BFloat16Tensor", dtypes.int64: "LongTensor", dtypes.int32: "IntTensor",
               dtypes.int16: "ShortTensor", dtypes.int8: "CharTensor", dtypes.uint8: "ByteTensor",
               dtypes.bool_: "BoolTensor"}
