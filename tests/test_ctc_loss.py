"""F.ctc_loss and nn.CTCLoss against torch in float64 on random inputs: both
target layouts (padded, concatenated), every reduction, zero_infinity both
ways with an impossible sample, unbatched input, varying and zero lengths,
lengths as tensors or tuples, blank anywhere; values and the gradients
(torch's, as if from log_softmax); torch's errors; on the emulated cuda
device too."""

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import DEVICES, assert_close, to_numpy

import gpugrad
import gpugrad.nn as nn
import gpugrad.nn.functional as F


def _problem(rng, batch=None, impossible=True):
    """Log-probabilities (T, N, C), padded targets (N, S), lengths; one sample
    impossible (a target longer than its input can hold) when asked."""
    steps, classes = int(rng.integers(3, 9)), int(rng.integers(2, 6))
    count = int(rng.integers(1, 5)) if batch is None else batch
    blank = int(rng.integers(0, classes))
    x = rng.standard_normal((steps, count, classes)) * 2
    x = x - numpy.log(numpy.exp(x).sum(2, keepdims=True))
    input_lengths = rng.integers(1, steps + 1, count)
    input_lengths[0] = steps
    target_lengths = numpy.array([int(rng.integers(0, max(1, n // 2) + 1)) for n in input_lengths])
    others = [c for c in range(classes) if c != blank]
    width = int(target_lengths.max()) + int(rng.integers(0, 2))
    targets = rng.choice(others, (count, max(width, 1)))
    if impossible and count > 1:
        # more repeated labels than input steps: no alignment exists
        input_lengths[1] = max(2, min(input_lengths[1], 3))
        target_lengths[1] = input_lengths[1]
        targets = numpy.pad(targets, ((0, 0), (0, max(0, target_lengths[1] - targets.shape[1]))))
        targets[1, :target_lengths[1]] = others[0]
    return x, targets, input_lengths, target_lengths, blank


def _concatenated(targets, target_lengths):
    return numpy.concatenate([targets[i, :n] for i, n in enumerate(target_lengths)]).astype(numpy.int64)


def _both(device, x, targets, input_lengths, target_lengths, as_tuples=False, **kwargs):
    """(ours, theirs) losses and their log_probs leaves."""
    ours_x = gpugrad.tensor(x, device=device, requires_grad=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    lengths = ((tuple(int(n) for n in input_lengths), list(int(n) for n in target_lengths)) if as_tuples else None)
    ours = F.ctc_loss(ours_x, gpugrad.tensor(targets, device=device),
                      *(lengths or (gpugrad.tensor(input_lengths), gpugrad.tensor(target_lengths))), **kwargs)
    theirs = TF.ctc_loss(theirs_x, torch.tensor(targets),
                         *(lengths or (torch.tensor(input_lengths), torch.tensor(target_lengths))), **kwargs)
    return ours, theirs, ours_x, theirs_x


def _check(rng, ours, theirs, ours_x, theirs_x, tol=1e-10):
    assert tuple(ours.shape) == tuple(theirs.shape)
    assert ours.dtype == getattr(gpugrad, str(theirs.dtype).split(".")[1])
    assert_close(ours, theirs, tol, floor=1.0)
    upstream = rng.standard_normal(tuple(theirs.shape))
    theirs.backward(torch.tensor(upstream, dtype=theirs.dtype))
    ours.backward(gpugrad.tensor(upstream, device=ours.device).to(ours.dtype))
    a, b = to_numpy(ours_x.grad), to_numpy(theirs_x.grad)
    assert (numpy.isnan(a) == numpy.isnan(b)).all(), f"nan positions differ:\n{a}\n{b}"
    assert_close(numpy.nan_to_num(a), numpy.nan_to_num(b), tol, floor=1.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("zero_infinity", [False, True])
@pytest.mark.parametrize("layout", ["padded", "concatenated"])
def test_ctc_loss_matches_torch(rng, device, reduction, zero_infinity, layout):
    for trial in range(3):
        x, targets, input_lengths, target_lengths, blank = _problem(rng, batch=3 if trial == 0 else None)
        if layout == "concatenated":
            targets = _concatenated(targets, target_lengths)
        ours, theirs, ours_x, theirs_x = _both(device, x, targets, input_lengths, target_lengths,
                                               as_tuples=trial == 2, blank=blank, reduction=reduction,
                                               zero_infinity=zero_infinity)
        if trial == 0 and reduction == "none":
            assert numpy.isinf(to_numpy(ours)[1]) != zero_infinity      # the impossible sample
        _check(rng, ours, theirs, ours_x, theirs_x)


@pytest.mark.parametrize("device", DEVICES)
def test_ctc_loss_impossible_gradient_is_torchs(rng, device):
    """zero_infinity=False: an impossible sample's loss is inf and its gradient nan (torch's values)."""
    x, targets, input_lengths, target_lengths, blank = _problem(rng, batch=2)
    ours, theirs, ours_x, theirs_x = _both(device, x, targets, input_lengths, target_lengths, blank=blank,
                                           reduction="none")
    _check(rng, ours, theirs, ours_x, theirs_x)
    grad = to_numpy(ours_x.grad)
    assert numpy.isnan(grad[:input_lengths[1], 1]).all() and (grad[input_lengths[1]:, 1] == 0).all()


@pytest.mark.parametrize("device", DEVICES)
def test_ctc_loss_unbatched_and_zero_lengths(rng, device):
    x, targets, input_lengths, target_lengths, blank = _problem(rng, batch=1, impossible=False)
    for reduction in ("none", "mean", "sum"):
        for as_tuples in (False, True):
            ours, theirs, ours_x, theirs_x = _both(device, x[:, 0], targets[0, :target_lengths[0]],
                                                   input_lengths[:1], target_lengths[:1], as_tuples=as_tuples,
                                                   blank=blank, reduction=reduction)
            _check(rng, ours, theirs, ours_x, theirs_x)
    # empty targets, and an input length of 0 (with an empty target: loss 0; with a label: inf)
    x, targets, _, _, blank = _problem(rng, batch=3, impossible=False)
    input_lengths, target_lengths = numpy.array([x.shape[0], 0, 0]), numpy.array([0, 0, 1])
    for zero_infinity in (False, True):
        ours, theirs, ours_x, theirs_x = _both(device, x, targets, input_lengths, target_lengths, blank=blank,
                                               reduction="none", zero_infinity=zero_infinity)
        _check(rng, ours, theirs, ours_x, theirs_x)


@pytest.mark.parametrize("device", DEVICES)
def test_ctc_loss_float32_and_module(rng, device):
    x, targets, input_lengths, target_lengths, blank = _problem(rng, impossible=False)
    ours_x = gpugrad.tensor(x.astype(numpy.float32), device=device, requires_grad=True)
    theirs_x = torch.tensor(x.astype(numpy.float32), requires_grad=True)
    module, reference = nn.CTCLoss(blank=blank, reduction="sum"), torch.nn.CTCLoss(blank=blank, reduction="sum")
    assert repr(module) == repr(reference) == "CTCLoss()"
    ours = module(ours_x, gpugrad.tensor(targets, device=device).int(), gpugrad.tensor(input_lengths),
                  gpugrad.tensor(target_lengths))
    theirs = reference(theirs_x, torch.tensor(targets).int(), torch.tensor(input_lengths),
                       torch.tensor(target_lengths))
    assert ours.dtype == gpugrad.float32
    _check(rng, ours, theirs, ours_x, theirs_x, tol=1e-5)


def test_ctc_loss_errors_as_torchs(rng):
    x, targets, input_lengths, target_lengths, _ = _problem(rng, batch=3, impossible=False)
    target_lengths[0] = 1
    steps, count, classes = x.shape
    cases = [
        dict(input_lengths=numpy.array([steps + 1, 1, 1])),
        dict(input_lengths=numpy.array([-1, 1, 1])),
        dict(target_lengths=numpy.array([-1, 0, 0])),
        dict(target_lengths=numpy.array([targets.shape[1] + 1, 0, 0])),
        dict(blank=classes), dict(blank=-1), dict(blank=1.0), dict(blank=True),
        dict(input_lengths=input_lengths[:2]), dict(target_lengths=target_lengths[:2]),
        dict(x=x[0]), dict(x=x[None]), dict(targets=targets[None]), dict(targets=targets[:2]),
        # concatenated targets one longer than the lengths add up to (torch's size check)
        dict(targets=numpy.resize(targets.reshape(-1), int(target_lengths.sum()) + 1)),
        dict(input_lengths=input_lengths.astype(numpy.float64)),
        dict(x=x.astype(numpy.float16)), dict(x=x.astype(numpy.int64)),
        dict(x=x[:, :0]), dict(reduction="bad"),
        dict(input_lengths=(1.5, 1, 1)), dict(input_lengths=1),
    ]
    for case in cases:
        args = dict(x=x, targets=targets, input_lengths=input_lengths, target_lengths=target_lengths)
        args.update(case)
        kwargs = {k: args.pop(k) for k in ("blank", "reduction") if k in args}
        results = []
        for lib, functional in ((gpugrad, F), (torch, TF)):
            def wrap(v, lib=lib):
                return lib.tensor(v) if isinstance(v, numpy.ndarray) else v
            try:
                functional.ctc_loss(wrap(args["x"]), wrap(args["targets"]), wrap(args["input_lengths"]),
                                    wrap(args["target_lengths"]), **kwargs)
                results.append(None)
            except Exception as error:        # noqa: BLE001 -- compared with torch's below
                results.append(error)
        ours, theirs = results
        assert theirs is not None, case
        assert type(ours) is type(theirs), (case, ours, theirs)
        if not isinstance(theirs, TypeError):
            assert str(ours) == str(theirs), (case, str(ours), str(theirs))
    # a target value out of the class range (torch reads outside its memory): a clear error
    bad = targets.copy()
    bad[0, 0] = classes
    with pytest.raises(RuntimeError, match="out of range"):
        F.ctc_loss(gpugrad.tensor(x), gpugrad.tensor(bad), gpugrad.tensor(input_lengths),
                   gpugrad.tensor(target_lengths))


@pytest.mark.parametrize("device", DEVICES)
def test_ctc_loss_blank_in_targets_as_torch(rng, device):
    """Targets holding the blank (torch says they must not; its kernel still computes): torch's values and
    gradients, including its kernel's last step, which drops the final blank's share when the last label is
    the blank; on unnormalised log-probabilities."""
    steps, count, classes = 5, 4, 3
    x = rng.standard_normal((steps, count, classes))
    targets = rng.integers(0, classes, (count, 3))
    targets[0, -1] = targets[1, 0] = 0
    input_lengths, target_lengths = numpy.array([5, 4, 5, 3]), numpy.array([3, 2, 3, 1])
    for reduction in ("none", "sum"):
        ours, theirs, ours_x, theirs_x = _both(device, x, targets, input_lengths, target_lengths,
                                               reduction=reduction)
        _check(rng, ours, theirs, ours_x, theirs_x)


def test_ctc_loss_has_no_second_derivative(rng):
    x, targets, input_lengths, target_lengths, blank = _problem(rng, impossible=False)
    ours_x = gpugrad.tensor(x, requires_grad=True)
    loss = F.ctc_loss(ours_x, gpugrad.tensor(targets), tuple(input_lengths.tolist()), tuple(target_lengths.tolist()),
                      blank=blank)
    (grad,) = gpugrad.autograd.grad(loss, ours_x, create_graph=True)
    theirs_x = torch.tensor(x, requires_grad=True)
    expected, = torch.autograd.grad(TF.ctc_loss(theirs_x, torch.tensor(targets), tuple(input_lengths.tolist()),
                                                tuple(target_lengths.tolist()), blank=blank), theirs_x)
    assert_close(grad, expected, 1e-10, floor=1.0)
    with pytest.raises(RuntimeError, match="derivative for aten::_ctc_loss_backward is not implemented"):
        grad.sum().backward()
