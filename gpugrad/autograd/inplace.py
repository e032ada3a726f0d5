"""The in-place protocol: ``x.add_(y)``, ``x += y``, ``x[i] = v``, ``x.copy_(y)``.

An in-place op is computed out of place from an alias of ``x`` (the same
array, standing where ``x`` stood in the graph), then written into ``x``'s
array, so every alias and view sees it, and ``x``'s version goes up: a node
that saved the old ``x`` raises at backward instead of returning a wrong
gradient (torch's rule).  Recording a graph, ``x`` then takes the result's
place in the graph; if the op itself saved the old ``x`` for its backward, it
keeps a copy of the old values instead (torch's ``original_self``).

On a view ``v`` of a base ``b`` the base's history is rewritten, as torch's
CopySlices does: ``b`` becomes "``b`` with the region of ``v`` replaced by the
result", and ``v`` (and, lazily, every other view of ``b``) becomes a view of
that.  A leaf that requires grad, or a view of one, raises in grad mode.
"""

import numpy

from gpugrad import backend, dtypes
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled, no_grad
from gpugrad.tensor import Tensor


def _view_of(array, chain):
    """The array view that ``chain`` (view Functions and their arguments) makes of ``array``."""
    t = Tensor._make(array)
    with no_grad():
        for view_op, view_args in chain:
            t = view_op.apply(t, *view_args)
    return t.array


OVERLAP = ("unsupported operation: more than one element of the written-to tensor refers to a single "
            "memory location. Please clone() the tensor before performing the operation.")


def overlaps(array):
    """torch's internal-overlap test: some dim of more than one element has stride 0 (an expanded tensor)."""
    return any(n > 1 and stride == 0 for n, stride in zip(array.shape, array.strides))


PARTIAL_OVERLAP = ("unsupported operation: some elements of the input tensor and the written-to tensor refer to a "
                   "single memory location. Please clone() the tensor before performing the operation.")


def _dense(array):
    """torch's is_non_overlapping_and_dense: the elements fill one block of memory, in some order of the dims."""
    expected = array.itemsize
    for stride, n in sorted((stride, n) for n, stride in zip(array.shape, array.strides) if n != 1):
        if stride != expected:
            return False
        expected *= n
    return True


def _address(array):
    return array.__array_interface__["data"][0] if type(array) is numpy.ndarray else array.data.ptr


def partially_overlaps(a, b):
    """torch's get_overlap_status is Partial: both dense, in the same memory, over ranges that meet but are not
    the same elements in the same layout (an input that is the written tensor itself is fine)."""
    if not a.size or not b.size or not _dense(a) or not _dense(b) or not backend.may_share_memory(a, b):
        return False
    a_begin, b_begin = _address(a), _address(b)
    a_end, b_end = a_begin + a.size * a.itemsize, b_begin + b.size * b.itemsize
    if a_begin == b_begin and a_end == b_end:
        return a.strides != b.strides
    return a_begin < b_end and b_begin < a_end


def _write(destination, source):
    if destination.size == 0:
        return
    if isinstance(destination, numpy.ndarray) and not destination.flags.writeable:
        destination = backend.writable_alias(destination)      # an expanded view (stride 0): fill_ only
    destination[...] = source


class CopySlices(InternalFunction):
    """The base after an in-place op on one of its views: ``base`` with the
    view's region replaced by ``value`` (written into the base's array)."""

    _backward_suffix = ""

    @staticmethod
    def forward(ctx, base, value, chain):
        ctx.chain = chain
        _write(_view_of(base, chain), value)
        return base

    @staticmethod
    def backward(ctx, grad):
        grad_base = ZeroRegion.apply(grad, ctx.chain) if ctx.needs_input_grad[0] else None
        grad_value = None
        if ctx.needs_input_grad[1]:
            grad_value = grad
            for view_op, view_args in ctx.chain:
                grad_value = view_op.apply(grad_value, *view_args)
        return grad_base, grad_value, None


class ZeroRegion(InternalFunction):
    """A copy of x with the region a view chain selects set to zero (linear and self-adjoint)."""

    @staticmethod
    def forward(ctx, x, chain):
        ctx.chain = chain
        out = x.copy()
        region = _view_of(out, chain)
        if region.size and overlaps(region):        # torch's backward of a fill_ on an expanded view
            raise RuntimeError(OVERLAP)
        if isinstance(region, numpy.ndarray) and not region.flags.writeable:   # a region of an expanded view
            region = backend.writable_alias(region)
        region[...] = 0
        return out

    @staticmethod
    def backward(ctx, grad):
        return ZeroRegion.apply(grad, ctx.chain), None


def _check_result(tensor, result, any_cast, overlap_ok):
    """The op's result fits the tensor written (its arguments were checked by the op itself, first)."""
    if not overlap_ok and tensor.array.size and overlaps(tensor.array):
        raise RuntimeError(OVERLAP)
    if result.shape != tensor.shape:
        raise RuntimeError(f"output with shape {list(tensor.shape)} doesn't match the broadcast shape "
                           f"{list(result.shape)}")
    if not any_cast and result.dtype != tensor.dtype and \
            dtypes.category(result.dtype) > dtypes.category(tensor.dtype):
        raise RuntimeError(f"result type {dtypes.dtype_name(result.dtype)} can't be cast to the desired "
                           f"output type {dtypes.dtype_name(tensor.dtype)}")


def apply(tensor, op, args=(), kwargs=None, any_cast=False, overlap_ok=False):
    """Run ``op(tensor, *args, **kwargs)`` in place on ``tensor``; returns ``tensor``.

    The result is cast to ``tensor``'s dtype; one of a higher category (a float
    result for an integer tensor) raises unless ``any_cast`` (``copy_``).  A
    tensor whose elements share memory (expanded) raises as in torch, unless
    ``overlap_ok`` (``fill_``: every element gets the same value).
    """
    kwargs = kwargs or {}
    if getattr(op, "overlap_checked_first", False) and tensor.array.size and overlaps(tensor.array):
        raise RuntimeError(OVERLAP)                 # (index_add_: torch asks before it checks the indices)
    if not getattr(op, "reads_value_first", False):     # (masked_fill_ reads its 0-d value before writing)
        for value in tuple(args) + tuple(kwargs.values()):
            if isinstance(value, Tensor) and partially_overlaps(tensor.array, value.array):
                raise RuntimeError(PARTIAL_OVERLAP)
    recording = is_grad_enabled() and (tensor.requires_grad or any(
        isinstance(a, Tensor) and a.requires_grad for a in args))
    if not recording:
        with no_grad():
            result = op(tensor, *args, **kwargs)
        _check_result(tensor, result, any_cast, overlap_ok)
        if result.array is not tensor.array:
            _write(tensor.array, result.array)
        tensor.increment_version()
        return tensor

    if tensor.is_leaf and tensor.requires_grad:
        raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
    view = tensor.view_chain()
    if view is not None and view[0].is_leaf and view[0].requires_grad:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                           "operation.")
    alias = tensor.alias()
    if any(a is tensor for a in args):      # x.mul_(x): the operand is x as it will be, saved with x's version
        other = tensor.alias()
        other.array = tensor.array.view()   # (its own array object: an op saving it saves the operand, not self)
        args = tuple(other if a is tensor else a for a in args)
    result = op(alias, *args, **kwargs)
    _check_result(tensor, result, any_cast, overlap_ok)
    if result.array is tensor.array:
        result = Tensor._make(result.array.copy(), *result.gradient_edge()) if result.requires_grad else result
    if result.grad_fn is not None:
        result.grad_fn.keep_original(alias)
    if result.dtype != tensor.dtype:
        result = result.to(tensor.dtype)
    if view is None:
        _write(tensor.array, result.array)
        tensor.increment_version()
        if result.grad_fn is not None:
            result.grad_fn.rebind_output(result, tensor)
        tensor.set_history(*(result.gradient_edge() if result.requires_grad else (None, 0)))
        return tensor
    base, chain = view
    new_base = CopySlices.apply(base.alias(), result, chain)
    base.increment_version()              # views share their base's version counter
    if result.grad_fn is not None:
        result.grad_fn.rebind_output(result, tensor)
    base.set_history(new_base.grad_fn, 0)
    tensor.gradient_edge()                # the view's history, replayed on the new base
    return tensor
