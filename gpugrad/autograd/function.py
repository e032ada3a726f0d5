"""Function: one op of the graph, with its forward and backward side by side.

A Function instance is both the ``ctx`` the op's forward and backward see and
the node of the backward graph (torch's ``grad_fn``).  Two kinds of subclass
share this machinery:

* gpugrad's own ops (``gpugrad/ops/``) subclass :class:`InternalFunction`:
  ``forward(ctx, *arrays) -> array(s)`` works on raw NumPy/CuPy arrays
  (``ctx.xp`` is the array module), so a forward pays for no Tensor wrapping;
* user-defined Functions (the public ``gpugrad.autograd.Function``) keep
  torch's convention: ``forward(ctx, *tensors) -> tensor(s)``, run under
  ``no_grad``.

In both, ``backward(ctx, *grads) -> grads`` is written with Tensor ops, so the
same formula builds a differentiable graph when ``create_graph=True``.

``ctx.save_for_backward`` takes inputs, outputs or other arrays/tensors.  An
input is kept with its version so an in-place change is caught; an output is
kept as its array alone and re-wrapped with this node as its ``grad_fn`` when
unpacked, so no reference cycle (tensor -> node -> tensor) keeps memory alive.
Everything saved is released once the node's backward has run, unless
``retain_graph``.

When no graph is recorded (grad mode off, or no input requires grad),
``apply`` takes a lean path: no sequence number, no edges, nothing saved.
"""

import itertools
import threading
import weakref

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.grad_mode import _state as _grad_state
from gpugrad.autograd.grad_mode import no_grad
from gpugrad.autograd.graph import RemovableHandle
from gpugrad.tensor import Tensor

_sequence = itertools.count()

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved "
    "tensors after they have already been freed). Saved intermediate values of the "
    "graph are freed when you call .backward() or autograd.grad(). Specify "
    "retain_graph=True if you need to backward through the graph a second time or if "
    "you need to access saved tensors after calling backward.")


class _Numerics(threading.local):
    # True while the engine holds one numpy.errstate for a whole backward pass,
    # so the ops inside it need not enter their own (1 us each).
    quiet = False


numerics = _Numerics()
_ALL_FALSE = [()]
for _n in range(1, 16):
    _ALL_FALSE.append((False,) * _n)


class SavedTensor:
    """One value kept for backward: an input tensor, an output array, or a constant."""

    __slots__ = ("value", "kind", "output_nr", "version_counter", "version")

    def __init__(self, value, kind, version_counter=None, output_nr=0):
        self.value = value                  # Tensor (input/constant) or array (output)
        self.kind = kind                    # "input", "output" or "constant"
        self.output_nr = output_nr
        self.version_counter = version_counter
        self.version = version_counter[0] if version_counter is not None else 0

    def unpack(self, node):
        if self.version_counter is not None and self.version_counter[0] != self.version:
            value = self.value
            which = (f", which is output {self.output_nr} of {node.name()}"
                     if self.kind == "output" else "")
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: [{dtypes.dtype_name(value.dtype)} {list(value.shape)}]{which}, "
                f"is at version {self.version_counter[0]}; expected version {self.version} instead. "
                "Hint: the operation that failed was an in-place change of a tensor saved for backward; "
                "use its out-of-place form (e.g. x = x * 2), or clone() the tensor first.")
        if self.kind == "output":
            out = Tensor._make(self.value, grad_fn=node, output_nr=self.output_nr)
            out._version_counter = self.version_counter
            return out
        return self.value


class Function:
    """Base class of every differentiable op, and of user-defined ones.

    Subclass with two static methods and call ``MyFunction.apply(*args)``::

        class Exp(gpugrad.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                y = x.exp()
                ctx.save_for_backward(y)
                return y

            @staticmethod
            def backward(ctx, grad):
                y, = ctx.saved_tensors
                return grad * y

    ``backward`` returns one gradient per argument of ``forward`` (None for
    arguments that are not tensors or need no gradient);
    ``ctx.needs_input_grad`` says which are wanted.  As a graph node it has
    torch's ``name()``, ``next_functions`` and ``register_prehook``.
    """

    forward_takes_arrays = False   # gpugrad's own ops: forward works on arrays
    is_view = False                # output shares memory (and version) with input 0
    _backward_suffix = "Backward"

    # Defaults live on the class: a node sets only what differs (apply is hot).
    _edges = ()                    # per argument: (node, nr), None (tensor, no grad) or False (not a tensor)
    needs_input_grad = ()
    materialize_grads = True
    xp = numpy
    _sequence_nr = 0
    _to_save = ()
    _saved = None
    _had_saved = False
    _input_meta = ()
    _device = -1
    _num_outputs = 1
    _output_meta = ()
    _pre_hooks = None
    _retained = None
    _non_differentiable = ()

    # -- what ops call on ctx ------------------------------------------------
    def save_for_backward(self, *values):
        """Keep tensors (or, in gpugrad's ops, arrays) for backward."""
        self._to_save = values

    @property
    def saved_tensors(self):
        """The values given to ``save_for_backward``, as Tensors."""
        if self._saved is None:
            if self._had_saved:
                raise RuntimeError(_FREED_MESSAGE)
            return ()
        return tuple(None if s is None else s.unpack(self) for s in self._saved)

    def mark_non_differentiable(self, *outputs):
        """Outputs (arrays or tensors returned by forward) that get no grad_fn."""
        self._non_differentiable = tuple(id(o) for o in outputs)

    def set_materialize_grads(self, value):
        """Whether undefined output gradients reach backward as zeros (default) or None."""
        self.materialize_grads = bool(value)

    # -- the node's public face ------------------------------------------------
    def name(self):
        return type(self).__name__ + self._backward_suffix

    @property
    def next_functions(self):
        """torch's layout: one (node, output number) pair per tensor input,
        (None, 0) for an input that needs no gradient."""
        return tuple((None, 0) if edge is None else edge for edge in self._edges if edge is not False)

    def register_prehook(self, output_nr, hook):
        """Call ``hook(grad)`` on the gradient of output ``output_nr`` before
        this node's backward runs; a non-None return replaces it."""
        if self._pre_hooks is None:
            self._pre_hooks = {}
        hooks = self._pre_hooks.setdefault(output_nr, [])
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def retain_output(self, tensor):
        """Have the engine store the gradient of ``tensor`` (an output of this
        node) in its ``.grad`` (``Tensor.retain_grad``)."""
        if self._retained is None:
            self._retained = {}
        self._retained[tensor._output_nr] = weakref.ref(tensor)

    def keep_original(self, tensor):
        """An in-place op is about to overwrite ``tensor``, which this node may
        have saved as an input: keep a copy of its current values instead
        (torch's ``original_self``)."""
        for i, saved in enumerate(self._saved or ()):
            if saved is not None and saved.kind == "input" and saved.value is tensor:
                copy = Tensor._make(tensor.array.copy(), tensor.grad_fn, tensor._output_nr)
                copy._requires_grad = tensor._requires_grad
                self._saved[i] = SavedTensor(copy, "constant")

    def release(self):
        """Drop what was saved for backward (the engine calls this unless retain_graph)."""
        self._saved = None

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    # -- the op --------------------------------------------------------------
    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("a Function subclass must define forward(ctx, ...)")

    @staticmethod
    def backward(ctx, *grads):
        raise NotImplementedError("a Function subclass must define backward(ctx, ...)")

    @classmethod
    def apply(cls, *args):
        # Hot path: plain loops, no generators (this runs for every op).
        arrays = []
        record = False
        device_key = None          # -1 for the CPU, the CUDA ordinal otherwise
        for a in args:
            if isinstance(a, Tensor):
                data = a.array
                arrays.append(data)
                if a._requires_grad or a.grad_fn is not None:
                    record = True
                key = -1 if type(data) is numpy.ndarray else backend.device_key(data)
                if device_key is None:
                    device_key = key
                elif key != device_key:
                    raise RuntimeError(
                        "Expected all tensors to be on the same device, but found at least two "
                        f"devices, {backend.device_from_key(device_key)} and "
                        f"{backend.device_from_key(key)}! (in {cls.__name__})")
            else:
                arrays.append(a)
        record = record and _grad_state.enabled
        ctx = cls.__new__(cls)
        xp = numpy if device_key is None or device_key == -1 else backend.cupy_module()
        ctx.xp = xp
        if record:
            ctx._sequence_nr = next(_sequence)
            needs = []
            for a in args:
                needs.append(isinstance(a, Tensor) and (a._requires_grad or a.grad_fn is not None))
            ctx.needs_input_grad = tuple(needs)
        else:
            ctx.needs_input_grad = _ALL_FALSE[len(args)] if len(args) < 16 else (False,) * len(args)

        if cls.forward_takes_arrays:
            if xp is numpy and not numerics.quiet:
                with numpy.errstate(all="ignore"):    # inf and nan as in torch, without warnings
                    raw = cls.forward(ctx, *arrays)
            else:
                raw = cls.forward(ctx, *arrays)
            single = type(raw) is not tuple
            raws = (raw,) if single else raw
            if record:
                _connect(ctx, args, device_key)
                non_diff = ctx._non_differentiable
                outputs = tuple([Tensor._make(_array(o), ctx if dtypes.is_floating_point(o.dtype) and (
                    not non_diff or id(o) not in non_diff) else None, nr) for nr, o in enumerate(raws)])
            else:
                outputs = tuple([Tensor._make(_array(o)) for o in raws])
        else:
            with no_grad():
                raw = cls.forward(ctx, *args)
            single = not isinstance(raw, tuple)
            raws = (raw,) if single else raw
            outputs = tuple([_own_output(o, args) for o in raws])
            if record:
                _connect(ctx, args, device_key)
                non_diff = ctx._non_differentiable
                for nr, out in enumerate(outputs):
                    if isinstance(out, Tensor) and dtypes.is_floating_point(out.array.dtype) and \
                            (not non_diff or id(raws[nr]) not in non_diff):
                        out.set_history(ctx, nr)

        if cls.is_view:
            base = args[0]
            for out in outputs:
                if backend.may_share_memory(out.array, base.array):
                    out.become_view_of(base, cls, args[1:])
        if record:
            if not single:
                ctx._num_outputs = len(outputs)
                ctx._output_meta = tuple([(o.shape, o.dtype) for o in outputs])
            if ctx._to_save:
                ctx._saved = _resolve_saved(ctx._to_save, args, outputs, raws)
                ctx._had_saved = True
        if ctx._to_save:
            ctx._to_save = ()
        return outputs[0] if single else outputs


def _connect(ctx, args, device_key):
    """The node's edges to its inputs' nodes, and the inputs' metadata for the engine."""
    edges = []
    meta = []
    for a in args:
        if isinstance(a, Tensor):
            if a._requires_grad or a.grad_fn is not None:
                edges.append(a.gradient_edge())
                meta.append((a.array.shape, a.array.dtype))
                continue
            edges.append(None)
        else:
            edges.append(None if isinstance(a, numpy.generic) else False)
        meta.append(None)
    ctx._edges = tuple(edges)
    ctx._input_meta = meta
    ctx._device = device_key


class InternalFunction(Function):
    """gpugrad's own ops: ``forward(ctx, *arrays)`` computes with ``ctx.xp``."""
    forward_takes_arrays = True
    _backward_suffix = "Backward0"


def _array(value):
    # NumPy's reductions and ufuncs on 0-d arrays give scalars
    return numpy.asarray(value) if isinstance(value, numpy.generic) else value


def _own_output(out, args):
    """A user forward's output: fresh tensors are adopted, a returned input is aliased."""
    if not isinstance(out, Tensor):
        return out
    if any(out is a for a in args):
        alias = Tensor._make(out.array)
        alias._version_counter = out._version_counter
        return alias
    return out


def _resolve_saved(values, args, outputs, raw_outputs):
    saved = []
    for value in values:
        if value is None:
            saved.append(None)
            continue
        match = None
        for nr in range(len(outputs)):
            if value is raw_outputs[nr] or value is outputs[nr] or value is outputs[nr].array:
                out = outputs[nr]
                match = SavedTensor(out.array, "output", out._version_counter, nr)
                break
        if match is None:
            for a in args:
                if isinstance(a, Tensor) and (value is a.array or value is a):
                    match = SavedTensor(a, "input", a._version_counter)
                    break
        if match is None:
            if isinstance(value, Tensor):
                match = SavedTensor(value.detach(), "constant")
            elif backend.is_array(value):
                match = SavedTensor(Tensor._make(value), "constant")
            else:   # a Python or NumPy scalar, kept as it is
                match = SavedTensor(value, "constant")
        saved.append(match)
    return saved
