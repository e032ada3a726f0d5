"""Tensor: an ndarray (NumPy on the CPU, CuPy on the GPU) plus autograd state.

The arithmetic lives in ``gpugrad.ops``; the methods here only delegate, so
that every op is found in the module of its family.
"""

import numbers
import warnings
import weakref

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.function import AccumulateGrad, _RemovableHandle
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad


class Tensor:
    """A multi-dimensional array on the CPU or a CUDA GPU that records the
    operations applied to it, so gradients can be computed with ``backward()``.

    Create tensors with :func:`gpugrad.tensor`, :func:`gpugrad.zeros`, ... .
    ``.data`` is the underlying ``numpy.ndarray`` or ``cupy.ndarray``.
    """

    __slots__ = ("data", "grad_fn", "_requires_grad", "_grad", "_output_nr",
                 "_version_counter", "_hooks", "_grad_accumulator", "_base", "__weakref__")

    __array_ufunc__ = None        # NumPy operators defer to ours (ndarray * tensor -> Tensor)
    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        elif not (isinstance(data, numpy.ndarray) or backend.is_cupy_array(data)):
            data = numpy.asarray(data)
        dtypes.as_dtype(data.dtype)
        self.data = data
        self.grad_fn = None
        self._requires_grad = False
        self._grad = None
        self._output_nr = 0
        self._version_counter = [0]
        self._hooks = None
        self._grad_accumulator = None
        self._base = None
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data, grad_fn=None, output_nr=0):
        """Wrap an ndarray without checks (the ops' fast path)."""
        t = object.__new__(cls)
        t.data = data
        t.grad_fn = grad_fn
        t._requires_grad = False
        t._grad = None
        t._output_nr = output_nr
        t._version_counter = [0]
        t._hooks = None
        t._grad_accumulator = None
        t._base = None
        return t

    # -- metadata ------------------------------------------------------------
    @property
    def shape(self):
        return self.data.shape

    def size(self, dim=None):
        """The shape, or the length of dimension ``dim``."""
        if dim is None:
            return self.data.shape
        return self.data.shape[_wrap_dim(dim, self.ndim)]

    @property
    def ndim(self):
        return self.data.ndim

    def dim(self):
        return self.data.ndim

    def numel(self):
        return int(self.data.size)

    nelement = numel

    def element_size(self):
        return self.data.itemsize

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_cuda(self):
        return backend.is_cupy_array(self.data)

    @property
    def xp(self):
        """The array module (numpy or cupy) holding this tensor."""
        return backend.xp_for(self.data)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def requires_grad(self):
        return self._requires_grad or self.grad_fn is not None

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    @property
    def grad(self):
        if self._grad is None and self.grad_fn is not None and (
                self.grad_fn._retained is None or self._output_nr not in self.grad_fn._retained):
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

    @property
    def _version(self):
        return self._version_counter[0]

    def stride(self, dim=None):
        strides = tuple(s // self.data.itemsize for s in self.data.strides)
        return strides if dim is None else strides[_wrap_dim(dim, self.ndim)]

    def is_contiguous(self):
        return bool(self.data.flags.c_contiguous)

    def data_ptr(self):
        if self.is_cuda:
            return self.data.data.ptr
        return self.data.ctypes.data

    # -- autograd ------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        """Set whether autograd records ops on this leaf; returns self."""
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to "
                    "use a computed variable in a subgraph that doesn't require differentiation "
                    "use var_no_grad = var.detach().")
            return self
        if requires_grad and self.dtype.kind != "f":
            raise RuntimeError("only Tensors of floating point dtype can require gradients, "
                               f"got {self.dtype}")
        self._requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """A new tensor sharing this one's data (and version counter), outside the graph."""
        out = Tensor._make(self.data)
        out._version_counter = self._version_counter
        return out

    def detach_(self):
        self.grad_fn = None
        self._requires_grad = False
        return self

    def retain_grad(self):
        """Populate ``.grad`` of this non-leaf tensor during backward."""
        if self.grad_fn is None:
            if not self.requires_grad:
                raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
            return
        if self.grad_fn._retained is None:
            self.grad_fn._retained = {}
        self.grad_fn._retained[self._output_nr] = weakref.ref(self)

    @property
    def retains_grad(self):
        node = self.grad_fn
        return node is not None and node._retained is not None and self._output_nr in node._retained

    def register_hook(self, hook):
        """Call ``hook(grad)`` when this tensor's gradient is computed; a
        non-None return value replaces the gradient.  Returns a handle with
        ``remove()``."""
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            return self.grad_fn.register_prehook(self._output_nr, hook)
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return _RemovableHandle(self._hooks, hook)

    def _accumulator(self):
        node = self._grad_accumulator() if self._grad_accumulator is not None else None
        if node is None:
            node = AccumulateGrad(self)
            self._grad_accumulator = weakref.ref(node)
        return node

    def _edge(self):
        if self.grad_fn is not None:
            return self.grad_fn, self._output_nr
        return self._accumulator(), 0

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Compute the gradient of this tensor w.r.t. the graph leaves and add
        it to their ``.grad``.  ``gradient`` is required unless the tensor
        holds a single element."""
        from gpugrad.autograd import backward
        backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph,
                 inputs=inputs)

    # -- conversion ----------------------------------------------------------
    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise RuntimeError(f"a Tensor with {self.data.size} elements cannot be converted to Scalar")
        _check_device_errors(self)
        return self.data.reshape(()).item()

    def tolist(self):
        _check_device_errors(self)
        return backend.to_device(self.data, backend.CPU).tolist()

    def numpy(self, force=False):
        """The data as a NumPy array, sharing memory on the CPU."""
        if not force:
            if self.requires_grad:
                raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                                   "Use tensor.detach().numpy() instead.")
            if self.is_cuda:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. "
                                "Use Tensor.cpu() to copy the tensor to host memory first.")
        _check_device_errors(self)
        return backend.to_device(self.data, backend.CPU)

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        return self.data.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.data.__dlpack_device__()

    def to(self, *args, **kwargs):
        """``to(device)``, ``to(dtype)``, ``to(device, dtype)``, ``to(other)``;
        returns self when nothing changes.  Differentiable."""
        device, dtype = _parse_to(self, args, kwargs)
        copy = kwargs.get("copy", False)
        target_device = self.device if device is None else backend.as_device(device)
        target_dtype = self.dtype if dtype is None else dtypes.as_dtype(dtype)
        if target_device == self.device and target_dtype == self.dtype and not copy:
            return self
        if self.device.type == "cuda" and target_device.type == "cpu":
            _check_device_errors(self)
        return _ew.ToCopy.apply(self, target_dtype, target_device)

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else backend.device("cuda", device)
                       if isinstance(device, int) else device)

    def float(self):
        return self.to(dtypes.float32)

    def double(self):
        return self.to(dtypes.float64)

    def half(self):
        return self.to(dtypes.float16)

    def int(self):
        return self.to(dtypes.int32)

    def long(self):
        return self.to(dtypes.int64)

    def bool(self):
        return self.to(dtypes.bool_)

    def type_as(self, other):
        return self.to(other.dtype)

    def clone(self):
        """A copy with its own memory; gradients flow back to the original."""
        return _ew.Clone.apply(self)

    def contiguous(self):
        return self if self.data.flags.c_contiguous else _ew.Clone.apply(self)

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.dtype.kind not in "iub" or self.data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __format__(self, spec):
        if self.ndim == 0 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __repr__(self):
        return _format_tensor(self)

    __hash__ = object.__hash__

    # -- arithmetic (gpugrad/ops/elementwise.py) ------------------------------
    def __add__(self, other):
        return _ew.add(self, other)

    def __radd__(self, other):
        return _ew.add(other, self)

    def __sub__(self, other):
        return _ew.sub(self, other)

    def __rsub__(self, other):
        return _ew.sub(other, self)

    def __mul__(self, other):
        return _ew.mul(self, other)

    def __rmul__(self, other):
        return _ew.mul(other, self)

    def __truediv__(self, other):
        return _ew.div(self, other)

    def __rtruediv__(self, other):
        return _ew.div(other, self)

    def __floordiv__(self, other):
        return _ew.floor_divide(self, other)

    def __rfloordiv__(self, other):
        return _ew.floor_divide(other, self)

    def __mod__(self, other):
        return _ew.remainder(self, other)

    def __pow__(self, other):
        return _ew.pow(self, other)

    def __rpow__(self, other):
        return _ew.pow(other, self)

    def __neg__(self):
        return _ew.neg(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ew.abs(self)

    def __matmul__(self, other):
        return _linalg.matmul(self, other)

    def __rmatmul__(self, other):
        return _linalg.matmul(other, self)

    def __eq__(self, other):
        return _ew.eq(self, other)

    def __ne__(self, other):
        return _ew.ne(self, other)

    def __lt__(self, other):
        return _ew.lt(self, other)

    def __le__(self, other):
        return _ew.le(self, other)

    def __gt__(self, other):
        return _ew.gt(self, other)

    def __ge__(self, other):
        return _ew.ge(self, other)

    def __and__(self, other):
        return _ew.logical_op("bitwise_and", self, other)

    def __or__(self, other):
        return _ew.logical_op("bitwise_or", self, other)

    def __xor__(self, other):
        return _ew.logical_op("bitwise_xor", self, other)

    def __invert__(self):
        return _ew.logical_not(self) if self.dtype == dtypes.bool_ else _ew.bitwise_not(self)

    def add(self, other, alpha=1):
        return _ew.add(self, other, alpha=alpha)

    def sub(self, other, alpha=1):
        return _ew.sub(self, other, alpha=alpha)

    def mul(self, other):
        return _ew.mul(self, other)

    def div(self, other):
        return _ew.div(self, other)

    def pow(self, exponent):
        return _ew.pow(self, exponent)

    def neg(self):
        return _ew.neg(self)

    def abs(self):
        return _ew.abs(self)

    def exp(self):
        return _ew.exp(self)

    def log(self):
        return _ew.log(self)

    def log1p(self):
        return _ew.log1p(self)

    def expm1(self):
        return _ew.expm1(self)

    def sqrt(self):
        return _ew.sqrt(self)

    def rsqrt(self):
        return _ew.rsqrt(self)

    def sin(self):
        return _ew.sin(self)

    def cos(self):
        return _ew.cos(self)

    def tan(self):
        return _ew.tan(self)

    def tanh(self):
        return _ew.tanh(self)

    def sigmoid(self):
        return _ew.sigmoid(self)

    def relu(self):
        return _ew.relu(self)

    def erf(self):
        return _ew.erf(self)

    def sign(self):
        return _ew.sign(self)

    def clamp(self, min=None, max=None):
        return _ew.clamp(self, min, max)

    clip = clamp

    def clamp_min(self, min):
        return _ew.clamp(self, min, None)

    def clamp_max(self, max):
        return _ew.clamp(self, None, max)

    def maximum(self, other):
        return _ew.maximum(self, other)

    def minimum(self, other):
        return _ew.minimum(self, other)

    def where(self, condition, other):
        return _ew.where(condition, self, other)

    def masked_fill(self, mask, value):
        return _ew.masked_fill(self, mask, value)

    def eq(self, other):
        return _ew.eq(self, other)

    def ne(self, other):
        return _ew.ne(self, other)

    def lt(self, other):
        return _ew.lt(self, other)

    def le(self, other):
        return _ew.le(self, other)

    def gt(self, other):
        return _ew.gt(self, other)

    def ge(self, other):
        return _ew.ge(self, other)

    def isnan(self):
        return _ew.isnan(self)

    def isinf(self):
        return _ew.isinf(self)

    def isfinite(self):
        return _ew.isfinite(self)

    def logical_not(self):
        return _ew.logical_not(self)

    # -- reductions (gpugrad/ops/reduction.py) --------------------------------
    def sum(self, dim=None, keepdim=False, dtype=None):
        return _red.sum(self, dim, keepdim, dtype=dtype)

    def mean(self, dim=None, keepdim=False, dtype=None):
        return _red.mean(self, dim, keepdim, dtype=dtype)

    def prod(self, dim=None, keepdim=False):
        return _red.prod(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        return _red.max(self, dim, keepdim)

    def min(self, dim=None, keepdim=False):
        return _red.min(self, dim, keepdim)

    def amax(self, dim=None, keepdim=False):
        return _red.amax(self, dim, keepdim)

    def amin(self, dim=None, keepdim=False):
        return _red.amin(self, dim, keepdim)

    def argmax(self, dim=None, keepdim=False):
        return _red.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim=False):
        return _red.argmin(self, dim, keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _red.var(self, dim, unbiased, keepdim, correction=correction)

    def std(self, dim=None, unbiased=None, keepdim=False, *, correction=None):
        return _red.std(self, dim, unbiased, keepdim, correction=correction)

    def norm(self, p=2, dim=None, keepdim=False):
        return _red.norm(self, p, dim, keepdim)

    def logsumexp(self, dim, keepdim=False):
        return _red.logsumexp(self, dim, keepdim)

    def softmax(self, dim):
        return _red.softmax(self, dim)

    def log_softmax(self, dim):
        return _red.log_softmax(self, dim)

    def any(self, dim=None, keepdim=False):
        return _red.any(self, dim, keepdim)

    def all(self, dim=None, keepdim=False):
        return _red.all(self, dim, keepdim)

    def sum_to_size(self, *size):
        return _red.sum_to_size(self, _shape_arg(size))

    # -- shape (gpugrad/ops/shape.py) -----------------------------------------
    def reshape(self, *shape):
        return _shape.reshape(self, _shape_arg(shape))

    def view(self, *shape):
        if len(shape) == 1 and not isinstance(shape[0], (tuple, list, numbers.Integral)):
            return self.to(shape[0]) if shape[0] is not None else self   # view(dtype)
        return _shape.view(self, _shape_arg(shape))

    def view_as(self, other):
        return _shape.view(self, other.shape)

    def reshape_as(self, other):
        return _shape.reshape(self, other.shape)

    def flatten(self, start_dim=0, end_dim=-1):
        return _shape.flatten(self, start_dim, end_dim)

    def unflatten(self, dim, sizes):
        return _shape.unflatten(self, dim, sizes)

    def transpose(self, dim0, dim1):
        return _shape.transpose(self, dim0, dim1)

    def t(self):
        if self.ndim > 2:
            raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {self.ndim}D")
        return _shape.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def T(self):
        return _shape.permute(self, tuple(reversed(range(self.ndim))))

    @property
    def mT(self):
        return _shape.transpose(self, -2, -1)

    def permute(self, *dims):
        return _shape.permute(self, _shape_arg(dims))

    def squeeze(self, dim=None):
        return _shape.squeeze(self, dim)

    def unsqueeze(self, dim):
        return _shape.unsqueeze(self, dim)

    def expand(self, *sizes):
        return _shape.expand(self, _shape_arg(sizes))

    def expand_as(self, other):
        return _shape.expand(self, other.shape)

    def broadcast_to(self, shape):
        return _shape.expand(self, tuple(shape))

    def split(self, split_size_or_sections, dim=0):
        return _shape.split(self, split_size_or_sections, dim)

    def chunk(self, chunks, dim=0):
        return _shape.chunk(self, chunks, dim)

    def unbind(self, dim=0):
        return _shape.unbind(self, dim)

    def gather(self, dim, index):
        return _shape.gather(self, dim, index)

    def __getitem__(self, key):
        return _shape.getitem(self, key)

    def __setitem__(self, key, value):
        if is_grad_enabled() and (self.requires_grad or (isinstance(value, Tensor) and value.requires_grad)):
            _inplace(self, _shape.index_put, key, value)
            return
        key, _ = _shape.convert_key(self, key)       # no graph: write straight into the array
        if isinstance(value, Tensor):
            value = backend.to_device(value.data, self.device)
        self.data[key] = value
        self._version_counter[0] += 1

    # -- linear algebra (gpugrad/ops/linalg.py) --------------------------------
    def matmul(self, other):
        return _linalg.matmul(self, other)

    def mm(self, other):
        return _linalg.mm(self, other)

    def bmm(self, other):
        return _linalg.bmm(self, other)

    def dot(self, other):
        return _linalg.dot(self, other)

    def outer(self, other):
        return _linalg.outer(self, other)

    # -- in place --------------------------------------------------------------
    def add_(self, other, alpha=1):
        return _inplace(self, _ew.add, other, alpha=alpha)

    def sub_(self, other, alpha=1):
        return _inplace(self, _ew.sub, other, alpha=alpha)

    def mul_(self, other):
        return _inplace(self, _ew.mul, other)

    def div_(self, other):
        return _inplace(self, _ew.div, other)

    def pow_(self, exponent):
        return _inplace(self, _ew.pow, exponent)

    def neg_(self):
        return _inplace(self, _ew.neg)

    def exp_(self):
        return _inplace(self, _ew.exp)

    def clamp_(self, min=None, max=None):
        return _inplace(self, _ew.clamp, min, max)

    def relu_(self):
        return _inplace(self, _ew.relu)

    def sigmoid_(self):
        return _inplace(self, _ew.sigmoid)

    def tanh_(self):
        return _inplace(self, _ew.tanh)

    def masked_fill_(self, mask, value):
        return _inplace(self, _ew.masked_fill, mask, value)

    def copy_(self, src):
        """Copy ``src`` (broadcast, cast, moved across devices) into self."""
        return _inplace(self, _ew.copy_from, src)

    def fill_(self, value):
        return _inplace(self, _ew.copy_from, value)

    def zero_(self):
        return self.fill_(0)

    def uniform_(self, a=0.0, b=1.0):
        from gpugrad import random
        with no_grad():
            self.data[...] = random.uniform_array(self.xp, self.shape, a, b, self.dtype)
        self._version_counter[0] += 1
        return self

    def normal_(self, mean=0.0, std=1.0):
        from gpugrad import random
        with no_grad():
            self.data[...] = random.normal_array(self.xp, self.shape, mean, std, self.dtype)
        self._version_counter[0] += 1
        return self


def _inplace(tensor, op, *args, **kwargs):
    """Run ``op(tensor, *args)`` out of place and write the result into tensor.

    Recording a graph, the tensor takes the op's node as its ``grad_fn`` and
    its version goes up, so a node that saved the old value raises at
    backward instead of returning a wrong gradient (torch's rule).
    """
    recording = is_grad_enabled() and (tensor.requires_grad or any(
        isinstance(a, Tensor) and a.requires_grad for a in args))
    if not recording:
        with no_grad():
            result = op(tensor, *args, **kwargs)
    else:
        if tensor.grad_fn is None and tensor.requires_grad:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        if tensor._base is not None and tensor._base.requires_grad:
            raise RuntimeError(
                "gpugrad does not support in-place operations on a view of a tensor that "
                "requires grad; use the out-of-place form (e.g. x = x * 2)")
        # The op sees an alias that stands where the tensor stood in the graph;
        # if the op keeps it for backward, it keeps a copy of the old values.
        alias = Tensor._make(tensor.data, grad_fn=tensor.grad_fn, output_nr=tensor._output_nr)
        alias._requires_grad = tensor._requires_grad
        alias._grad_accumulator = tensor._grad_accumulator
        result = op(alias, *args, **kwargs)
        node = result.grad_fn
        for saved in (node._saved or ()) if node is not None else ():
            if saved is not None and saved.value is alias:
                saved.value = Tensor._make(alias.data.copy(), alias.grad_fn, alias._output_nr)
                saved.version_counter, saved.version = None, 0
    if result.dtype != tensor.dtype and dtypes.category(result.dtype) > dtypes.category(tensor.dtype):
        raise RuntimeError(f"result type {result.dtype} can't be cast to the desired output type "
                           f"{tensor.dtype}")
    if result.shape != tensor.shape:
        raise RuntimeError(f"output with shape {list(tensor.shape)} doesn't match the broadcast "
                           f"shape {list(result.shape)}")
    tensor.data[...] = result.data
    tensor._version_counter[0] += 1
    if recording:
        tensor.grad_fn = result.grad_fn
        tensor._output_nr = result._output_nr
    return tensor


def _check_device_errors(tensor):
    if tensor.is_cuda:
        from gpugrad.cuda import errors
        errors.check()


def _wrap_dim(dim, ndim):
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})")
    return dim % max(ndim, 1)


def _shape_arg(args):
    """Accept both f(2, 3) and f((2, 3))."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = args[0]
    return tuple(int(a) for a in args)


def _parse_to(tensor, args, kwargs):
    device = kwargs.get("device")
    dtype = kwargs.get("dtype")
    for a in args:
        if isinstance(a, Tensor):
            device, dtype = a.device, a.dtype
        elif isinstance(a, (str, backend.device)) and not _is_dtype_name(a):
            device = a
        elif isinstance(a, int) and not isinstance(a, bool):
            device = backend.device("cuda", a)
        else:
            dtype = a
    return device, dtype


def _is_dtype_name(value):
    if not isinstance(value, str):
        return False
    try:
        numpy.dtype(value)
        return True
    except TypeError:
        return False


def _format_tensor(t):
    data = backend.to_device(t.data, backend.CPU)
    kwargs = {"separator": ", ", "prefix": "tensor(", "threshold": 1000, "edgeitems": 3}
    if data.dtype.kind == "f" and data.size:
        finite = data[numpy.isfinite(data)]
        integral = finite.size == 0 or bool(numpy.all(finite == numpy.round(finite)))
        big = finite.size and (numpy.abs(finite).max() >= 1e8 or
                               (numpy.abs(finite[finite != 0]).min(initial=1.0) < 1e-4))
        if big:
            kwargs["formatter"] = {"float_kind": lambda v: f"{v:.4e}"}
        elif integral:
            kwargs["formatter"] = {"float_kind": lambda v: f"{v:.0f}." if numpy.isfinite(v) else str(v)}
        else:
            kwargs["formatter"] = {"float_kind": lambda v: f"{v:.4f}" if numpy.isfinite(v) else str(v)}
    body = numpy.array2string(data, **kwargs) if data.ndim else (
        kwargs["formatter"]["float_kind"](data.item()) if "formatter" in kwargs else repr(data.item()))
    if data.size == 0:
        body = "[]"
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


from gpugrad.ops import elementwise as _ew, reduction as _red, shape as _shape, linalg as _linalg  # noqa: E402
