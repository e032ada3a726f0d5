"""ctc_loss's Function (torch's ``CtcLossBackward0``): the connectionist
temporal classification loss of (T, N, C) log-probabilities, one negative
log-likelihood per sample, validated and reduced by ``nn.functional``.

The forward is the alpha recursion in log space over each sample's extended
label sequence (blanks interleaved: blank, l1, blank, l2, ..., blank),
vectorised over the batch and the states, one step per time step; the
backward is torch's ``ctc_loss_backward``: the beta recursion, then
``exp(lp) - exp(log(sum of alpha beta over the states labelled c) + nll - lp)``
times the incoming gradient -- the gradient as if the log-probabilities came
from a log_softmax, not the plain derivative of the composed math.  Both
compute in the input's dtype, as torch's kernels do."""

import numpy

from gpugrad import backend
from gpugrad.autograd.function import InternalFunction
from gpugrad.autograd.grad_mode import is_grad_enabled
from gpugrad.tensor import Tensor


def _logsumexp3(xp, a, b, c):
    """log(e^a + e^b + e^c), elementwise, as torch's kernel (0 as the shift where all are -inf)."""
    m = xp.maximum(xp.maximum(a, b), c)
    m = xp.where(m == -numpy.inf, 0, m)
    return xp.log(xp.exp(a - m) + xp.exp(b - m) + xp.exp(c - m)) + m


def _shift(xp, a, k):
    """a[..., s - k] for k > 0, a[..., s + |k|] for k < 0, -inf where that falls outside."""
    out = xp.full_like(a, -numpy.inf)
    if k > 0 and a.shape[-1] > k:
        out[..., k:] = a[..., :-k]
    elif k < 0 and a.shape[-1] > -k:
        out[..., :k] = a[..., -k:]
    return out


def extended_labels(targets, input_lengths, target_lengths, blank):
    """(labels, extended, skip) as host arrays: labels (N, S) the targets padded with
    blanks to S = max target length, extended (N, 2S + 1) with blanks interleaved,
    skip (N, 2S + 1) where state s may be entered from s - 2 (a label unlike the one
    before it).  ``targets`` is the host int64 array, padded (N, S') or concatenated."""
    count = len(target_lengths)
    lengths = numpy.asarray(target_lengths, dtype=numpy.int64).reshape(count)
    longest = int(lengths.max()) if count else 0
    k = numpy.arange(longest)
    valid = k[None, :] < lengths[:, None]
    if targets.ndim == 1:
        offsets = numpy.concatenate([[0], numpy.cumsum(lengths)[:-1]]).astype(numpy.int64)
        positions = numpy.where(valid, offsets[:, None] + k[None, :], 0)
        picked = targets[positions] if targets.size else numpy.zeros(positions.shape, numpy.int64)
    else:
        picked = targets[:, :longest]
    labels = numpy.where(valid, picked, blank).astype(numpy.int64)
    extended = numpy.full((count, 2 * longest + 1), blank, dtype=numpy.int64)
    extended[:, 1::2] = labels
    skip = numpy.zeros(extended.shape, dtype=bool)
    skip[:, 2:] = extended[:, 2:] != extended[:, :-2]
    return labels, extended, skip


class CtcLoss(InternalFunction):
    """Per-sample negative log-likelihoods (N,) of log_probs (T, N, C); the
    lengths are host int arrays, the labels device arrays (extended_labels')."""

    @staticmethod
    def forward(ctx, log_probs, labels, extended, skip, input_lengths, target_lengths, blank, zero_infinity):
        xp = ctx.xp
        steps, count, _ = log_probs.shape
        states = extended.shape[1]
        inf = numpy.inf
        batch = xp.arange(count)
        emit = log_probs[:, batch[:, None], extended]                    # (T, N, 2S + 1)
        alpha = xp.full((steps, count, states), -inf, dtype=log_probs.dtype)
        tl = xp.asarray(target_lengths)
        il = xp.asarray(input_lengths)
        if steps:
            alpha[0, :, 0] = emit[0, :, 0]
            if states > 1:
                alpha[0, :, 1] = xp.where(tl > 0, emit[0, :, 1], -inf)
        for t in range(1, steps):
            previous = alpha[t - 1]
            alpha[t] = _logsumexp3(xp, previous, _shift(xp, previous, 1),
                                   xp.where(skip, _shift(xp, previous, 2), -inf)) + emit[t]
        last = alpha[xp.maximum(il - 1, 0), batch] if steps else xp.full((count, states), -inf, log_probs.dtype)
        l1 = last[batch, 2 * tl]
        l2 = xp.where(tl > 0, last[batch, xp.maximum(2 * tl - 1, 0)], -inf)
        m = xp.maximum(l1, l2)
        m = xp.where(m == -inf, 0, m)
        nll = -(xp.log(xp.exp(l1 - m) + xp.exp(l2 - m)) + m)
        nll = xp.where(il == 0, xp.where(tl == 0, -0.0, inf), nll).astype(log_probs.dtype, copy=False)
        ctx.save_for_backward(log_probs, labels, extended, skip)
        ctx.alpha, ctx.emit, ctx.nll = alpha, emit, nll
        ctx.input_lengths, ctx.target_lengths, ctx.blank = input_lengths, target_lengths, blank
        ctx.zero_infinity = zero_infinity
        return nll

    @staticmethod
    def backward(ctx, grad):
        saved = ctx.saved_tensors
        log_probs, labels, extended, skip = [t.array for t in saved]
        xp = ctx.xp
        alpha, emit, nll = ctx.alpha, ctx.emit, ctx.nll
        steps, count, classes = log_probs.shape
        inf = numpy.inf
        batch = xp.arange(count)
        il = xp.asarray(ctx.input_lengths)
        tl = xp.asarray(ctx.target_lengths)
        states = xp.arange(extended.shape[1])
        ends = (states[None, :] == 2 * tl[:, None]) | ((states[None, :] == 2 * tl[:, None] - 1) & (tl[:, None] > 0))
        skip_back = xp.zeros_like(skip)
        skip_back[:, :-2] = skip[:, 2:]                    # state s may go on to s + 2
        beta = xp.full_like(alpha, -inf)
        for t in range(steps - 1, -1, -1):
            start = xp.where(ends, emit[t], -inf)
            if t < steps - 1:
                following = beta[t + 1]
                carried = _logsumexp3(xp, following, _shift(xp, following, -1),
                                      xp.where(skip_back, _shift(xp, following, -2), -inf)) + emit[t]
            else:
                carried = start
            beta[t] = xp.where((il - 1 == t)[:, None], start, xp.where((t < il - 1)[:, None], carried, -inf))
        with numpy.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # log(alpha beta / y) per state, and per class its sum (shifted by the max over the states)
            ratio = alpha + beta - emit
            top = ratio.max(axis=2) if ratio.shape[2] else xp.full((steps, count), -inf, ratio.dtype)
            top = xp.where(top == -inf, 0, top)
            share = xp.exp(ratio - top[..., None])
            # torch's kernel sets (not adds) the last label's class at t = input_length - 1 after the blank's:
            # where that label is the blank, the final blank state's share is dropped there
            last_blank = ((tl > 0) & (labels[batch, xp.maximum(tl - 1, 0)] == ctx.blank) if labels.shape[1]
                          else xp.zeros(count, dtype=bool))
            dropped = ((xp.arange(steps)[:, None] == il[None, :] - 1) & last_blank[None, :])[..., None] & (
                states[None, None, :] == 2 * tl[None, :, None])
            share = xp.where(dropped, 0, share)
            collected = xp.zeros(log_probs.shape, dtype=log_probs.dtype)
            collected[:, :, ctx.blank] = share[:, :, 0::2].sum(axis=2)
            for k in range(labels.shape[1]):
                collected[:, batch, labels[:, k]] += share[:, :, 2 * k + 1]
            occupancy = xp.exp(xp.log(collected) + top[..., None] + nll[None, :, None])
            out = (xp.exp(log_probs) - occupancy) * grad.array.astype(log_probs.dtype, copy=False)[None, :, None]
        keep = xp.arange(steps)[:, None] < il[None, :]
        if ctx.zero_infinity:
            keep = keep & (nll != inf)[None, :]
        out = Tensor._make(xp.where(keep[..., None], out, 0).astype(log_probs.dtype, copy=False))
        if is_grad_enabled():           # create_graph: a gradient whose own backward raises, as torch's
            out = CtcLossBackward.apply(out, saved[0])
        return out, None, None, None, None, None, None, None


class CtcLossBackward(InternalFunction):
    """The gradient, under create_graph: torch defines no derivative of it."""

    @staticmethod
    def forward(ctx, gradient, log_probs):
        return gradient.copy()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("derivative for aten::_ctc_loss_backward is not implemented")


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank, zero_infinity):
    """The per-sample losses (N,) of (T, N, C) log_probs; ``targets`` a host
    int64 array, the lengths host int64 arrays (all validated by the caller)."""
    labels, extended, skip = extended_labels(targets, input_lengths, target_lengths, blank)
    dev = log_probs.device
    labels, extended, skip = (Tensor._make(backend.to_device(a, dev)) for a in (labels, extended, skip))
    return CtcLoss.apply(log_probs, labels, extended, skip, input_lengths, target_lengths, blank,
                        bool(zero_infinity))
