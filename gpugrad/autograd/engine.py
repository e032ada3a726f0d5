"""The backward pass: walk the graph from the outputs to the leaves.

Iterative throughout (a chain of 100,000 ops needs no recursion): one sweep
counts each node's incoming edges, then nodes run once every gradient that
feeds them has arrived, the most recently created first (torch's order).
Gradients reaching a node from several consumers are summed in its input
buffer; a leaf's are added to ``.grad``.  Each node's saved values are
released as soon as its backward has run, unless ``retain_graph``.

Gradients are validated against each input's metadata, as torch's engine
does: a gradient of a broadcast shape is summed back to the input's shape, and
one of another dtype is cast to the input's dtype.  Op backward formulas can
therefore return the gradient of the broadcast result as it is.
"""

import collections
import heapq

from gpugrad import backend
from gpugrad.autograd.function import AccumulateGrad
from gpugrad.autograd.grad_mode import set_grad_enabled


def _root_edge(tensor, index):
    if tensor.grad_fn is not None:
        return tensor.grad_fn, tensor._output_nr
    if tensor.requires_grad:
        return tensor._accumulator(), 0
    raise RuntimeError(f"element {index} of tensors does not require grad and does not have a grad_fn")


def _make_root_grads(tensors, grad_tensors, create_graph):
    grads = []
    for i, (t, g) in enumerate(zip(tensors, grad_tensors)):
        if g is None:
            if t.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = Tensor._make(t.xp.ones(t.shape, dtype=t.dtype))
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
    return grads


def _validate(grad, meta, node, index):
    shape, dtype = meta
    if backend.device_key(grad.data) != node._device:
        raise RuntimeError(
            f"Function {node.name()} returned an invalid gradient at index {index} - expected "
            f"device {backend.device_from_key(node._device)} but got {grad.device}")
    if grad.data.shape != shape:
        try:
            grad = grad.sum_to_size(shape)
        except (RuntimeError, ValueError):
            raise RuntimeError(
                f"Function {node.name()} returned an invalid gradient at index {index} - got "
                f"{list(grad.shape)} but expected shape compatible with {list(shape)}") from None
    if grad.data.dtype != dtype:
        grad = grad.to(dtype)
    return grad


def _collect(roots):
    """Count, for every node reachable from the roots, the edges that reach it."""
    dependencies = {}
    seen = set()
    stack = [node for node, _ in roots]
    for node in stack:
        seen.add(node)
    while stack:
        node = stack.pop()
        for edge in node.next_functions:
            if edge is None:
                continue
            child = edge[0]
            dependencies[child] = dependencies.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
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
        for edge in node.next_functions:
            if edge is not None:
                child = edge[0]
                remaining[child] -= 1
                if remaining[child] == 0:
                    stack.append(child)
    needed = set(targets)
    for node in reversed(order):       # children before parents
        if node not in needed and any(e is not None and e[0] in needed for e in node.next_functions):
            needed.add(node)
    return needed


def run_backward(tensors, grad_tensors, retain_graph, create_graph, inputs=None,
                 allow_unused=False):
    """Back-propagate from ``tensors``.

    With ``inputs=None`` gradients accumulate into the leaves' ``.grad``
    (``Tensor.backward``); otherwise the gradients of ``inputs`` are returned
    and no ``.grad`` is touched (``autograd.grad``).
    """
    if retain_graph is None:
        retain_graph = create_graph
    roots = [_root_edge(t, i) for i, t in enumerate(tensors)]
    root_grads = _make_root_grads(tensors, grad_tensors, create_graph)
    # Holders of each gradient array (buffers, the caller, retained .grad): a
    # leaf keeps an array as its .grad without a copy only when nothing else
    # holds it (Add's backward hands one array to both of its inputs).
    holders = collections.Counter(id(g.data) for g in root_grads)

    capture = None
    needed = None
    if inputs is not None:
        capture = {}
        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"inputs[{i}] is not a Tensor")
            if not t.requires_grad:
                raise RuntimeError(f"One of the differentiated Tensors (inputs[{i}]) does not require grad")
            capture.setdefault(t._edge(), []).append(i)
    captured = [None] * (len(inputs) if inputs is not None else 0)

    dependencies = _collect(roots)
    if capture is not None:
        needed = _needed(roots, [node for node, _ in capture], dependencies)
    buffers = {}
    for (node, nr), g in zip(roots, root_grads):
        _route(buffers, holders, node, nr, g)
    ready = []
    for node, _ in roots:
        if dependencies.get(node, 0) == 0 and node in buffers:
            heapq.heappush(ready, (-node._sequence_nr, id(node), node))

    with set_grad_enabled(create_graph):
        while ready:
            _, _, node = heapq.heappop(ready)
            grads = buffers.pop(node, None)
            if grads is None:
                continue
            for g in grads:
                if g is not None:
                    holders[id(g.data)] -= 1
            grads = _run_pre_hooks(node, grads, holders)
            if capture is not None:
                for nr, g in enumerate(grads):
                    for i in capture.get((node, nr), ()):
                        captured[i] = g
                        holders[id(g.data)] += 1

            if isinstance(node, AccumulateGrad):
                if inputs is None and grads[0] is not None:
                    _accumulate(node.variable, grads[0], create_graph, holders)
                continue
            if needed is not None and node not in needed:
                continue

            in_grads = _call_backward(node, grads)
            if not retain_graph:
                node._release()
            for index, edge in enumerate(node.next_functions):
                if edge is None:
                    continue
                child, nr = edge
                g = in_grads[index] if index < len(in_grads) else None
                if g is not None:
                    _route(buffers, holders, child, nr, _validate(g, node._input_meta[index], node, index))
                dependencies[child] -= 1
                if dependencies[child] == 0:
                    heapq.heappush(ready, (-child._sequence_nr, id(child), child))

    _check_device_errors(tensors)
    if inputs is None:
        return None
    for i, g in enumerate(captured):
        if g is None and not allow_unused:
            raise RuntimeError(
                f"One of the differentiated Tensors (inputs[{i}]) appears to not have been used "
                "in the graph. Set allow_unused=True if this is the desired behavior.")
    return captured


def _route(buffers, holders, node, nr, grad):
    """Add a gradient to the input buffer of ``node`` at output ``nr``."""
    buf = buffers.setdefault(node, [None] * node._num_outputs)
    old = buf[nr]
    if old is not None:
        holders[id(old.data)] -= 1
        grad = old + grad
    buf[nr] = grad
    holders[id(grad.data)] += 1


def _run_pre_hooks(node, grads, holders):
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
            g = grads[nr] if grads[nr].grad_fn is not None else grads[nr].detach()
            tensor._grad = g if tensor._grad is None else tensor._grad + g
            holders[id(tensor._grad.data)] += 1
    return grads


def _call_backward(node, grads):
    present = missing = False
    for g in grads:
        if g is None:
            missing = True
        else:
            present = True
    if not present:
        return ()
    if missing and node.materialize_grads:
        meta = node._output_meta
        grads = [Tensor._make(node.xp.zeros(meta[i][0], dtype=meta[i][1])) if g is None else g
                 for i, g in enumerate(grads)]
    result = type(node).backward(node, *grads)
    if type(result) is not tuple:
        result = (result,)
    expected = len(node.next_functions)
    if len(result) < expected and any(e is not None for e in node.next_functions[len(result):]):
        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                           f"(expected {expected}, got {len(result)})")
    for g in result:
        if g is not None and not isinstance(g, Tensor):
            raise TypeError(f"function {node.name()} returned a gradient of type "
                            f"{type(g).__name__}; expected a Tensor or None")
    return result


def _accumulate(leaf, grad, create_graph, holders):
    for hook in list(leaf._hooks or ()):
        result = hook(grad)
        if result is not None:
            grad = result
    if leaf._grad is None:
        if create_graph:
            leaf._grad = grad
        else:
            # Own the array: the gradient may be a (broadcast) view, the caller's
            # array, or handed to another input as well.
            data = grad.data
            if data.base is not None or holders[id(data)] > 0 or not getattr(data.flags, "writeable", True):
                data = data.copy()
            leaf._grad = type(grad)._make(data)
            holders[id(data)] += 1
    elif create_graph or leaf._grad.grad_fn is not None:
        leaf._grad = leaf._grad + grad
    else:
        xp = leaf._grad.xp
        xp.add(leaf._grad.data, grad.data, out=leaf._grad.data)
        leaf._grad._version_counter[0] += 1


def _check_device_errors(tensors):
    if tensors and tensors[0].device.type == "cuda":
        from gpugrad.cuda import errors
        errors.check()


from gpugrad.tensor import Tensor  # noqa: E402  (tensor.py imports this module)
