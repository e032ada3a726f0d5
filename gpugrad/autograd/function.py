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


_FLOATING = dtypes.FLOATING_SET
_NDARRAY = numpy.ndarray
_new_object = object.__new__
_HALF = (dtypes.float16, dtypes.bfloat16)


class _AllFalse(dict):
    """needs_input_grad of a node that records nothing, by the number of arguments."""

    def __missing__(self, count):
        value = self[count] = (False,) * count
        return value


_ALL_FALSE = _AllFalse()


# A value kept for backward is a plain tuple (one is made for every value every op saves, so it
# has no class of its own):
#     (kind, value, version_counter, version, output_nr)
# kind "input": value is the input Tensor; "output": value is the output's array, re-wrapped
# with the node as its grad_fn when unpacked (a Tensor kept by its own node would be a reference
# cycle); "constant": value as given, version_counter None (no version check).
INPUT, OUTPUT, CONSTANT = "input", "output", "constant"


def _saved_constant(value):
    return (CONSTANT, value, None, 0, 0)


def _unpack(saved, node):
    """A saved value as backward sees it; raises if it was changed in place since forward."""
    kind, value, counter, version, output_nr = saved
    if counter is not None and counter[0] != version:
        which = f", which is output {output_nr} of {node.name()}" if kind == OUTPUT else ""
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by "
            f"an inplace operation: [{dtypes.dtype_name(value.dtype)} {list(value.shape)}]{which}, "
            f"is at version {counter[0]}; expected version {version} instead. "
            "Hint: the operation that failed was an in-place change of a tensor saved for backward; "
            "use its out-of-place form (e.g. x = x * 2), or clone() the tensor first.")
    if kind == OUTPUT:
        return Tensor._make(value, node, output_nr, counter)
    return value


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
    # forward calls NumPy functions written in Python (cumsum, cumprod, ...), whose warnings the
    # module filter of gpugrad/backend.py cannot see: it runs under numpy.errstate on the CPU
    numpy_errstate = False
    # a forward of several NumPy passes: on the CPU, float16 / bfloat16 inputs are computed in float32
    # and the results rounded once, as torch's CPU kernels do (CuPy's kernels compute in float anyway)
    half_in_float32 = False
    is_view = False                # output shares memory (and version) with input 0
    _backward_suffix = "Backward"

    # Defaults live on the class: a node sets only what differs (apply is hot).
    # per argument: (node, output nr, shape, dtype) of a tensor that needs a gradient (the node
    # and output that made it, its shape and dtype, which the gradient must have), None (a tensor
    # that needs none) or False (not a tensor)
    _edges = ()
    needs_input_grad = ()
    materialize_grads = True
    xp = numpy
    _sequence_nr = 0
    _saved = None
    _had_saved = False
    _device = -1
    _num_outputs = 1
    _output_meta = ()
    _pre_hooks = None
    _retained = None
    _hooked = False                # set with _pre_hooks or _retained: the engine's one check for either
    _non_differentiable = ()
    _cpu_wrapped = False           # numpy_errstate or half_in_float32: forward may go through _forward_on_cpu
    _plain_release = True          # release is Function's: the engine inlines it

    _plain_new = True              # no __init__ of its own: a node is made by cls() (half the cost of cls.__new__)
    _apply_flags = (True, False, False, False)     # (_plain_new, forward_takes_arrays, _cpu_wrapped, is_view)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._cpu_wrapped = cls.numpy_errstate or cls.half_in_float32
        cls._plain_new = cls.__init__ is object.__init__ and cls.__new__ is object.__new__
        # what apply asks of the class, read in one lookup (each costs a type attribute lookup)
        cls._apply_flags = (cls._plain_new, cls.forward_takes_arrays, cls._cpu_wrapped, cls.is_view)
        cls._plain_release = cls.release is Function.release

    # -- what ops call on ctx ------------------------------------------------
    def save_for_backward(self, *values):
        """Keep tensors (or, in gpugrad's ops, arrays) for backward."""
        self._saved = values        # as given: apply resolves them (_resolve_saved) once forward returns

    @property
    def saved_tensors(self):
        """The values given to ``save_for_backward``, as Tensors."""
        if self._saved is None:
            if self._had_saved:
                raise RuntimeError(_FREED_MESSAGE)
            return ()
        values = []
        for saved in self._saved:
            if saved is None:
                values.append(None)
                continue
            kind, value, counter, version, output_nr = saved
            if counter is not None and counter[0] != version:
                values.append(_unpack(saved, self))          # raises
            elif kind == OUTPUT:            # _unpack's common cases, inline (Tensor._make's stores too)
                out = _new_object(Tensor)
                out.array = value
                out.grad_fn = self
                out._version_counter = counter
                if output_nr:
                    out._output_nr = output_nr
                values.append(out)
            else:
                values.append(value)
        return tuple(values)

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
        return tuple((None, 0) if edge is None else edge[:2] for edge in self._edges if edge is not False)

    def register_prehook(self, output_nr, hook):
        """Call ``hook(grad)`` on the gradient of output ``output_nr`` before
        this node's backward runs; a non-None return replaces it."""
        if self._pre_hooks is None:
            self._pre_hooks = {}
            self._hooked = True
        hooks = self._pre_hooks.setdefault(output_nr, [])
        hooks.append(hook)
        return RemovableHandle(hooks, hook)

    def retain_output(self, tensor):
        """Have the engine store the gradient of ``tensor`` (an output of this
        node) in its ``.grad`` (``Tensor.retain_grad``)."""
        if self._retained is None:
            self._retained = {}
            self._hooked = True
        self._retained[tensor._output_nr] = weakref.ref(tensor)

    def keep_original(self, tensor):
        """An in-place op is about to overwrite ``tensor``, which this node may
        have saved as an input: keep a copy of its current values instead
        (torch's ``original_self``)."""
        for i, saved in enumerate(self._saved or ()):
            if saved is not None and saved[0] == INPUT and saved[1] is tensor:
                copy = Tensor._make(tensor.array.copy(), tensor.grad_fn, tensor._output_nr)
                copy._requires_grad = tensor._requires_grad
                self._saved[i] = _saved_constant(copy)

    def rebind_output(self, result, tensor):
        """An in-place op wrote its result (this node's output ``result``) into
        ``tensor``: a saved output is now ``tensor``'s memory at its current
        version (torch's saved ``result`` of ``x.relu_()``: a later in-place
        change of x is caught)."""
        for i, saved in enumerate(self._saved or ()):
            if saved is not None and saved[0] == OUTPUT and saved[1] is result.array:
                self._saved[i] = (OUTPUT, tensor.array, tensor._version_counter, tensor._version_counter[0],
                                  saved[4])

    def release(self):
        """Drop what was saved for backward (the engine calls this unless retain_graph)."""
        if self._saved:
            self._saved = None
            self._had_saved = True       # saved_tensors raises from now on

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
        # Hot path: plain loops, no generators, no helper calls in the common case (this runs for
        # every op, and for every op of every backward formula).  One pass over the arguments
        # collects the arrays and, when a graph is being recorded, the edges to the inputs' nodes,
        # each with the input's shape and dtype (what the engine checks the gradient against).
        # Devices are compared only when an array is not a NumPy one (then _device_of).
        arrays = []
        off_cpu = False
        record = False
        if _grad_state.enabled:
            edges = []
            needs = []
            for a in args:
                if isinstance(a, Tensor):
                    data = a.array
                    arrays.append(data)
                    if type(data) is not _NDARRAY:
                        off_cpu = True
                    node = a.grad_fn
                    if node is not None and a._view is None:      # gradient_edge()'s common case
                        edges.append((node, a._output_nr, data.shape, data.dtype))
                    elif a._requires_grad or node is not None:
                        node, nr = a.gradient_edge()
                        edges.append((node, nr, data.shape, data.dtype))
                    else:
                        edges.append(None)
                        needs.append(False)
                        continue
                    record = True
                    needs.append(True)
                else:
                    arrays.append(a)
                    edges.append(None if isinstance(a, numpy.generic) else False)
                    needs.append(False)
        else:
            for a in args:
                if isinstance(a, Tensor):
                    data = a.array
                    arrays.append(data)
                    if type(data) is not _NDARRAY:
                        off_cpu = True
                else:
                    arrays.append(a)
        plain_new, takes_arrays, cpu_wrapped, is_view = cls._apply_flags
        ctx = cls() if plain_new else cls.__new__(cls)
        if off_cpu:
            device_key = _device_of(cls, args)
            if device_key != -1:
                ctx.xp = backend.cupy_module()       # the class defaults: numpy, device -1
                ctx._device = device_key
        if record:
            ctx._sequence_nr = next(_sequence)
            ctx.needs_input_grad = tuple(needs)
            ctx._edges = edges
        else:
            ctx.needs_input_grad = _ALL_FALSE[len(args)]

        if takes_arrays:
            try:
                if not cpu_wrapped or ctx.xp is not numpy:
                    raw = cls.forward(ctx, *arrays)
                elif cls.numpy_errstate:
                    raw = _forward_on_cpu(cls, ctx, arrays)
                else:       # half_in_float32: _forward_on_cpu only for a float16 / bfloat16 array (its loop, inline)
                    for a in arrays:
                        if isinstance(a, _NDARRAY) and a.itemsize == 2 and a.dtype in _HALF:
                            raw = _forward_on_cpu(cls, ctx, arrays)
                            break
                    else:
                        raw = cls.forward(ctx, *arrays)
            except FloatingPointError:     # numpy.seterr(all="raise") by the caller: inf and nan as torch
                with numpy.errstate(all="ignore"):
                    raw = cls.forward(ctx, *arrays)
            if type(raw) is not tuple:     # one output: the common case, spelled out
                data = raw if type(raw) is _NDARRAY else backend.keep_array(raw)
                # Tensor._make, inline: a bare tensor, three slot stores
                out = _new_object(Tensor)
                out.array = data
                out._version_counter = [0]
                if not record:
                    out.grad_fn = None
                else:
                    non_diff = ctx._non_differentiable
                    out.grad_fn = ctx if data.dtype in _FLOATING and (
                        not non_diff or id(raw) not in non_diff) else None
                    if ctx._saved:
                        ctx._saved = _resolve_saved_single(ctx._saved, args, out, raw)
                if is_view:
                    _mark_view(cls, out, args)
                return out
            single = False
            # several outputs: Tensor._make's stores inline, as above
            outputs = []
            non_diff = ctx._non_differentiable
            for o in raw:
                out = _new_object(Tensor)
                out.array = o if type(o) is _NDARRAY else backend.keep_array(o)
                out._version_counter = [0]
                if not record:
                    out.grad_fn = None
                else:
                    out.grad_fn = ctx if o.dtype in _FLOATING and (not non_diff or id(o) not in non_diff) else None
                    if outputs:
                        out._output_nr = len(outputs)
                outputs.append(out)
            outputs = tuple(outputs)
        else:
            with no_grad():
                raw = cls.forward(ctx, *args)
            single = not isinstance(raw, tuple)
            raws = (raw,) if single else raw
            outputs = tuple([_own_output(o, args) for o in raws])
            if record:
                non_diff = ctx._non_differentiable
                for nr, out in enumerate(outputs):
                    if isinstance(out, Tensor) and dtypes.is_floating_point(out.array.dtype) and \
                            (not non_diff or id(raws[nr]) not in non_diff):
                        out.set_history(ctx, nr)

        if is_view:
            for out in outputs:
                _mark_view(cls, out, args)
        if record:
            if not single:
                ctx._num_outputs = len(outputs)
                ctx._output_meta = tuple([(o.shape, o.dtype) for o in outputs])
            if ctx._saved:
                ctx._saved = _resolve_saved(ctx._saved, args, outputs, (raw,) if single else raw)
        return outputs[0] if single else outputs


def _forward_on_cpu(cls, ctx, arrays):
    """cls.forward on NumPy arrays for a class that asks for it: under numpy.errstate
    (numpy_errstate), or (half_in_float32) with float16 / bfloat16 arrays widened to float32
    and its float32 results rounded back to that type once."""
    if cls.numpy_errstate:
        with numpy.errstate(all="ignore"):
            return cls.forward(ctx, *arrays)
    for a in arrays:
        # itemsize first: it rules out every other dtype at the cost of one attribute
        if isinstance(a, _NDARRAY) and a.itemsize == 2 and a.dtype in _HALF:
            half = a.dtype
            break
    else:
        return cls.forward(ctx, *arrays)
    raw = cls.forward(ctx, *[a.astype(numpy.float32) if isinstance(a, numpy.ndarray) and a.dtype == half else a
                             for a in arrays])
    if type(raw) is tuple:
        return tuple([o.astype(half) if o.dtype == numpy.float32 else o for o in raw])
    return raw.astype(half) if raw.dtype == numpy.float32 else raw


def _device_of(cls, args):
    """The device key (-1: CPU, else the CUDA ordinal) of the tensors among ``args``, which must
    all be on one device."""
    device_key = None
    for a in args:
        if isinstance(a, Tensor):
            key = backend.device_key(a.array)
            if device_key is None:
                device_key = key
            elif key != device_key:
                raise _device_mismatch(cls, device_key, key)
    return device_key


def _device_mismatch(cls, first, other):
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, "
        f"{backend.device_from_key(first)} and {backend.device_from_key(other)}! (in {cls.__name__})")


def _mark_view(cls, out, args):
    """A view op's output shares its input's memory and version counter."""
    base = args[0]
    if backend.may_share_memory(out.array, base.array):
        out.become_view_of(base, cls, args[1:])


class InternalFunction(Function):
    """gpugrad's own ops: ``forward(ctx, *arrays)`` computes with ``ctx.xp``."""
    forward_takes_arrays = True
    _backward_suffix = "Backward0"


def _own_output(out, args):
    """A user forward's output: fresh tensors are adopted, a returned input is aliased."""
    if not isinstance(out, Tensor):
        return out
    if any(out is a for a in args):
        alias = Tensor._make(out.array)
        alias._version_counter = out._version_counter
        return alias
    return out


def _resolve_saved_single(values, args, out, raw):
    """_resolve_saved for a forward of one output (the hot case, spelled out)."""
    saved = []
    for value in values:
        if value is None:
            saved.append(None)
        elif value is raw or value is out or value is out.array:
            saved.append((OUTPUT, out.array, out._version_counter, out._version_counter[0], 0))
        else:
            for a in args:
                if isinstance(a, Tensor) and (value is a.array or value is a):
                    saved.append((INPUT, a, a._version_counter, a._version_counter[0], 0))
                    break
            else:
                saved.append(_resolve_saved((value,), args, (out,), (raw,))[0])
    return saved


def _resolve_saved(values, args, outputs, raw_outputs):
    """What save_for_backward was given, as saved tuples (above): an output (kept as
    its array), an input (kept with its version), or a constant."""
    saved = []
    for value in values:
        if value is None:
            saved.append(None)
            continue
        match = None
        for nr, out in enumerate(outputs):
            if value is raw_outputs[nr] or value is out or value is out.array:
                match = (OUTPUT, out.array, out._version_counter, out._version_counter[0], nr)
                break
        else:
            for a in args:
                if isinstance(a, Tensor) and (value is a.array or value is a):
                    match = (INPUT, a, a._version_counter, a._version_counter[0], 0)
                    break
            else:
                if isinstance(value, Tensor):
                    match = _saved_constant(value.detach())
                elif backend.is_array(value):
                    match = _saved_constant(Tensor._make(value))
                else:   # a Python or NumPy scalar, kept as it is
                    match = _saved_constant(value)
        saved.append(match)
    return saved
