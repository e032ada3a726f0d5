"""The backward pass: walk the graph from the outputs to the leaves.

Iterative throughout (a chain of 100,000 ops needs no recursion): one sweep
counts each node's incoming edges, then nodes run once every gradient that
feeds them has arrived, the most recently created first (torch's order).
Gradients reaching a node from several consumers are summed in its input
buffer.  A leaf's gradient passes through the leaf's hooks, then goes to
``.grad`` (``backward``) or to the caller (``grad``): one path for both.
Each node's saved values are released as soon as its backward has run,
unless ``retain_graph``.

Gradients are validated against each input's metadata, as torch's engine
does: a gradient of a broadcast shape is summed back to the input's shape, and
one of another dtype is cast to the input's dtype.  Op backward formulas can
therefore return the gradient of the broadcast result as it is.
"""

import heapq
import threading

import numpy

from gpugrad import backend
from gpugrad.amp import autocast_mode
from gpugrad.autograd.grad_mode import set_grad_enabled
from gpugrad.autograd.graph import AccumulateGrad
from gpugrad.cuda import errors as device_errors
from gpugrad.tensor import Tensor

_NDARRAY = numpy.ndarray
_TENSOR = Tensor


class _Callbacks(threading.local):
    pending = None        # the callbacks queued during the running backward pass, or None outside one


_callbacks = _Callbacks()


def queue_callback(callback):
    """Run ``callback()`` once the running backward pass has finished
    (torch's ``Variable._execution_engine.queue_callback``): DistributedDataParallel
    waits for its gradient all-reduces there."""
    if _callbacks.pending is None:
        raise RuntimeError("queue_callback can only be called during a backward pass")
    _callbacks.pending.append(callback)


class _Seeds(threading.local):
    arrays = frozenset()      # ids of the implicit all-ones root gradients of the running pass
    known = None              # {node: the host value of the gradient that reaches it} in the running pass


_seeds = _Seeds()


def is_implicit_seed(grad, broadcast=False):
    """True when ``grad`` is the engine's own 1 for a scalar root
    (``loss.backward()``), not a gradient anyone computed or passed in: a node
    may then hand back a gradient it computed in its forward.  ``broadcast``:
    also a view of that 1 broadcast to any shape (what sum's backward hands
    on for ``x.sum().backward()``: every element is the engine's 1)."""
    array = grad.array
    if id(array) in _seeds.arrays:
        return True
    if not broadcast or not _seeds.arrays or any(s for n, s in zip(array.shape, array.strides) if n > 1):
        return False
    address = _address(array)
    return any(id(seed) in _seeds.arrays and seed.dtype == array.dtype and _address(seed) == address
               for seed in _kept_seeds.values())


def _address(array):
    return array.data.ptr if backend.is_cupy_array(array) else array.__array_interface__["data"][0]


def known_upstream(node):
    """The gradient that reaches ``node`` in the running backward pass as a
    host value (a NumPy scalar of its output's dtype), where the engine knows
    it without reading the device: the implicit seed 1 of ``loss.backward()``
    carried down a chain of scalar-only ops (``2 * loss``, ``loss / k``,
    ``-loss``, a cast) to a node that asks (``takes_known_upstream``); else
    None."""
    known = _seeds.known
    return None if known is None else known.get(node)


# the most nodes _carry_seed walks from the root: a scaled loss is a short chain (2 * loss: Mul; in bfloat16
# Mul and the cast back)
CARRY_STEPS = 8


def _carry_seed(roots, root_grads, dependencies):
    """known_upstream's table for a pass from one root with the implicit seed:
    the seed's value carried down nodes that each hand a constant multiple of
    it to one input (their ``constant_gradient``: the host value of their
    backward's result, computed as the device computes it), an input no other
    edge reaches, to the first node with ``takes_known_upstream``; None where
    the chain ends before one (a tensor scale, a hook, a node of several
    consumers)."""
    node, nr = roots[0]
    value = root_grads[0].array.dtype.type(1)
    for _ in range(CARRY_STEPS):
        if nr != 0 or node._pre_hooks is not None or node._retained is not None:
            return None
        kind = type(node)
        if getattr(kind, "takes_known_upstream", False):
            return {node: value}
        carry = getattr(kind, "constant_gradient", None)
        step = None if carry is None else carry(node, value)
        if step is None:
            return None
        index, value = step
        edge = node._edges[index]
        if not edge or dependencies.get(edge[0]) != 1:
            return None
        node, nr, shape, dtype = edge
        if len(shape) and numpy.prod(shape) != 1:
            return None
        if value.dtype != dtype:
            value = dtype.type(value)          # as _validate casts the gradient to the input's dtype
    return None


def _as_tuple(value):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return (value,)


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of the
    graph's leaves, or only of ``inputs`` where given (leaves or not).
    ``grad_tensors`` are the upstream gradients (may be omitted for
    one-element tensors); ``create_graph=True`` makes the gradients
    differentiable; ``retain_graph`` keeps the saved values for another pass."""
    tensors = _as_tuple(tensors)
    grad_tensors = _as_tuple(grad_tensors) or (None,) * len(tensors)
    if len(grad_tensors) != len(tensors):
        raise RuntimeError(f"got {len(grad_tensors)} gradients for {len(tensors)} tensors")
    if inputs is not None:
        inputs = _as_tuple(inputs)
        if not inputs:
            raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=inputs, allow_unused=True,
                 accumulate=True)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=None, is_grads_batched=False, materialize_grads=False):
    """The gradients of ``outputs`` w.r.t. ``inputs``, returned as a tuple; no
    ``.grad`` is touched.  ``create_graph=True`` makes them differentiable.
    An input the outputs do not depend on raises, unless ``allow_unused``
    (then None) or ``materialize_grads`` (then zeros)."""
    if is_grads_batched:
        raise NotImplementedError("autograd.grad(is_grads_batched=True) is not supported by gpugrad")
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    grad_outputs = _as_tuple(grad_outputs) or (None,) * len(outputs)
    if len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad_outputs has {len(grad_outputs)} entries for {len(outputs)} outputs")
    if allow_unused is None:
        allow_unused = materialize_grads
    elif materialize_grads and not allow_unused:
        raise ValueError("Expected allow_unused to be True or not passed when materialize_grads=True")
    grads = run_backward(outputs, grad_outputs, retain_graph, create_graph, inputs=inputs,
                         allow_unused=allow_unused)
    if materialize_grads:
        grads = [Tensor._make(i.xp.zeros(i.shape, dtype=i.dtype)) if g is None else g
                 for i, g in zip(inputs, grads)]
    return tuple(grads)


def _root_edge(tensor, index):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"element {index} of tensors is a {type(tensor).__name__}, not a Tensor")
    if not tensor.requires_grad:
        raise RuntimeError(f"element {index} of tensors does not require grad and does not have a grad_fn")
    return tensor.gradient_edge()


_kept_seeds = {}     # (device, dtype, shape) -> the kept 1 of loss.backward()


def _implicit_seed(t):
    """The 1 of ``loss.backward()``: a kept array (no allocation, and on CUDA no launch, per
    backward).  The engine never writes into a root gradient, and a leaf that would receive it
    gets a copy, as for any gradient the caller holds; on the CPU it is read-only besides, so that
    a formula writing into its incoming gradient raises instead of changing every later seed."""
    key = (backend.device_key(t.array), t.dtype, t.shape)
    one = _kept_seeds.get(key)
    if one is None:
        with backend.device_guard(t.device):
            one = t.xp.ones(t.shape, dtype=t.dtype)
        if isinstance(one, numpy.ndarray):
            one.flags.writeable = False
        _kept_seeds[key] = one
    return one


def _make_root_grads(tensors, grad_tensors, create_graph):
    grads, seeds = [], []
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if g is None:
            if t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = Tensor._make(_implicit_seed(t))
            seeds.append(id(g.array))
        else:
            if not isinstance(g, Tensor):
                g = Tensor._make(t.xp.asarray(g, dtype=t.dtype))
            if g.shape != t.shape:
                raise RuntimeError(
                    f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                    f"has a shape of {t.shape}.")
            if g.device != t.device:
                raise RuntimeError(
                    f"grad_output[{i}] is on {g.device} but output[{i}] is on {t.device}")
            if not create_graph:
                g = g.detach()
        grads.append(g)
    return grads, seeds


def _validate(grad, edge, node):
    """``grad`` for the input of ``node`` at ``edge``: of its device (else an error), summed to its
    shape and cast to its dtype."""
    _, _, shape, dtype = edge
    index = next(i for i, e in enumerate(node._edges) if e is edge)
    if backend.device_key(grad.array) != node._device:
        raise RuntimeError(
            f"Function {node.name()} returned an invalid gradient at index {index} - expected "
            f"device {backend.device_from_key(node._device)} but got {grad.device}")
    if grad.array.shape != shape:
        try:
            grad = grad.sum_to_size(shape)
        except (RuntimeError, ValueError):
            raise RuntimeError(
                f"Function {node.name()} returned an invalid gradient at index {index} - got "
                f"{list(grad.shape)} but expected shape compatible with {list(shape)}") from None
    if grad.array.dtype != dtype:
        grad = grad.to(dtype)
    return grad


def _collect(roots):
    """Count, for every node reachable from the roots, the edges that reach it."""
    dependencies = {}
    stack = list({node: None for node, _ in roots})      # a node once, though several of its outputs are roots
    root_nodes = set(stack)
    while stack:
        node = stack.pop()
        for edge in node._edges:
            if edge:
                child = edge[0]
                if child in dependencies:        # seen before: one more edge
                    dependencies[child] += 1
                else:
                    dependencies[child] = 1
                    if child not in root_nodes:
                        stack.append(child)
    return dependencies


def _needed(roots, targets, dependencies):
    """Nodes from which a target node can be reached: only these need to run."""
    remaining = dict(dependencies)
    order = []
    stack = list({node for node, _ in roots if remaining.get(node, 0) == 0})
    while stack:                       # Kahn's topological order, parents first
        node = stack.pop()
        order.append(node)
        for edge in node._edges:
            if edge:
                child = edge[0]
                remaining[child] -= 1
                if remaining[child] == 0:
                    stack.append(child)
    needed = set(targets)
    for node in reversed(order):       # children before parents
        if node not in needed and any(e and e[0] in needed for e in node._edges):
            needed.add(node)
    return needed


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None,
                 allow_unused=False, accumulate=False):
    """Back-propagate from ``tensors``.

    ``accumulate=True`` (``backward``): gradients go to ``.grad`` of the
    leaves, or of ``inputs`` only where given.  Otherwise (``grad``) the
    gradients of ``inputs`` are returned and no ``.grad`` is touched.
    """
    if retain_graph is None:
        retain_graph = create_graph
    roots = [_root_edge(t, i) for i, t in enumerate(tensors)]
    root_grads, seeds = _make_root_grads(tensors, grad_tensors, create_graph)

    capture = None
    if inputs is not None:
        capture = {}
        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"inputs[{i}] is not a Tensor")
            if not t.requires_grad:
                raise RuntimeError(f"One of the differentiated Tensors (inputs[{i}]) does not require grad")
            capture.setdefault(t.gradient_edge(), []).append(i)
    captured = [None] * (len(inputs) if inputs is not None else 0)
    accumulate_leaves = accumulate and inputs is None
    kept = []        # the arrays a .grad took without a copy in this pass

    def shared(array, own=None):
        # _accumulate's question, asked only when a .grad would take an array without a copy
        return _held_elsewhere(array, buffers, root_grads, captured, kept, own)

    dependencies = _collect(roots)
    needed = None if capture is None else _needed(roots, [node for node, _ in capture], dependencies)
    buffers = {}
    for (node, nr), g in zip(roots, root_grads):
        _route(buffers, node, nr, g, create_graph)
    ready = []
    for node in {node: None for node, _ in roots}:      # each root node once (several outputs of one node)
        if dependencies.get(node, 0) == 0 and node in buffers:
            heapq.heappush(ready, (-node._sequence_nr, id(node), node))

    cpu = all(t.is_cpu for t in tensors)
    known = _carry_seed(roots, root_grads, dependencies) if seeds and len(roots) == 1 and not create_graph \
        else None
    previous_seeds, _seeds.arrays = _seeds.arrays, frozenset(seeds)
    previous_known, _seeds.known = _seeds.known, known
    previous_callbacks, _callbacks.pending = _callbacks.pending, []
    heappop, heappush = heapq.heappop, heapq.heappush
    following = None    # a node that became ready while no other was: it runs next, past the heap
    try:
        with set_grad_enabled(create_graph), autocast_mode.suspended():
            while following is not None or ready:
                if following is not None:
                    node, following = following, None
                else:
                    node = heappop(ready)[2]
                grads = buffers.pop(node, None)
                if grads is None:        # no gradient reached it: its inputs get none from it either
                    _release_children(node, dependencies, ready)
                    continue
                if node._hooked:        # a leaf (AccumulateGrad), or hooks or retained outputs: one check
                    leaf = type(node) is AccumulateGrad
                    grads = _run_pre_hooks(node, grads, shared, kept)
                else:
                    leaf = False
                if capture is not None:
                    for nr, g in enumerate(grads):
                        for i in capture.get((node, nr), ()):
                            captured[i] = g
                if leaf:
                    if accumulate_leaves and grads[0] is not None:
                        variable = node.variable
                        _accumulate(variable, grads[0], create_graph, shared, kept)
                        for hook in list(variable.post_accumulate_hooks()):
                            hook(variable)
                    continue
                if needed is not None and node not in needed:
                    _release_children(node, dependencies, ready)
                    continue

                edges = node._edges
                if len(grads) == 1 and grads[0] is not None:       # _call_backward's common case
                    in_grads = type(node).backward(node, grads[0])
                    if type(in_grads) is _TENSOR and len(edges) == 1:     # one input, one gradient
                        in_grads = (in_grads,)
                    elif type(in_grads) is not tuple or len(in_grads) < len(edges) or \
                            not node.forward_takes_arrays:       # gpugrad's own ops return well-formed tuples
                        in_grads = _check_result(node, in_grads)
                else:
                    in_grads = _call_backward(node, grads)
                if not retain_graph:
                    if not node._plain_release:
                        node.release()
                    elif node._saved:           # Function.release, inline
                        node._saved = None
                        node._had_saved = True
                on_cpu = node._device == -1
                # zip stops at the last gradient returned: the edges after it are falsy (_check_result)
                for edge, g in zip(edges, in_grads):
                    if not edge:
                        continue
                    child, nr, shape, dtype = edge
                    if g is not None:
                        array = g.array
                        if type(array) is not _NDARRAY or array.shape != shape or array.dtype is not dtype \
                                or not on_cpu:       # `is not`: NumPy's dtypes are singletons (else _validate)
                            g = _validate(g, edge, node)
                            array = g.array
                        if child not in buffers and child._num_outputs == 1:    # _route's common case
                            buffers[child] = [g]
                        else:
                            _route(buffers, child, nr, g, create_graph)
                    left = dependencies[child] - 1
                    dependencies[child] = left
                    if left == 0:
                        if following is None and not ready:
                            following = child
                        else:
                            if following is not None:
                                heappush(ready, (-following._sequence_nr, id(following), following))
                                following = None
                            heappush(ready, (-child._sequence_nr, id(child), child))
        callbacks = _callbacks.pending
        while callbacks:                 # a callback may queue another
            callbacks.pop(0)()
    finally:
        _seeds.arrays = previous_seeds
        _seeds.known = previous_known
        _callbacks.pending = previous_callbacks
    if not cpu:
        device_errors.poll()     # a bad index a finished kernel recorded: raised here, without waiting

    if accumulate and inputs is not None:
        for i, (t, g) in enumerate(zip(inputs, captured)):
            if g is not None:
                _accumulate(t, g, create_graph, lambda array, i=i: shared(array, own=i), kept)
        return None
    if inputs is None:
        return None
    for i, g in enumerate(captured):
        if g is None and not allow_unused:
            raise RuntimeError(
                f"One of the differentiated Tensors (inputs[{i}]) appears to not have been used "
                "in the graph. Set allow_unused=True if this is the desired behavior.")
    return captured


def _release_children(node, dependencies, ready):
    for edge in node._edges:
        if edge:
            child = edge[0]
            dependencies[child] -= 1
            if dependencies[child] == 0:
                heapq.heappush(ready, (-child._sequence_nr, id(child), child))


def _route(buffers, node, nr, grad, create_graph):
    """Add a gradient to the input buffer of ``node`` at output ``nr`` (both
    already of the input's shape and dtype: a plain array sum unless the sum
    is to be differentiated)."""
    buf = buffers.get(node)
    if buf is None:
        buf = buffers[node] = [None] * node._num_outputs
    else:
        old = buf[nr]
        if old is not None:
            grad = old + grad if create_graph else Tensor._make(old.array + grad.array)
    buf[nr] = grad


def _run_pre_hooks(node, grads, shared, kept):
    """The hooks on the node's outputs (a leaf's own hooks for its accumulation
    node), then the .grad of outputs that retain it."""
    if type(node) is AccumulateGrad:
        hooks = node.variable.leaf_hooks()
        if not hooks or grads[0] is None:
            return grads
        grad = grads[0]
        for hook in list(hooks):
            result = hook(grad)
            if result is not None:
                grad = result
        return [grad]
    if node._pre_hooks is None and node._retained is None:
        return grads
    grads = list(grads)
    for nr, hooks in (node._pre_hooks or {}).items():
        for hook in list(hooks):
            if grads[nr] is None:
                break
            result = hook(grads[nr])
            if result is not None:
                grads[nr] = result
    for nr, ref in (node._retained or {}).items():
        tensor = ref()
        if tensor is not None and grads[nr] is not None:
            _accumulate(tensor, grads[nr], grads[nr].grad_fn is not None, shared, kept)
    return grads


def _call_backward(node, grads):
    """The node's backward on gradients some of which are None; None for every input when all are
    (the engine's loop still walks each edge: one per input)."""
    if len(grads) == 1:
        if grads[0] is None:
            return (None,) * len(node._edges)
        missing = False
    else:
        present = missing = False
        for g in grads:
            if g is None:
                missing = True
            else:
                present = True
        if not present:
            return (None,) * len(node._edges)
    if missing and node.materialize_grads:
        meta = node._output_meta
        grads = [Tensor._make(node.xp.zeros(meta[i][0], dtype=meta[i][1])) if g is None else g
                 for i, g in enumerate(grads)]
    return _check_result(node, type(node).backward(node, *grads))


def _check_result(node, result):
    """A backward's return value as a tuple of one gradient (or None) per input."""
    if type(result) is not tuple:
        result = (result,)
    edges = node._edges
    if len(result) > len(edges) and all(g is None for g in result[len(edges):]):
        result = result[:len(edges)]           # torch drops extra Nones
    # one gradient per argument of forward, as torch's (gpugrad's own ops may leave off trailing
    # arguments that take none)
    if len(result) > len(edges) or (len(result) < len(edges) and (not node.forward_takes_arrays
                                                                    or any(edges[len(result):]))):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                           f"(expected {len(edges)}, got {len(result)})")
    for g in result:
        if g is not None and not isinstance(g, Tensor):
            raise TypeError(f"function {node.name()} returned a gradient of type "
                            f"{type(g).__name__}; expected a Tensor or None")
    return result


def _held_elsewhere(array, buffers, root_grads, captured, kept, own):
    """Whether a gradient slot of the running pass other than the one being accumulated holds
    ``array``: an input buffer still pending, a root gradient (the caller's), a gradient captured
    for ``inputs`` (but ``captured[own]``), or a .grad that took it in this pass.  A backward
    formula makes its gradients fresh or hands on one it received (Add: one array to both
    inputs), so these are all the holders; the walk is over the pending frontier, once per .grad
    that would take an array, and nothing is counted per gradient."""
    for grads in buffers.values():
        for g in grads:
            if g is not None and g.array is array:
                return True
    for g in root_grads:
        if g.array is array:
            return True
    for i, g in enumerate(captured):
        if g is not None and g.array is array and i != own:
            return True
    return any(k is array for k in kept)


def _accumulate(tensor, grad, create_graph, shared, kept):
    """Add ``grad`` to ``tensor.grad`` (the one accumulation path, for leaves,
    ``backward(inputs=)`` and ``retain_grad``).  ``shared(array)``: whether another
    gradient slot of the pass holds the array (then .grad takes a copy)."""
    current = tensor._grad
    if current is None:
        if create_graph:
            tensor.grad = grad
        else:
            # Own the array: the gradient may be a (broadcast) view, the caller's
            # array, or handed to another input as well.
            array = grad.array
            if array.base is not None or not getattr(array.flags, "writeable", True) or shared(array):
                array = array.copy()
            else:
                kept.append(array)
            tensor.grad = Tensor._make(array)
    elif create_graph or current.grad_fn is not None:
        tensor.grad = current + grad
    else:
        xp = current.xp
        xp.add(current.array, grad.array, out=current.array)
        current.increment_version()
