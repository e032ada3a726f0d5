"""The fused kernels' CUDA launchers, by kernel, in one index.

The launchers live with their ops (``gpugrad/ops/fused/<op>.py``: the
``<step>_cuda`` steps and the ``launch_*`` helpers they are built from) and
share ``gpugrad/cuda/launch.py``.  This module names them for code that
drives the kernels directly on CuPy arrays (kernel tests, and tools that run
each kernel over a matrix of shapes or under a memory profiler), with the
signatures below.  It has no code path of its own: each name is a launcher,
or one call that passes its arguments on to one (the (N, C) cross-entropy
also reads the rows' weights off the targets, which the launcher does not
ask the kernel for).  ``tests/test_cuda_fused_index.py`` holds the names and
their signatures.

Row launchers: x (any CuPy array with a RowLayout along one dim) to arrays
in the kernels' conventions (per-row statistics m, ls in the accumulation
dtype, in row order):

    row_layout(x, dim) / layout_of(x, dim)          launch.row_layout / layout_of
    lse_rows(x, layout, want_result=True)           (m, ls, lse or None): logsumexp.launch_statistics
    apply_row_stats(x, layout, m, ls, mode, grad=None, grad_stride=0)
                                                    logsumexp.launch_apply
    softmax_rows(x, layout, log)                    softmax.forward_cuda
    softmax_rows_backward(y, y_layout, grad, grad_layout, log)
                                                    softmax.backward_cuda
    cross_entropy_rows(x, layout, target, weight, weight_sum, ignore_index, smoothing, reduction, save_stats=True,
                       with_grad=False, loss_in_acc=False)
                                                    cross_entropy.forward_cuda's Forward as a dict
    cross_entropy_rows_backward(x, layout, target, weight, weight_sum, ignore_index, smoothing,
                                m, ls, grad, grad_stride, denominator)
                                                    cross_entropy.backward_cuda
    check_index_range(index, bound, kind, ignore_index=None, low=0)   indices.check_cuda

(N, C) launchers, rows along dim 1, per-row results as (N,) vectors:

    logsumexp_forward(x) -> (m, ls)       logsumexp_backward(x, m, ls, grad)
    softmax_forward(x, log)               softmax_backward(y, grad, log)
    cross_entropy_forward(x, target, weight, ignore_index, smoothing) -> (loss, row weight, m, ls)
    cross_entropy_backward(x, target, weight, ignore_index, smoothing, m, ls, grad)
    check_targets(target, cols, ignore_index)
"""

from gpugrad.cuda import errors
from gpugrad.cuda.launch import (  # noqa: F401  (names of this index)
    LaunchShape,
    RowLayout,
    contiguous_layout,
    launch_shape,
    layout_of,
    row_layout,
)
from gpugrad.ops.fused import cross_entropy, indices, logsumexp, softmax
from gpugrad.ops.fused.cross_entropy import GRAD_IN_FORWARD_MIN_COLS, REDUCTIONS  # noqa: F401

# -- by kernel, on a RowLayout ----------------------------------------------------------

lse_rows = logsumexp.launch_statistics
apply_row_stats = logsumexp.launch_apply
check_index_range = indices.check_cuda


def softmax_rows(x, layout, log):
    """softmax (log_softmax) of x along the layout's dim, in x's shape."""
    return softmax.forward_cuda(x, layout.dim, log)


def softmax_rows_backward(y, y_layout, grad, grad_layout, log):
    """The gradient of softmax (log_softmax) from its output y and the upstream
    gradient, in y's shape (the layouts name the dim)."""
    return softmax.backward_cuda(y, grad, y_layout.dim, log)


def cross_entropy_rows(x, layout, target, weight, weight_sum, ignore_index, smoothing, reduction,
                       save_stats=True, with_grad=False, loss_in_acc=False):
    """cross_entropy.forward_cuda over (N, C, d...) logits (class dim 1), its
    Forward as a dict (loss, m, ls, grad, denominator, source); the statistics
    are always kept (``save_stats`` is accepted for the callers that pass it)."""
    return cross_entropy.forward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, reduction,
                                      with_grad, loss_in_acc)._asdict()


def cross_entropy_rows_backward(x, layout, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad,
                                grad_stride, denominator):
    """cross_entropy.backward_cuda: ``grad`` holds one upstream value per row or
    one for all (``grad_stride`` 1 or 0, implied by its size)."""
    return cross_entropy.backward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad,
                                       denominator)


# -- (N, C) rows ------------------------------------------------------------------------

def logsumexp_forward(x):
    """(m, ls) per row, lse = m + ls."""
    result = logsumexp.forward_cuda(x, (1,))
    return result.m.reshape(-1), result.ls.reshape(-1)


def logsumexp_backward(x, m, ls, grad):
    """grad[i] * exp((x[i] - m[i]) - ls[i]) for each row i."""
    return logsumexp.backward_cuda(x, (1,), m, ls, grad)


def softmax_forward(x, log):
    return softmax.forward_cuda(x, 1, log)


def softmax_backward(y, grad, log):
    return softmax.backward_cuda(y, grad, 1, log)


def cross_entropy_forward(x, target, weight, ignore_index, smoothing):
    """Per row, in the accumulation dtype: (loss, the weight of the target
    class (0 where ignored or out of range), m, ls); ``weight``: class weights
    or None.  (The launcher does not ask the kernel for the row weights, which
    nothing in gpugrad uses: they are read off ``target`` and ``weight`` here.)"""
    weight_sum = None if weight is None else weight.sum(keepdims=True)
    result = cross_entropy.forward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, "none", False,
                                        loss_in_acc=True)
    used = (target != ignore_index) & (target >= 0) & (target < x.shape[1])
    row_weight = used.astype(result.m.dtype) if weight is None else weight[target * used] * used
    return result.loss, row_weight, result.m, result.ls


def cross_entropy_backward(x, target, weight, ignore_index, smoothing, m, ls, grad):
    """The gradient w.r.t. x; ``grad`` holds one upstream value per row, or one for all."""
    weight_sum = None if weight is None else weight.sum(keepdims=True)
    return cross_entropy.backward_cuda(x, target, weight, weight_sum, ignore_index, smoothing, m, ls, grad, None)


def check_targets(target, cols, ignore_index):
    """Record in the error word any class index outside [0, cols) that is not ignore_index."""
    indices.check_cuda(target, cols, errors.CLASS_INDEX, ignore_index)
