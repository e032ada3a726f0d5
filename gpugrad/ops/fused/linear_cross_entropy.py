"""linear_cross_entropy: ``cross_entropy(linear(x, W, b), t)`` without the
N x V logits.

The rows are processed in chunks.  Per chunk, one matrix product gives the
chunk's logits, the fused cross-entropy (the CUDA kernel, or its NumPy twin)
gives the rows' losses and, when the loss is reduced, the logits' gradient in
the same pass; that gradient goes straight into the input's gradient (one
product) and the weight's and bias's (accumulated), and the chunk is dropped.
So the forward leaves behind the three gradients, scaled by the upstream
gradient in the backward (torch's chunked path does the same), plus the rows'
statistics (m, log-sum-exp) in case the backward must run again
(``retain_graph``) or the reduction is 'none' (the upstream gradient per row
is only known then): the chunks are then recomputed.

Peak extra memory: one chunk of logits and its gradient (the memory budget
sets the chunk), plus the gradients themselves.  A backward with
create_graph (double backward) builds the unfused logits and differentiates
them, as torch.
"""

from gpugrad import backend, dtypes
from gpugrad.autograd import engine
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.ops.fused import cross_entropy
from gpugrad.ops.fused.rows import pick
from gpugrad.ops.linalg import linear
from gpugrad.tensor import Tensor

# bytes for one chunk's logits and their gradient, by default: on the CPU small chunks cost no speed
# (8192 x 32000 x 512: 0.98x the unfused time at 32 MiB); a GPU wants larger products per launch
MEMORY_BUDGET = {"cpu": 32 << 20, "cuda": 512 << 20}
PRODUCT_BLOCK = 8 << 20          # the weight gradient is accumulated in blocks of rows of this many bytes


def chunk_rows(rows, classes, itemsize, device_type, budget=None, chunk=None):
    """Rows per chunk: ``chunk`` when given, else as many as fit the budget."""
    if chunk is not None:
        return max(1, int(chunk))
    budget = MEMORY_BUDGET[device_type] if budget is None else int(budget)
    return max(1, min(max(rows, 1), budget // max(1, 2 * classes * itemsize)))


def _chunk_forward(xp, z, target, w, w_sum, ignore_index, smoothing, with_grad):
    """(per-row losses in the accumulation dtype, m, ls, the gradient of their sum w.r.t. z or None)."""
    forward = pick(cross_entropy.forward_numpy, cross_entropy.forward_cuda, z, (1,))
    out = forward(z, target, w, w_sum, ignore_index, smoothing, "none", with_grad, loss_in_acc=True, overwrite=True)
    dz = out.grad
    if with_grad and dz is None:          # declined by the kernels (few long rows, split over blocks)
        dz = _chunk_backward(z, target, w, w_sum, ignore_index, smoothing, out.m, out.ls,
                             xp.ones(1, dtype=z.dtype))
    return out.loss, out.m, out.ls, dz


def _chunk_backward(z, target, w, w_sum, ignore_index, smoothing, m, ls, per_row):
    """The gradient w.r.t. z of sum_r per_row[r] * loss_r (per_row: one value per row, or one for all)."""
    backward = pick(cross_entropy.backward_numpy, cross_entropy.backward_cuda, z, (1,))
    return backward(z, target, w, w_sum, ignore_index, smoothing, m, ls, per_row, None)


def _wide(array, acc):
    """A half-type operand of a product whose result is accumulated: widened first."""
    return array if array.dtype == acc else array.astype(acc)


class LinearCrossEntropy(InternalFunction):
    """The chunked linear + cross-entropy over (N, D) rows and (N,) class indices."""

    @staticmethod
    def forward(ctx, x, weight, bias, target, w, w_sum, ignore_index, reduction, smoothing, chunk, acc):
        xp = ctx.xp
        rows = x.shape[0]
        needs = ctx.needs_input_grad
        grads_now = reduction != "none" and (needs[0] or needs[1] or needs[2])
        loss_acc = dtypes.accumulate_dtype(x.dtype)
        losses = xp.empty(rows, dtype=loss_acc)
        m_all, ls_all = xp.empty(rows, dtype=loss_acc), xp.empty(rows, dtype=loss_acc)
        gx, gw, gb = _gradient_buffers(xp, x, weight, acc, needs if grads_now else (False,) * 3)
        for start in range(0, rows, chunk):
            stop = min(rows, start + chunk)
            xc, z = _chunk_logits(x, weight, bias, start, stop)
            loss, m, ls, dz = _chunk_forward(xp, z, target[start:stop], w, w_sum, ignore_index, smoothing,
                                             grads_now)
            losses[start:stop], m_all[start:stop], ls_all[start:stop] = loss, m, ls
            del z
            if grads_now:
                _accumulate(xp, dz, xc, weight, gx, gw, gb, start, stop, acc)
        ctx.save_for_backward(x, weight, bias, target, w, w_sum, m_all, ls_all)
        ctx.options = (ignore_index, reduction, smoothing, chunk, acc)
        if reduction == "none":
            ctx.denominator = None
            ctx.grads = None
            return losses.astype(x.dtype, copy=False)
        total = backend.array_sum(losses)
        denominator = None
        if reduction == "mean":
            valid = target != ignore_index
            w_t = valid.astype(loss_acc) if w is None else w[xp.where(valid, target, 0)] * valid
            denominator = backend.array_sum(w_t)
            total = total / denominator
            if grads_now:
                # all rows ignored: the loss is nan, the gradients 0 (they are 0 before scaling), as torch's
                scale = xp.where(denominator != 0, 1 / denominator, 0).astype(acc)
                for g in (gw, gb):
                    if g is not None:
                        g *= scale
                if gx is not None:
                    gx *= scale.astype(gx.dtype)
        ctx.denominator = denominator
        ctx.grads = (gx, None if gw is None else gw.astype(weight.dtype, copy=False),
                     None if gb is None else gb.astype(bias.dtype, copy=False)) if grads_now else None
        return xp.asarray(total).astype(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        if is_grad_enabled():       # create_graph: the unfused op's gradient, with its graph
            return _differentiable_backward(ctx, grad) + (None,) * 8
        grads, ctx.grads = ctx.grads, None           # handed over once; a second backward recomputes
        if grads is not None:
            if engine.is_implicit_seed(grad):
                return tuple(None if g is None else Tensor._make(g) for g in grads) + (None,) * 8
            scale = grad.array
            return tuple(None if g is None else Tensor._make(g * scale.astype(g.dtype)) for g in grads) + (None,) * 8
        return _recompute(ctx, grad) + (None,) * 8

    def release(self):
        super().release()
        self.grads = None


def _differentiable_backward(ctx, grad):
    """The gradients of cross_entropy(linear(x, W, b)) as differentiable
    Tensors (the logits built whole: a second derivative is asked for)."""
    x, weight, bias, target, w, _, _, _ = ctx.saved_tensors
    ignore_index, reduction, smoothing = ctx.options[:3]
    wanted = [t for t, need in zip((x, weight, bias), ctx.needs_input_grad[:3]) if need]
    logits = linear(x, weight, bias)
    loss = cross_entropy.cross_entropy(logits, target, None if w is None else w.to(x.dtype), ignore_index,
                                       reduction, smoothing)
    found = iter(engine.grad([loss], wanted, [grad], create_graph=True, allow_unused=True))
    return tuple(next(found) if need else None for need in ctx.needs_input_grad[:3])


def _accumulate(xp, dz, xc, weight, gx, gw, gb, start, stop, acc):
    """One chunk's logits gradient into the input's, the weight's and the bias's gradients."""
    if gx is not None:
        gx[start:stop] = backend.matmul(dz, weight)
    if gw is not None:          # in blocks of classes: the product's temporary stays small
        xw = _wide(xc, acc)
        block = max(1, PRODUCT_BLOCK // (gw.shape[1] * gw.itemsize))
        for v in range(0, gw.shape[0], block):
            gw[v:v + block] += backend.matmul(_wide(dz[:, v:v + block], acc).T, xw)
    if gb is not None:
        gb += backend.array_sum(dz, axis=0, dtype=acc)


def _recompute(ctx, grad):
    """The backward from the saved rows: per-row upstream gradients, chunk by chunk."""
    x, weight, bias, target, w, w_sum, m, ls = [None if t is None else t.array for t in ctx.saved_tensors]
    ignore_index, reduction, smoothing, chunk, acc = ctx.options
    xp = ctx.xp
    needs = ctx.needs_input_grad
    rows = x.shape[0]
    loss_acc = m.dtype
    per_row = xp.broadcast_to(grad.array.astype(loss_acc).reshape(-1), (rows,))
    if reduction == "mean":
        denominator = ctx.denominator
        per_row = per_row * xp.where(denominator != 0, 1 / denominator, 0).astype(loss_acc)
    gx, gw, gb = _gradient_buffers(xp, x, weight, acc, needs)
    for start in range(0, rows, chunk):
        stop = min(rows, start + chunk)
        xc, z = _chunk_logits(x, weight, bias, start, stop)
        dz = _chunk_backward(z, target[start:stop], w, w_sum, ignore_index, smoothing, m[start:stop],
                             ls[start:stop], per_row[start:stop])
        del z
        _accumulate(xp, dz, xc, weight, gx, gw, gb, start, stop, acc)
    return (None if gx is None else Tensor._make(gx),
            None if gw is None else Tensor._make(gw.astype(weight.dtype, copy=False)),
            None if gb is None else Tensor._make(gb.astype(bias.dtype, copy=False)))


def _gradient_buffers(xp, x, weight, acc, needs):
    """The input's gradient (written chunk by chunk), and the weight's and bias's
    (accumulated in ``acc``), each only where ``needs`` says."""
    return (xp.empty_like(x) if needs[0] else None, xp.zeros(weight.shape, dtype=acc) if needs[1] else None,
            xp.zeros(weight.shape[0], dtype=acc) if needs[2] else None)


def _chunk_logits(x, weight, bias, start, stop):
    """Rows start:stop of x and their logits (a plain function, not a generator,
    so that the caller's ``del z`` frees the chunk before the gradient products)."""
    xc = x[start:stop]
    z = backend.matmul(xc, weight.T)
    if bias is not None:
        z += bias
    return xc, z


def linear_cross_entropy(input, weight, bias, target, class_weight, ignore_index, reduction, smoothing,
                         chunk=None, memory_budget=None, acc_dtype=None):
    """The chunked op on (N, D) input, (V, D) weight, (V,) bias or None and (N,)
    class indices (validated by ``nn.functional.linear_cross_entropy``)."""
    acc = dtypes.as_dtype(acc_dtype) if acc_dtype is not None else dtypes.accumulate_dtype(weight.dtype)
    w, w_sum = cross_entropy.class_weight_arrays(class_weight, input.dtype)
    rows = chunk_rows(input.shape[0], weight.shape[0], input.array.itemsize, input.device.type, memory_budget,
                      chunk)
    target = Tensor._make(target.xp.ascontiguousarray(target.array))     # (a kernel reads it contiguous)
    return LinearCrossEntropy.apply(input, weight, bias, target, None if w is None else Tensor._make(w),
                                    None if w_sum is None else Tensor._make(w_sum), int(ignore_index), reduction,
                                    float(smoothing), rows, acc)
