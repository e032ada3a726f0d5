"""Function: one op of the graph, with its forward and backward side by side.

A Function instance is both the ``ctx`` the op's forward and backward see and
the node of the backward graph (torch's ``grad_fn``).  Two kinds of subclass
share this machinery:

* gpugrad's own ops (``ops/``, ``nn/``) set ``forward_takes_arrays = True``:
  ``forward(ctx, *arrays) -> array(s)`` works on raw NumPy/CuPy arrays, so a
  forward pays for no Tensor wrapping;
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
"""

import itertools

import numpy

from gpugrad import backend
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad

_sequence = itertools.count()

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved "
    "tensors after they have already been freed). Saved intermediate values of the "
    "graph are freed when you call .backward() or autograd.grad(). Specify "
    "retain_graph=True if you need to backward through the graph a second time or if "
    "you need to access saved tensors after calling backward.")


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
            shape = list(value.shape)
            dtype = value.dtype
            which = (f", which is output {self.output_nr} of {node.name()}"
                     if self.kind == "output" else "")
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: [{dtype} {shape}]{which}, is at version "
                f"{self.version_counter[0]}; expected version {self.version} instead.")
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
    ``ctx.needs_input_grad`` says which are wanted.
    """

    forward_takes_arrays = False   # gpugrad's own ops: forward works on arrays
    is_view = False                # output shares memory (and version) with input 0
    _backward_suffix = "Backward"

    # Defaults live on the class: a node sets only what differs (apply is hot).
    next_functions = ()
    needs_input_grad = ()
    materialize_grads = True
    xp = None
    _to_save = ()
    _saved = None
    _had_saved = False
    _input_meta = ()
    _device = None
    _num_outputs = 1
    _output_meta = ()
    _pre_hooks = None
    _retained = None
    _non_differentiable = ()

    def __init__(self):
        self._sequence_nr = next(_sequence)

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

    def name(self):
        return type(self).__name__ + self._backward_suffix

    def register_prehook(self, output_nr, hook):
        if self._pre_hooks is None:
            self._pre_hooks = {}
        hooks = self._pre_hooks.setdefault(output_nr, [])
        hooks.append(hook)
        return _RemovableHandle(hooks, hook)

    def _release(self):
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
        ctx = cls()
        needs = []
        arrays = []
        device_key = None          # -1 for the CPU, the CUDA ordinal otherwise
        record = False
        for a in args:
            if isinstance(a, Tensor):
                data = a.data
                arrays.append(data)
                requires = a._requires_grad or a.grad_fn is not None
                needs.append(requires)
                record = record or requires
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
                needs.append(False)
        ctx.needs_input_grad = needs = tuple(needs)
        record = record and is_grad_enabled()
        xp = ctx.xp = numpy if device_key is None or device_key == -1 else backend.cupy_module()

        if cls.forward_takes_arrays:
            if xp is numpy:
                with numpy.errstate(all="ignore"):    # inf and nan as in torch, without warnings
                    raw = cls.forward(ctx, *arrays)
            else:
                raw = cls.forward(ctx, *arrays)
            single = type(raw) is not tuple
            if single:
                outputs = (Tensor._make(numpy.asarray(raw) if isinstance(raw, numpy.generic) else raw),)
            else:
                outputs = tuple([Tensor._make(numpy.asarray(o) if isinstance(o, numpy.generic) else o)
                                 for o in raw])
        else:
            with no_grad():
                raw = cls.forward(ctx, *args)
            single = not isinstance(raw, tuple)
            outputs = tuple([_own_output(o, args) for o in ((raw,) if single else raw)])

        if cls.is_view:
            base = args[0]
            for out in outputs:
                if backend.may_share_memory(out.data, base.data):
                    out._version_counter = base._version_counter
                    out._base = base if base._base is None else base._base

        if record:
            edges = []
            meta = []
            for a, need in zip(args, needs):
                if need:
                    edges.append(a._edge())
                    meta.append((a.data.shape, a.data.dtype))
                else:
                    edges.append(None)
                    meta.append(None)
            ctx.next_functions = tuple(edges)
            ctx._input_meta = meta
            ctx._device = device_key
            raw_outputs = (raw,) if single else raw
            if not single:
                ctx._num_outputs = len(outputs)
                ctx._output_meta = tuple([(o.shape, o.dtype) for o in outputs])
            non_diff = ctx._non_differentiable
            for nr, out in enumerate(outputs):
                if isinstance(out, Tensor) and out.data.dtype.kind == "f" and \
                        (not non_diff or id(raw_outputs[nr]) not in non_diff):
                    out.grad_fn = ctx
                    out._output_nr = nr
            if ctx._to_save:
                ctx._saved = _resolve_saved(ctx._to_save, args, outputs, raw_outputs)
                ctx._had_saved = True
        if ctx._to_save:
            ctx._to_save = ()
        return outputs[0] if single else outputs


class InternalFunction(Function):
    """gpugrad's own ops: ``forward(ctx, *arrays)`` computes with ``ctx.xp``."""
    forward_takes_arrays = True
    _backward_suffix = "Backward0"


def _own_output(out, args):
    """A user forward's output: fresh tensors are adopted, a returned input is aliased."""
    if not isinstance(out, Tensor):
        return out
    if any(out is a for a in args):
        alias = Tensor._make(out.data)
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
            if value is raw_outputs[nr] or value is outputs[nr]:
                out = outputs[nr]
                match = SavedTensor(out.data, "output", out._version_counter, nr)
                break
        if match is None:
            for a in args:
                if isinstance(a, Tensor) and (value is a.data or value is a):
                    match = SavedTensor(a, "input", a._version_counter)
                    break
        if match is None:
            if isinstance(value, Tensor):
                match = SavedTensor(value.detach(), "constant")
            elif isinstance(value, numpy.ndarray) or backend.is_cupy_array(value):
                match = SavedTensor(Tensor._make(value), "constant")
            else:   # a Python or NumPy scalar, kept as it is
                match = SavedTensor(value, "constant")
        saved.append(match)
    return saved


class AccumulateGrad:
    """The graph node of a leaf that requires grad: adds what reaches it to ``.grad``."""

    __slots__ = ("variable", "__weakref__")
    next_functions = ()
    _num_outputs = 1
    _pre_hooks = None
    _retained = None
    _sequence_nr = float("inf")   # runs as soon as it is ready, as in torch

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


class _RemovableHandle:
    """What register_hook returns: ``handle.remove()`` takes the hook out."""

    def __init__(self, hooks, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


from gpugrad.tensor import Tensor  # noqa: E402  (tensor.py imports this module)
