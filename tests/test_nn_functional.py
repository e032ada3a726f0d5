"""gpugrad/nn/functional.py against torch.nn.functional: the fused
cross-entropy (every option), nll_loss, the other losses and layers."""

import contextlib

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import EMULATED, FLOAT_TOLERANCE, assert_close, assert_forward_backward, make_pair, to_torch, torch_device

import gpugrad
import gpugrad.nn.functional as F
from gpugrad.autograd import gradcheck, gradgradcheck

CE_OPTIONS = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"weight": True},
    {"ignore_index": 1},
    {"label_smoothing": 0.15},
    {"weight": True, "ignore_index": 2, "label_smoothing": 0.3},
    {"weight": True, "reduction": "none", "label_smoothing": 0.05},
    {"weight": True, "reduction": "sum", "ignore_index": 0},
]
SHAPES = [((7,), ()), ((6, 5), (6,)), ((4, 9, 3), (4, 3)), ((2, 5, 3, 2), (2, 3, 2))]


def _ce_args(rng, options, classes, dtype, device):
    kwargs = dict(options)
    theirs = dict(options)
    if kwargs.get("weight"):
        w = rng.uniform(0.2, 2.0, classes).astype(dtype)
        kwargs["weight"] = gpugrad.tensor(w, device=device)
        theirs["weight"] = to_torch(w, device=device)
    return kwargs, theirs


def _targets(rng, classes, shape, ignore_index=None, dtype="int64"):
    """Random class indices; with ignore_index, the first is ignored and the
    last is not (test_all_rows_ignored covers a batch with none used)."""
    t = rng.integers(0, classes, size=shape)
    if ignore_index is not None and t.size > 1:
        flat = t.reshape(-1)
        flat[0] = ignore_index
        if flat[-1] == ignore_index:
            flat[-1] = (ignore_index + 1) % classes
    return t.astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
@pytest.mark.parametrize("options", CE_OPTIONS, ids=str)
def test_cross_entropy_matches_torch(rng, device, dtype, shapes, options):
    input_shape, target_shape = shapes
    classes = input_shape[1] if len(input_shape) > 1 else input_shape[0]
    x, tx = make_pair(rng, input_shape, dtype, device, -4, 4)
    kwargs, tkwargs = _ce_args(rng, options, classes, dtype, device)
    t = _targets(rng, classes, target_shape, kwargs.get("ignore_index"))
    loss = F.cross_entropy(x, gpugrad.tensor(t, device=device), **kwargs)
    tloss = TF.cross_entropy(tx, to_torch(t, device=device), **tkwargs)
    assert loss.dtype == x.dtype
    assert_forward_backward(rng, loss, tloss, [(x, tx)], FLOAT_TOLERANCE[dtype])


@pytest.mark.parametrize("options", CE_OPTIONS[:7], ids=str)
def test_cross_entropy_second_derivatives(rng, device, options):
    x, _ = make_pair(rng, (4, 5), "float64", device)
    kwargs, _ = _ce_args(rng, options, 5, "float64", device)
    t = gpugrad.tensor(_targets(rng, 5, (4,), kwargs.get("ignore_index")), device=device)
    assert gradcheck(lambda a: F.cross_entropy(a, t, **kwargs), (x,))
    assert gradgradcheck(lambda a: F.cross_entropy(a, t, **kwargs), (x,))


def test_cross_entropy_hessian_matches_torch(rng, device):
    x, tx = make_pair(rng, (3, 4), "float64", device)
    t = _targets(rng, 4, (3,))
    w = rng.uniform(0.5, 1.5, 4)
    ours = gpugrad.autograd.functional.hessian(
        lambda a: F.cross_entropy(a, gpugrad.tensor(t, device=device), weight=gpugrad.tensor(w, device=device),
                                  label_smoothing=0.1), x)
    theirs = torch.autograd.functional.hessian(
        lambda a: TF.cross_entropy(a, to_torch(t, device=tx.device.type), weight=to_torch(w, device=tx.device.type),
                                   label_smoothing=0.1), tx.detach())
    assert_close(ours, theirs, 1e-10)


def test_logsumexp_hessian_matches_torch(rng, device):
    x, tx = make_pair(rng, (2, 3), "float64", device)
    ours = gpugrad.autograd.functional.hessian(lambda a: gpugrad.logsumexp(a, 1).sum(), x)
    theirs = torch.autograd.functional.hessian(lambda a: torch.logsumexp(a, 1).sum(), tx.detach())
    assert_close(ours, theirs, 1e-10)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2}, {"weight": True, "reduction": "sum"},
                                     {"reduction": "none", "weight": True, "label_smoothing": 0.1}], ids=str)
def test_cross_entropy_probability_targets(rng, device, dtype, options):
    x, tx = make_pair(rng, (5, 6, 2), dtype, device, -3, 3)
    kwargs, tkwargs = _ce_args(rng, options, 6, dtype, device)
    p = rng.dirichlet(numpy.ones(6), size=(5, 2)).transpose(0, 2, 1).astype(dtype)
    loss = F.cross_entropy(x, gpugrad.tensor(p, device=device), **kwargs)
    tloss = TF.cross_entropy(tx, to_torch(p, device=device), **tkwargs)
    assert_close(loss, tloss, FLOAT_TOLERANCE[dtype])
    loss.sum().backward()
    tloss.sum().backward()
    assert_close(x.grad, tx.grad, FLOAT_TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1, "weight": True}, {"reduction": "none"}], ids=str)
def test_cross_entropy_at_extreme_logits(rng, device, dtype, options):
    """+-1e4 logits and -inf (masked) classes, against torch in float64."""
    x = rng.uniform(-1e4, 1e4, size=(6, 11))
    x[0] = 1e4
    x[1, 3:] = -1e4
    x[2, 5:9] = -numpy.inf
    x[3] = x[3] * 0 + 1e4 + rng.uniform(-3, 3, 11)
    kwargs, tkwargs = _ce_args(rng, options, 11, "float64", device)
    t = _targets(rng, 11, (6,))
    t[2] = 1                                           # target not masked
    ours = gpugrad.tensor(x.astype(dtype), device=device, requires_grad=True)
    theirs = to_torch(x.astype(dtype).astype("float64"), device=device, requires_grad=True)  # same inputs
    if "weight" in kwargs:
        kwargs["weight"] = kwargs["weight"].to(getattr(gpugrad, dtype))
    loss = F.cross_entropy(ours, gpugrad.tensor(t, device=device), **kwargs)
    tloss = TF.cross_entropy(theirs, to_torch(t, device=device), **tkwargs)
    tol = FLOAT_TOLERANCE[dtype]
    assert_close(loss, tloss, tol)
    loss.sum().backward()
    tloss.sum().backward()
    assert_close(ours.grad, theirs.grad, tol)


def test_all_rows_ignored(device):
    x = gpugrad.randn(3, 4, dtype=gpugrad.float64, device=device, requires_grad=True)
    t = gpugrad.full((3,), -100, device=device)
    mean = F.cross_entropy(x, t)
    assert numpy.isnan(mean.item())                      # 0 / 0, as in torch
    assert F.cross_entropy(x, t, reduction="sum").item() == 0
    F.cross_entropy(x, t, reduction="sum").backward()
    assert x.grad.abs().sum().item() == 0
    tx = to_torch(x, requires_grad=True)
    assert numpy.isnan(TF.cross_entropy(tx, to_torch(t)).item())


def test_int32_targets_and_non_contiguous_input(rng, device):
    x, tx = make_pair(rng, (8, 12), "float64", device)
    t = _targets(rng, 6, (6,), dtype="int32")
    view, tview = x[1:7, ::2], tx[1:7, ::2]
    assert not view.is_contiguous()
    loss = F.cross_entropy(view, gpugrad.tensor(t, device=device), label_smoothing=0.1)
    tloss = TF.cross_entropy(tview, to_torch(t.astype("int64"), device=device), label_smoothing=0.1)
    assert_close(loss, tloss, 1e-10)
    loss.backward()
    tloss.backward()
    assert_close(x.grad, tx.grad, 1e-10)


@pytest.mark.parametrize("options", [{}, {"weight": True, "ignore_index": 2}, {"reduction": "none"},
                                     {"reduction": "sum", "weight": True}], ids=str)
def test_nll_loss_matches_torch_and_cross_entropy(rng, device, options):
    x, tx = make_pair(rng, (6, 5, 2), "float64", device)
    kwargs, tkwargs = _ce_args(rng, options, 5, "float64", device)
    t = _targets(rng, 5, (6, 2), kwargs.get("ignore_index"))
    gt = gpugrad.tensor(t, device=device)
    loss = F.nll_loss(F.log_softmax(x, 1), gt, **kwargs)
    tloss = TF.nll_loss(TF.log_softmax(tx, 1), to_torch(t, device=device), **tkwargs)
    assert_close(loss, tloss, 1e-10)
    assert_close(loss, F.cross_entropy(x, gt, **kwargs), 1e-12)
    loss.sum().backward()
    tloss.sum().backward()
    assert_close(x.grad, tx.grad, 1e-10)


@pytest.mark.parametrize("loss_fn", [F.cross_entropy, F.nll_loss])
def test_out_of_range_target_raises_naming_the_value(device, loss_fn):
    x = gpugrad.randn(4, 5, device=device, requires_grad=True)
    with pytest.raises(IndexError, match="Target 7 is out of bounds"):
        loss_fn(x, gpugrad.tensor([0, 7, 1, 2], device=device)).backward()
        # on the GPU: raised at the end of backward() when the kernel that met it has finished
        # (cross-entropy's forward writes the gradient, the backward launches nothing), else at a sync
        x.grad.sum().item()
    with pytest.raises(IndexError, match="Target -3 is out of bounds"):
        loss_fn(x, gpugrad.tensor([0, 1, -3, 2], device=device)).item()
    # nothing is left behind: the next call works
    assert numpy.isfinite(loss_fn(x, gpugrad.tensor([0, 4, 1, 2], device=device)).item())


def test_bad_arguments_raise_before_any_work():
    x = gpugrad.randn(4, 5)
    with pytest.raises(ValueError, match=r"Expected input batch_size \(4\) to match target batch_size \(3\)"):
        F.cross_entropy(x, gpugrad.tensor([0, 1, 2]))
    with pytest.raises(RuntimeError, match="expected target of dtype int64"):
        F.cross_entropy(x, gpugrad.tensor([0.0, 1.0, 2.0, 1.0]).bool())
    with pytest.raises(RuntimeError, match="weight tensor should be defined either for all 5 classes"):
        F.cross_entropy(x, gpugrad.tensor([0, 1, 2, 3]), weight=gpugrad.ones(4))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.cross_entropy(x, gpugrad.tensor([0, 1, 2, 3]), reduction="avg")
    with pytest.raises(RuntimeError, match="label_smoothing must be between 0.0 and 1.0"):
        F.cross_entropy(x, gpugrad.tensor([0, 1, 2, 3]), label_smoothing=1.5)
    with pytest.raises(RuntimeError, match="floating-point input"):
        F.cross_entropy(gpugrad.tensor([[1, 2]]), gpugrad.tensor([0]))
    with pytest.raises(RuntimeError, match="expected target size"):
        F.cross_entropy(gpugrad.randn(2, 3, 4), gpugrad.tensor([[0, 1, 2], [0, 1, 2]]))


@pytest.mark.cuda
def test_target_on_another_device_is_named():
    x = gpugrad.randn(4, 5, device="cuda")
    with pytest.raises(RuntimeError, match="target on cuda:0 like the input, but it is on cpu"):
        F.cross_entropy(x, gpugrad.tensor([0, 1, 2, 3]))


# -- other losses and layers -------------------------------------------------------------

def _check_losses(cases, leaves, tol):
    """Each (ours, torch's) loss agrees; so do the leaves' gradients of their sums."""
    total, ttotal = 0, 0
    for ours, theirs in cases:
        assert_close(ours, theirs, tol)
        total = total + ours.sum()
        ttotal = ttotal + theirs.sum()
    total.backward()
    ttotal.backward()
    for ours, theirs in leaves:
        assert_close(ours.grad, theirs.grad, tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_and_binary_losses(rng, device, reduction):
    x, tx = make_pair(rng, (4, 3), "float64", device, -3, 3)
    y, ty = make_pair(rng, (4, 3), "float64", device, 0, 1, requires_grad=False)
    p, tp = make_pair(rng, (4, 3), "float64", device, 0.05, 0.95)
    w = rng.uniform(0.5, 2, (4, 3))
    pw = rng.uniform(0.5, 3, (3,))
    cases = [
        (F.mse_loss(x, y, reduction=reduction), TF.mse_loss(tx, ty, reduction=reduction)),
        (F.l1_loss(x, y, reduction=reduction), TF.l1_loss(tx, ty, reduction=reduction)),
        (F.binary_cross_entropy(p, y, weight=gpugrad.tensor(w, device=device), reduction=reduction),
         TF.binary_cross_entropy(tp, ty, weight=to_torch(w, device=device), reduction=reduction)),
        (F.binary_cross_entropy_with_logits(x, y, reduction=reduction, pos_weight=gpugrad.tensor(pw, device=device)),
         TF.binary_cross_entropy_with_logits(tx, ty, reduction=reduction, pos_weight=to_torch(pw, device=device))),
        (F.binary_cross_entropy_with_logits(x * 100, y, reduction=reduction),
         TF.binary_cross_entropy_with_logits(tx * 100, ty, reduction=reduction)),
    ]
    _check_losses(cases, [(x, tx), (p, tp)], 1e-10)


def test_bce_with_logits_is_stable_and_twice_differentiable(rng, device):
    x = gpugrad.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], dtype=gpugrad.float64, device=device, requires_grad=True)
    y = gpugrad.tensor([0.0, 1.0, 0.5, 0.0, 1.0], dtype=gpugrad.float64, device=device)
    tx, ty = to_torch(x, requires_grad=True), to_torch(y)
    loss = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert_close(loss, TF.binary_cross_entropy_with_logits(tx, ty, reduction="none"), 1e-12)
    small, _ = make_pair(rng, (5,), "float64", device)
    assert gradgradcheck(lambda a: F.binary_cross_entropy_with_logits(a, y), (small,))


def test_layers_match_torch(rng, device):
    x, tx = make_pair(rng, (3, 4, 6), "float64", device)
    w, tw = make_pair(rng, (5, 6), "float64", device)
    b, tb = make_pair(rng, (5,), "float64", device)
    g, tg = make_pair(rng, (4, 6), "float64", device)
    h, th = make_pair(rng, (4, 6), "float64", device)
    out = F.linear(x, w, b).sum() + (F.layer_norm(x, (4, 6), g, h) ** 2).sum()
    tout = TF.linear(tx, tw, tb).sum() + (TF.layer_norm(tx, (4, 6), tg, th) ** 2).sum()
    assert_close(out, tout, 1e-10)
    out.backward()
    tout.backward()
    for ours, theirs in [(x, tx), (w, tw), (b, tb), (g, tg), (h, th)]:
        assert_close(ours.grad, theirs.grad, 1e-10)
    assert gradgradcheck(lambda a: F.layer_norm(a, (6,)), (gpugrad.tensor(rng.standard_normal((2, 6)),
                                                                           device=device, requires_grad=True),))
    small = [gpugrad.tensor(rng.standard_normal(s), device=device, requires_grad=True)
             for s in ((2, 3, 4), (5, 4), (5,))]
    assert gradgradcheck(lambda a, b, c: F.linear(a, b, c) ** 2, small)


def test_embedding_with_padding_matches_torch(rng, device):
    weight, tweight = make_pair(rng, (6, 3), "float64", device)
    idx = numpy.array([[0, 2, 5], [2, 2, 1]])
    out = F.embedding(gpugrad.tensor(idx, device=device), weight, padding_idx=2)
    tout = TF.embedding(to_torch(idx, device=device), tweight, padding_idx=2)
    assert_close(out, tout, 0)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    assert_close(weight.grad, tweight.grad, 1e-12)


def test_dropout_scales_and_respects_eval(device):
    gpugrad.manual_seed(0)
    x = gpugrad.ones(200_000, device=device, requires_grad=True)
    y = F.dropout(x, 0.3, training=True)
    kept = (y != 0).float().mean().item()
    assert abs(kept - 0.7) < 0.01
    values = numpy.unique(y.detach().cpu().numpy())
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / 0.7)
    y.sum().backward()
    assert_close(x.grad, y.detach(), 0)
    assert F.dropout(x, 0.3, training=False) is x


def test_one_hot_and_activations(rng, device):
    t = gpugrad.tensor([2, 0, 1], device=device)
    assert F.one_hot(t, 4).tolist() == TF.one_hot(to_torch(t), 4).tolist()
    x, tx = make_pair(rng, (10,), "float64", device, -3, 3)
    for ours, theirs in [(F.silu, TF.silu), (lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2)),
                         (F.normalize, lambda a: TF.normalize(a, dim=0))]:
        assert_close(ours(x) if ours is not F.normalize else F.normalize(x, dim=0), theirs(tx), 1e-12)


@pytest.mark.parametrize("op", ["cross_entropy", "logsumexp"])
def test_fused_forward_keeps_only_per_row_values(rng, device, op):
    """Besides its input, the fused forward keeps N-sized arrays, never an N x C softmax."""
    x, _ = make_pair(rng, (64, 300), "float32", device)
    t = gpugrad.tensor(rng.integers(0, 300, 64), device=device)
    out = F.cross_entropy(x, t, label_smoothing=0.1) if op == "cross_entropy" else gpugrad.logsumexp(x, 1)
    kept = [s[1] for s in out.grad_fn._saved if s is not None and s[0] != "input"]   # (kind, value, ...)
    assert kept and all(v.numel() <= 64 for v in kept if hasattr(v, "numel"))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_smooth_l1_huber_and_kl_div_match_torch(rng, device, reduction):
    x, tx = make_pair(rng, (5, 4), "float64", device, -3, 3)
    y, ty = make_pair(rng, (5, 4), "float64", device, -3, 3)
    logp, tlogp = make_pair(rng, (5, 4), "float64", device, -4, 0)
    q, tq = make_pair(rng, (5, 4), "float64", device, 0.01, 1)
    kl_reduction = "batchmean" if reduction == "mean" else reduction
    cases = [
        (F.smooth_l1_loss(x, y, reduction=reduction), TF.smooth_l1_loss(tx, ty, reduction=reduction)),
        (F.smooth_l1_loss(x, y, reduction=reduction, beta=0.5), TF.smooth_l1_loss(tx, ty, reduction=reduction,
                                                                                 beta=0.5)),
        (F.smooth_l1_loss(x, y, reduction=reduction, beta=0.0), TF.smooth_l1_loss(tx, ty, reduction=reduction,
                                                                                 beta=0.0)),
        (F.huber_loss(x, y, reduction=reduction, delta=1.7), TF.huber_loss(tx, ty, reduction=reduction, delta=1.7)),
        (F.kl_div(logp, q, reduction=kl_reduction), TF.kl_div(tlogp, tq, reduction=kl_reduction)),
        (F.kl_div(logp, q.log(), reduction=kl_reduction, log_target=True),
         TF.kl_div(tlogp, tq.log(), reduction=kl_reduction, log_target=True)),
    ]
    _check_losses(cases, [(x, tx), (y, ty), (logp, tlogp), (q, tq)], 1e-12)


def test_kl_div_mean_and_legacy_reduction_arguments_warn_as_torch(rng):
    logp, q = gpugrad.randn(3, 4).log_softmax(1), gpugrad.rand(3, 4)
    with pytest.warns(UserWarning, match="batchmean"):
        loss = F.kl_div(logp, q)
    with pytest.warns(UserWarning, match="batchmean"):
        tloss = TF.kl_div(to_torch(logp), to_torch(q))
    assert_close(loss, tloss, 1e-6)
    x, y = gpugrad.randn(6), gpugrad.randn(6)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        summed = F.mse_loss(x, y, size_average=False)
    assert_close(summed, TF.mse_loss(to_torch(x), to_torch(y), reduction="sum"), 1e-6)
    with pytest.warns(UserWarning):
        per_item = F.l1_loss(x, y, reduce=False)
    assert per_item.shape == (6,)


def test_binary_cross_entropy_at_saturated_probabilities(device):
    """p = 0 and 1: torch clamps the log at -100, so the loss is at most 100 and
    the gradient finite; both match torch."""
    p = gpugrad.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 1e-30], dtype=gpugrad.float64, device=device, requires_grad=True)
    y = gpugrad.tensor([0.0, 1.0, 1.0, 0.0, 1.0, 1.0], dtype=gpugrad.float64, device=device)
    tp, ty = to_torch(p, requires_grad=True), to_torch(y)
    loss = F.binary_cross_entropy(p, y, reduction="none")
    tloss = TF.binary_cross_entropy(tp, ty, reduction="none")
    assert_close(loss, tloss, 1e-12)
    loss.sum().backward()
    tloss.sum().backward()
    assert numpy.isfinite(p.grad.cpu().numpy()).all()
    assert_close(p.grad, tp.grad, 1e-12)
    with pytest.raises(RuntimeError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(gpugrad.tensor([1.5], device=device), gpugrad.tensor([1.0], device=device))


# the emulator gathers with NumPy, which raises at once (CuPy's gather does not check; the kernel does)
EMULATED_INDEXING = "is out of bounds for dimension 0 with size 4" if EMULATED else "(?!)"


def test_embedding_rejects_out_of_range_indices(device):
    """Index -1 is not the last row (torch raises); neither is one past the end."""
    weight = gpugrad.randn(4, 3, device=device, requires_grad=True)
    for bad in (-1, 4):      # torch's words on the CPU; on the GPU the check is a kernel's, read at the sync
        with pytest.raises(IndexError, match=rf"index out of range in self \(index {bad},|"
                                             rf"index {bad} is out of bounds for a dimension of size 4|"
                                             rf"{EMULATED_INDEXING}"):
            out = F.embedding(gpugrad.tensor([0, bad], device=device), weight)
            out.sum().item()
        if EMULATED:         # NumPy's gather raised before the sync that reads the kernel's record: drop it
            with contextlib.suppress(IndexError):
                gpugrad.cuda.synchronize()
    with pytest.raises(RuntimeError, match="'indices' to have one of the following scalar types: Long, Int"):
        F.embedding(gpugrad.tensor([0.0]), weight)


def test_one_hot_matches_torch_and_checks_its_arguments(device):
    t = gpugrad.tensor([[3, 0], [1, 1]], device=device)
    tt = to_torch(t)
    for classes in (-1, 5):
        ours, theirs = F.one_hot(t, classes), TF.one_hot(tt, classes)
        assert ours.dtype == gpugrad.int64 and ours.tolist() == theirs.tolist()
    with pytest.raises(RuntimeError, match="Class values must be smaller than num_classes"):
        F.one_hot(t, 3).tolist()
    with pytest.raises(RuntimeError, match="Class values must be non-negative"):
        F.one_hot(gpugrad.tensor([-1, 0], device=device)).tolist()
    with pytest.raises(RuntimeError, match="one_hot is only applicable to index tensor"):
        F.one_hot(gpugrad.tensor([1.0], device=device))


ACTIVATIONS = [
    ("relu", {}), ("relu6", {}), ("elu", {"alpha": 0.7}), ("selu", {}), ("gelu", {}),
    ("gelu", {"approximate": "tanh"}), ("silu", {}), ("mish", {}), ("softplus", {"beta": 2.0, "threshold": 5.0}),
    ("leaky_relu", {"negative_slope": 0.1}), ("hardtanh", {"min_val": -0.5, "max_val": 1.5}),
    ("hardsigmoid", {}), ("hardswish", {}), ("logsigmoid", {}), ("softsign", {}), ("tanhshrink", {}),
    ("threshold", {"threshold": 0.3, "value": -2.0}), ("sigmoid", {}), ("tanh", {}),
    ("softmin", {"dim": 1}), ("glu", {"dim": 1}), ("normalize", {"dim": 1}),
]


@pytest.mark.parametrize("name,options", ACTIVATIONS, ids=str)
def test_activations_match_torch(rng, device, name, options):
    x, tx = make_pair(rng, (4, 6), "float64", device, -4, 4)
    # torch's hardsigmoid gradient is a float32 1/6 even in float64, and so is torch CUDA's hardswish forward
    # (ActivationHardswishKernel.cu: x * clamp(x + 3, 0, 6) * (1.0f / 6.0f), relative error 2.98e-8);
    # gpugrad's is exact on both devices (held at 1e-12 against torch on the CPU)
    tol = 1e-7 if name == "hardsigmoid" or (name == "hardswish" and tx.is_cuda) else 1e-12
    out = getattr(F, name)(x, **options)
    if name == "hardswish":
        assert_close(out, TF.hardswish(tx.detach().cpu()), 1e-12)
    assert_forward_backward(rng, out, getattr(TF, name)(tx, **options), [(x, tx)], tol)


@pytest.mark.parametrize("name", ["hardtanh", "relu6", "hardsigmoid", "hardswish"])
def test_hard_activations_at_their_corners(name):
    """At the corners (-1, 1 / 0, 6 / -3, 3) the gradient is torch's one-sided choice."""
    values = numpy.array([-6.0, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 6.0, 7.0])
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    getattr(F, name)(x).sum().backward()
    getattr(TF, name)(tx).sum().backward()
    assert_close(x.grad, tx.grad, 1e-7)


@pytest.mark.parametrize("name", ["relu", "elu", "leaky_relu", "hardtanh", "relu6", "selu", "threshold"])
def test_inplace_activations_change_their_input(rng, name):
    values = rng.uniform(-2, 2, (3, 4))
    x, tx = gpugrad.tensor(values), torch.tensor(values)
    args = (0.5, 0.0) if name == "threshold" else ()
    out, tout = getattr(F, name)(x, *args, inplace=True), getattr(TF, name)(tx, *args, inplace=True)
    assert out is x and tout is tx
    assert_close(x, tx, 1e-12)
    leaf = gpugrad.tensor(values, requires_grad=True)
    y = leaf * 1
    getattr(F, name)(y, *args, inplace=True).sum().backward()
    tleaf = torch.tensor(values, requires_grad=True)
    ty = tleaf * 1
    getattr(TF, name)(ty, *args, inplace=True).sum().backward()
    assert_close(leaf.grad, tleaf.grad, 1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)], ids=str)
def test_batch_norm_matches_torch(rng, device, shape, training):
    x, tx = make_pair(rng, shape, "float64", device, -3, 3)
    w, tw = make_pair(rng, (3,), "float64", device, 0.5, 1.5)
    b, tb = make_pair(rng, (3,), "float64", device)
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    rm, rv = gpugrad.tensor(mean, device=device), gpugrad.tensor(var, device=device)
    trm, trv = to_torch(rm), to_torch(rv)
    out = F.batch_norm(x, rm, rv, w, b, training=training, momentum=0.2, eps=1e-4)
    tout = TF.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.2, eps=1e-4)
    assert_forward_backward(rng, out, tout, [(x, tx), (w, tw), (b, tb)], 1e-10)
    assert_close(rm, trm, 1e-12)
    assert_close(rv, trv, 1e-12)
    if training:
        assert gradgradcheck(lambda a: F.batch_norm(a, None, None, training=True), (x.detach().requires_grad_(),))
        with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
            F.batch_norm(gpugrad.randn(1, 3), None, None, training=True)


LOSSES = [
    ("mse_loss", {}), ("smooth_l1_loss", {"beta": 0.7}), ("huber_loss", {"delta": 0.4}), ("l1_loss", {}),
    ("binary_cross_entropy_with_logits", {}), ("binary_cross_entropy", {}),
]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,options", LOSSES, ids=str)
def test_losses_are_one_node_named_as_torch_and_twice_differentiable(rng, name, options, reduction):
    lo = 0.05 if name == "binary_cross_entropy" else -2
    x, tx = make_pair(rng, (3, 4), "float64", "cpu", lo, 0.95)
    y, ty = make_pair(rng, (3, 4), "float64", "cpu", 0.0, 1.0)
    loss = getattr(F, name)(x, y, reduction=reduction, **options)
    tloss = getattr(TF, name)(tx, ty, reduction=reduction, **options)
    assert loss.grad_fn.name() == tloss.grad_fn.name()
    assert_close(loss, tloss, 1e-12)
    assert gradgradcheck(lambda a, b: getattr(F, name)(a, b, reduction=reduction, **options), (x, y))


def test_loss_weights_take_no_gradient_as_in_torch(rng):
    x, y = gpugrad.randn(4, requires_grad=True), gpugrad.rand(4)
    w = gpugrad.rand(4, requires_grad=True)
    for function, kwargs in ((F.binary_cross_entropy_with_logits, {"weight": w}),
                             (F.binary_cross_entropy_with_logits, {"pos_weight": w}),
                             (lambda a, b, **k: F.binary_cross_entropy(a.sigmoid(), b, **k), {"weight": w})):
        with pytest.raises(RuntimeError, match="is not differentiable with respect to argument"):
            function(x, y, **kwargs)
    with gpugrad.no_grad():
        F.binary_cross_entropy_with_logits(x, y, weight=w)
    tx, ty, tw = to_torch(x, requires_grad=True), to_torch(y), to_torch(w, requires_grad=True)
    for name in ("mse_loss", "l1_loss", "huber_loss"):      # composites in torch: w gets its gradient
        for reduction in ("mean", "sum", "none"):
            loss = getattr(F, name)(x, y, weight=w, reduction=reduction)
            tloss = getattr(TF, name)(tx, ty, weight=tw, reduction=reduction)
            assert_close(loss, tloss, 1e-6)
            loss.sum().backward()
            tloss.sum().backward()
        assert_close(w.grad, tw.grad, 1e-6)
        assert_close(x.grad, tx.grad, 1e-6)
        with pytest.raises(ValueError, match="Weights and input must have the same size"):
            getattr(F, name)(x, y, weight=w[:2])


SDPA_CASES = [
    ("plain", (2, 3, 4, 5), (2, 3, 6, 5), {}),
    ("causal", (2, 3, 6, 5), (2, 3, 6, 5), {"is_causal": True}),
    ("causal, L < S", (1, 2, 3, 4), (1, 2, 7, 4), {"is_causal": True}),
    ("scale", (3, 4, 5), (3, 4, 5), {"scale": 0.3}),
    ("bool mask with a closed row", (2, 2, 4, 3), (2, 2, 5, 3), {"mask": "bool"}),
    ("float mask with a -inf row", (2, 2, 4, 3), (2, 2, 5, 3), {"mask": "float"}),
    ("grouped query heads", (2, 4, 3, 5), (2, 2, 6, 5), {"enable_gqa": True}),
    ("unbatched", (4, 5), (6, 5), {}),
]


@pytest.mark.parametrize("case", SDPA_CASES, ids=[c[0] for c in SDPA_CASES])
def test_scaled_dot_product_attention_matches_torch(rng, device, case):
    _, q_shape, k_shape, options = case
    q, tq = make_pair(rng, q_shape, "float64", device)
    k, tk = make_pair(rng, k_shape, "float64", device)
    v, tv = make_pair(rng, k_shape[:-1] + (7,), "float64", device)
    kwargs, tkwargs, pairs = dict(options), dict(options), [(q, tq), (k, tk), (v, tv)]
    mask_kind = kwargs.pop("mask", None)
    tkwargs.pop("mask", None)
    if mask_kind == "bool":
        allowed = rng.random((q_shape[-2], k_shape[-2])) > 0.4
        allowed[1] = False                                   # a query that may attend to nothing
        kwargs["attn_mask"], tkwargs["attn_mask"] = gpugrad.tensor(allowed, device=device), to_torch(allowed, device)
    elif mask_kind == "float":
        bias, tbias = make_pair(rng, (q_shape[-2], k_shape[-2]), "float64", device)
        with gpugrad.no_grad():
            bias[2] = -float("inf")
        with torch.no_grad():
            tbias[2] = -float("inf")
        kwargs["attn_mask"], tkwargs["attn_mask"] = bias, tbias
        pairs.append((bias, tbias))
    out = F.scaled_dot_product_attention(q, k, v, **kwargs)
    tout = TF.scaled_dot_product_attention(tq, tk, tv, **tkwargs)
    if mask_kind:
        assert (out.detach().cpu().numpy()[..., 1 if mask_kind == "bool" else 2, :] == 0).all()
    assert_forward_backward(rng, out, tout, pairs, 1e-10)


def test_scaled_dot_product_attention_second_derivatives_and_dropout(rng):
    q, k, v = (gpugrad.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    allowed = gpugrad.tensor(rng.random((3, 3)) > 0.3)
    assert gradgradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=allowed), (q, k, v))
    assert gradgradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, is_causal=True), (q, k, v))
    # dropout acts on the attention weights, in training or not (as torch's function)
    big = gpugrad.ones(1, 64, 8)
    values = gpugrad.tensor(rng.standard_normal((1, 64, 8)), dtype=gpugrad.float32)
    plain = F.scaled_dot_product_attention(big, big, values)
    dropped = F.scaled_dot_product_attention(big, big, values, dropout_p=0.5)
    assert not numpy.allclose(dropped.numpy(), plain.numpy())
    assert abs(dropped.mean().item() - plain.mean().item()) < 0.5 * abs(plain.abs().mean().item()) + 0.05


def test_scaled_dot_product_attention_errors(rng):
    q, k, v = (gpugrad.tensor(rng.standard_normal(s)) for s in ((2, 4, 5), (2, 6, 5), (2, 6, 7)))
    with pytest.raises(RuntimeError, match=r"shapes do not match: query \[2, 4, 5\], key \[2, 6, 4\]"):
        F.scaled_dot_product_attention(q, k[..., :4], v)
    with pytest.raises(RuntimeError, match="shapes do not match"):
        F.scaled_dot_product_attention(q, k, v[:, :5])
    with pytest.raises(RuntimeError, match="attn_mask should not be set when is_causal=True"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=gpugrad.ones(4, 6, dtype=gpugrad.bool), is_causal=True)
    with pytest.raises(RuntimeError, match="same dtype, but got query.dtype: float32 key.dtype: float64"):
        F.scaled_dot_product_attention(q.float(), k, v.float())
    with pytest.raises(RuntimeError, match="attn_mask dtype to be bool or float"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=gpugrad.ones(4, 6, dtype=gpugrad.int64))
    with pytest.raises(TypeError, match="query"):
        F.scaled_dot_product_attention(q.numpy(), k, v)


def test_functional_exports_torchs_names_and_defines_no_function_class():
    """nn.functional validates and calls the ops: its __all__ is torch.nn.functional's names,
    every public function it defines is in it, and no class (no autograd Function) lives there."""
    import inspect
    assert F.__all__ and set(F.__all__) <= set(dir(TF)), sorted(set(F.__all__) - set(dir(TF)))
    assert len(F.__all__) == len(set(F.__all__))
    defined = {name: value for name, value in vars(F).items() if getattr(value, "__module__", None) == F.__name__
               or getattr(getattr(value, "__wrapped__", None), "__module__", None) == F.__name__}
    assert not [name for name, value in defined.items() if inspect.isclass(value)]
    assert {name for name in defined if not name.startswith("_")} <= set(F.__all__)


# -- the differential fuzzer's findings in nn.functional (issue 25), one test each --------------------------

def test_cosine_similarity_of_broadcast_operands_as_torch(rng):
    """The norms are those of the broadcast operands: |result| <= 1 (before: the un-broadcast one's norm)."""
    x1, tx1 = make_pair(rng, (3, 1))
    x2, tx2 = make_pair(rng, (3, 4))
    out, tout = F.cosine_similarity(x1, x2, dim=1), TF.cosine_similarity(tx1, tx2, dim=1)
    assert (out.detach().abs().numpy() <= 1 + 1e-12).all()
    assert_forward_backward(rng, out, tout, [(x1, tx1), (x2, tx2)], 1e-10)
    with pytest.raises(RuntimeError, match="common dtype to be floating point"):
        F.cosine_similarity(gpugrad.ones(3, dtype=gpugrad.int64), gpugrad.ones(3, dtype=gpugrad.int64), dim=0)


def test_nll_loss_with_every_target_ignored_and_an_ignored_row_of_minus_inf(rng):
    x, tx = make_pair(rng, (3, 4))
    target = numpy.array([1, -100, 2])
    loss = F.nll_loss(x, gpugrad.tensor(numpy.full(3, -100)))
    tloss = TF.nll_loss(tx, torch.full((3,), -100))
    assert numpy.isnan(loss.item()) and numpy.isnan(tloss.item())
    loss.backward()
    tloss.backward()
    assert (x.grad.numpy() == 0).all() and (tx.grad.numpy() == 0).all()        # before: nan
    for reduction in ("mean", "sum", "none"):
        y, ty = make_pair(rng, (3, 4))
        with gpugrad.no_grad():
            y[1] = -float("inf")
        with torch.no_grad():
            ty[1] = -float("inf")
        loss = F.nll_loss(y, gpugrad.tensor(target), reduction=reduction)
        tloss = TF.nll_loss(ty, torch.tensor(target), reduction=reduction)
        assert numpy.isfinite(loss.detach().numpy()).all()                          # before: nan
        assert_forward_backward(rng, loss, tloss, [(y, ty)], 1e-12)


def test_class_weights_that_require_grad_are_refused_as_torch(rng):
    x, y = gpugrad.randn(3, 4, requires_grad=True), gpugrad.tensor([0, 1, 3])
    w = gpugrad.rand(4, requires_grad=True)
    for function in (F.nll_loss, F.cross_entropy):
        with pytest.raises(RuntimeError, match="is not differentiable with respect to argument 'weight'"):
            function(x, y, weight=w)
        with pytest.raises(RuntimeError, match="is not differentiable with respect to argument 'weight'"):
            getattr(TF, function.__name__)(to_torch(x), torch.tensor([0, 1, 3]), weight=to_torch(w,
                                                                                               requires_grad=True))


def test_glu_refuses_an_odd_dim_as_torch():
    for shape, dim, message in (((3, 5), -1, "Halving dimension must be even, but dimension 1 is size 5"),
                                ((), 0, "glu does not support scalars")):
        with pytest.raises(RuntimeError, match=message):
            F.glu(gpugrad.ones(shape), dim)
        with pytest.raises(RuntimeError, match=message):
            TF.glu(torch.ones(shape), dim)
    assert F.glu(gpugrad.ones(2, 0), 1).shape == TF.glu(torch.ones(2, 0), 1).shape == (2, 0)


def test_pooling_and_unfold_refuse_an_output_size_of_zero_as_torch():
    x, tx = gpugrad.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    for name, args, message in (("max_pool2d", (3,), "Output size is too small"),
                                ("avg_pool2d", (3,), "Output size is too small"),
                                ("unfold", (3,), "must be at least one")):
        with pytest.raises(RuntimeError, match=message):
            getattr(F, name)(x, *args)
        with pytest.raises(RuntimeError, match=message):
            getattr(TF, name)(tx, *args)
    with pytest.raises(RuntimeError, match="Invalid computed output size: 0"):
        F.max_pool1d(gpugrad.ones(1, 1, 2), 3)
    with pytest.raises(RuntimeError, match="Invalid computed output size: 0"):
        TF.max_pool1d(torch.ones(1, 1, 2), 3)


def test_max_pool_picks_torchs_element_with_nan_and_minus_inf(rng):
    """The last nan of a window, else its first maximum; a window of -inf: its first element in the input."""
    values = numpy.array([[1.0, numpy.nan, 2.0, numpy.nan], [-numpy.inf, -numpy.inf, 3.0, 3.0],
                          [0.5, 0.5, -numpy.inf, 1.0], [2.0, 0.0, -1.0, 2.0]])[None, None]
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    for options in ({"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1},
                    {"kernel_size": 2, "stride": 1, "dilation": 2}):
        out, index = F.max_pool2d(x, return_indices=True, **options)
        tout, tindex = TF.max_pool2d(tx, return_indices=True, **options)
        assert (index.numpy() == tindex.numpy()).all(), options
        assert_forward_backward(rng, out, tout, [(x, tx)], 1e-12)
        x.grad = tx.grad = None


def test_unfold_returns_a_copy_and_adaptive_pool_keeps_a_none_size(rng):
    x, tx = make_pair(rng, (1, 2, 4, 6))
    out = F.unfold(x, 2, stride=2)
    assert not numpy.shares_memory(out.detach().numpy(), x.detach().numpy())   # before: a view of x
    assert_close(out, TF.unfold(tx, 2, stride=2), 0)
    pooled, tpooled = F.adaptive_avg_pool2d(x, (None, 3)), TF.adaptive_avg_pool2d(tx, (None, 3))
    assert pooled.shape == tpooled.shape == (1, 2, 4, 3)
    assert_forward_backward(rng, pooled, tpooled, [(x, tx)], 1e-12)


def test_embedding_refuses_a_padding_idx_out_of_range_as_torch():
    weight = gpugrad.ones(4, 2)
    for padding_idx in (4, -5):
        with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
            F.embedding(gpugrad.tensor([0, 1]), weight, padding_idx=padding_idx)
        with pytest.raises(AssertionError, match="Padding_idx must be within num_embeddings"):
            TF.embedding(torch.tensor([0, 1]), torch.ones(4, 2), padding_idx=padding_idx)


def test_scaled_dot_product_attention_keeps_nan_rows_and_zeroes_closed_ones(rng):
    """A query row with a nan is nan even where the mask closes it (before: 0); a closed row of finite
    scores is 0; a float mask's nan makes its row nan."""
    q, tq = make_pair(rng, (1, 3, 4))
    k, tk = make_pair(rng, (1, 5, 4))
    v, tv = make_pair(rng, (1, 5, 2))
    with gpugrad.no_grad():
        q[0, 1, 2] = float("nan")
    with torch.no_grad():
        tq[0, 1, 2] = float("nan")
    allowed = numpy.ones((3, 5), dtype=bool)
    allowed[1:] = False
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=gpugrad.tensor(allowed))
    tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(allowed))
    assert numpy.isnan(out.detach().numpy()[0, 1]).all() and (out.detach().numpy()[0, 2] == 0).all()
    numpy.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)
    values = rng.standard_normal((3, 5))
    values[0, 1] = numpy.nan
    values[2] = -numpy.inf
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=gpugrad.tensor(values))
    tout = TF.scaled_dot_product_attention(tq, tk, tv, attn_mask=torch.tensor(values))
    assert numpy.isnan(out.detach().numpy()[0, :2]).all() and (out.detach().numpy()[0, 2] == 0).all()
    numpy.testing.assert_allclose(out.detach().numpy(), tout.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_regression_losses_broadcast_and_report_as_torch(rng):
    """mse/l1/smooth_l1/huber broadcast input against target (torch's RuntimeError where they do not);
    huber's weighted mean divides by the count; smooth_l1's gradient at |d| = beta is torch's."""
    x, tx = make_pair(rng, (3, 1))
    y, ty = make_pair(rng, (4,))
    for name in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"):
        with pytest.warns(UserWarning):
            out = getattr(F, name)(x, y, reduction="none")
        with pytest.warns(UserWarning):
            tout = getattr(TF, name)(tx, ty, reduction="none")
        assert_forward_backward(rng, out, tout, [(x, tx), (y, ty)], 1e-12)
        x.grad = y.grad = tx.grad = ty.grad = None
        with pytest.raises(RuntimeError, match="must match the size"), pytest.warns(UserWarning):
            getattr(F, name)(x, gpugrad.ones(2, 2))
        with pytest.raises(RuntimeError, match="must match the size"), pytest.warns(UserWarning):
            getattr(TF, name)(tx, torch.ones(2, 2))
    w, tw = make_pair(rng, (3, 4), low=0.1)
    z, tz = make_pair(rng, (3, 4))
    t, tt = make_pair(rng, (3, 4), requires_grad=False)
    assert_forward_backward(rng, F.huber_loss(z, t, weight=w), TF.huber_loss(tz, tt, weight=tw), [(z, tz), (w, tw)],
                            1e-12)
    d = numpy.array([1.0, -1.0, 0.5, 2.0])            # |d| == beta at the first two
    a, ta = gpugrad.tensor(d, requires_grad=True), torch.tensor(d, requires_grad=True)
    for name in ("smooth_l1_loss", "huber_loss"):
        loss = getattr(F, name)(a, gpugrad.zeros(4, dtype=gpugrad.float64))
        tloss = getattr(TF, name)(ta, torch.zeros(4, dtype=torch.float64))
        (ga,) = gpugrad.autograd.grad(loss, a, create_graph=True)
        (tga,) = torch.autograd.grad(tloss, ta, create_graph=True)
        assert_close(ga, tga, 1e-15)
        assert_close(gpugrad.autograd.grad(ga.sum(), a)[0], torch.autograd.grad(tga.sum(), ta)[0], 1e-15)


def test_kl_div_and_binary_cross_entropy_gradients_at_zero_and_one(rng):
    """kl_div as torch's xlogy(t, t) - t x (0 where t is 0, nan with a nan); bce's gradient to the target
    -logit(p) unclamped (inf at p of 0 and 1), its second derivative torch's."""
    x, tx = make_pair(rng, (5,))
    values = numpy.array([0.0, 0.3, numpy.nan, 1.0, 0.0])
    t, tt = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    out, tout = F.kl_div(x, t, reduction="none"), TF.kl_div(tx, tt, reduction="none")
    assert_close(out, tout, 1e-15)
    out.sum().backward()
    tout.sum().backward()
    for ours, theirs in ((x, tx), (t, tt)):
        assert numpy.array_equal(numpy.isnan(ours.grad.numpy()), numpy.isnan(theirs.grad.numpy()))
        assert_close(ours.grad, theirs.grad, 1e-15)
    p = numpy.array([0.0, 0.2, 1.0, 0.7])
    a, ta = gpugrad.tensor(p, requires_grad=True), torch.tensor(p, requires_grad=True)
    b, tb = make_pair(rng, (4,), low=0.0, high=1.0)
    (ga, gb) = gpugrad.autograd.grad(F.binary_cross_entropy(a, b), (a, b), create_graph=True)
    (tga, tgb) = torch.autograd.grad(TF.binary_cross_entropy(ta, tb), (ta, tb), create_graph=True)
    assert numpy.array_equal(gb.detach().numpy(), tgb.detach().numpy(), equal_nan=True)     # before: +-100
    assert_close(ga, tga, 1e-12)
    second = gpugrad.autograd.grad(ga.sum(), (a, b))
    tsecond = torch.autograd.grad(tga.sum(), (ta, tb))
    for ours, theirs in zip(second, tsecond):
        assert_close(ours, theirs, 1e-12)


def test_layer_norm_rows_of_equal_values_empty_inputs_and_shape_errors(rng):
    """A constant row centres to exactly 0 (inf weight: nan, as torch); an empty input normalises to empty;
    normalized_shape must be a non-empty sequence."""
    values = numpy.repeat(rng.standard_normal((4, 1)), 3, axis=1)
    weight = numpy.array([2.0, -numpy.inf, 0.5])
    x, tx = gpugrad.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    out = F.layer_norm(x, (3,), gpugrad.tensor(weight))
    tout = TF.layer_norm(tx, (3,), torch.tensor(weight))
    assert numpy.array_equal(out.detach().numpy(), tout.detach().numpy(), equal_nan=True)
    e, te = make_pair(rng, (0, 3))
    w, tw = make_pair(rng, (3,))
    out, tout = F.layer_norm(e, (3,), w), TF.layer_norm(te, (3,), tw)
    assert out.shape == tout.shape == (0, 3)
    out.sum().backward()
    tout.sum().backward()
    assert_close(w.grad, tw.grad, 0)
    for shape, error, message in (((), RuntimeError, "Expected normalized_shape to be at least 1-dimensional"),
                                  (3.0, TypeError, "normalized_shape")):
        with pytest.raises(error, match=message):
            F.layer_norm(x, shape)
        with pytest.raises(error, match=message):
            TF.layer_norm(tx, shape)


def test_layer_norm_double_backward_matches_torch(rng):
    x, tx = make_pair(rng, (3, 5))
    w, tw = make_pair(rng, (5,))
    (g,) = gpugrad.autograd.grad(F.layer_norm(x, (5,), w).pow(3).sum(), x, create_graph=True)
    (tg,) = torch.autograd.grad(TF.layer_norm(tx, (5,), tw).pow(3).sum(), tx, create_graph=True)
    assert_close(g, tg, 1e-12)
    assert_forward_backward(rng, g, tg, [(x, tx), (w, tw)], 1e-10)


def test_batch_norm_argument_errors_as_torch():
    x, tx = gpugrad.ones(1, 3, 1), torch.ones(1, 3, 1)
    for args, kwargs, error, message in (((None, None), {"training": True}, ValueError, "more than 1 value"),
                                         ((None, None), {"training": True, "momentum": "a"}, TypeError, "momentum")):
        with pytest.raises(error, match=message):
            F.batch_norm(gpugrad.ones(2, 3, 1) if "momentum" in kwargs else x, *args, **kwargs)
        with pytest.raises(error, match=message):
            TF.batch_norm(torch.ones(2, 3, 1) if "momentum" in kwargs else tx, *args, **kwargs)
    with pytest.raises(ValueError, match="more than 1 value"):       # one value per channel: size 1 in dims 0, 2
        F.batch_norm(gpugrad.ones(1, 0, 1), None, None, training=True)


def test_binary_cross_entropy_with_logits_of_0d_tensors():
    """A 0-d input crashed (NumPy's ufuncs give scalars for 0-d arrays; issue 25)."""
    for pos_weight in (None, 2.0):
        x, tx = gpugrad.tensor(0.3, dtype=gpugrad.float64, requires_grad=True), torch.tensor(0.3, requires_grad=True,
                                                                                              dtype=torch.float64)
        kwargs = {} if pos_weight is None else {"pos_weight": gpugrad.tensor(pos_weight, dtype=gpugrad.float64)}
        tkwargs = {} if pos_weight is None else {"pos_weight": torch.tensor(pos_weight, dtype=torch.float64)}
        out = F.binary_cross_entropy_with_logits(x, gpugrad.tensor(0.25, dtype=gpugrad.float64), **kwargs)
        tout = TF.binary_cross_entropy_with_logits(tx, torch.tensor(0.25, dtype=torch.float64), **tkwargs)
        assert out.shape == () and isinstance(out.array, numpy.ndarray)
        out.backward()
        tout.backward()
        assert_close(out, tout, 1e-12)
        assert_close(x.grad, tx.grad, 1e-12)


def test_bilinear_of_an_expanded_input_with_inf_multiplies_every_term_as_torch(rng, device):
    """The weight's gradient sums x1 * (g x2) over the batch: with x1 expanded (stride 0) NumPy's einsum
    took x1 * sum(g x2), +-inf where torch's terms of both signs give nan (fuzzer seed 2025120316, case
    bilinear/F:1971486153), and so did x2's gradient (sum over i of x1 * W g)."""
    for value in (numpy.inf, -numpy.inf):
        x1 = gpugrad.tensor(value, dtype=gpugrad.float64, device=device).expand(3, 3).requires_grad_()
        tx1 = torch.tensor(value, dtype=torch.float64, device=torch_device(device)).expand(3, 3).requires_grad_()
        x2, tx2 = make_pair(rng, (3, 1), device=device, low=0.5, high=2.0)
        w, tw = make_pair(rng, (1, 3, 1), device=device)
        b, tb = make_pair(rng, (1,), device=device)
        out, tout = F.bilinear(x1, x2, w, b), TF.bilinear(tx1, tx2, tw, tb)
        assert_close(out, tout, 1e-12)
        upstream = numpy.array([[1.0], [-1.0], [rng.standard_normal()]])        # terms of both signs
        out.backward(gpugrad.tensor(upstream, device=device))
        tout.backward(to_torch(upstream, device))
        assert numpy.isnan(tw.grad.cpu().numpy()).all()
        for ours, theirs in ((x1, tx1), (x2, tx2), (w, tw), (b, tb)):
            assert_close(ours.grad, theirs.grad, 1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_scaled_dot_product_attention_is_causal_zeroes_rows_that_see_no_key(rng, device, dtype):
    """is_causal=True without a mask: a query row whose every open score is -inf (here a -inf in the
    query against positive keys) sees no key; torch gives 0 there (and a 0 gradient), on both paths
    (before, the cuda path took the plain softmax: nan).  L > S: the rows past S see every key, as
    torch's top-left causal mask; a nan in a query keeps its row nan; S = 0 gives zeros."""
    tol = FLOAT_TOLERANCE[dtype]
    q, tq = make_pair(rng, (2, 6, 3), dtype, device)
    k, tk = make_pair(rng, (2, 4, 3), dtype, device, low=0.5, high=2.0)
    v, tv = make_pair(rng, (2, 4, 5), dtype, device)
    closed = [(0, 0), (0, 3), (1, 5)]            # (batch, query row): row 0 sees key 0 only, row 5 every key
    with gpugrad.no_grad(), torch.no_grad():
        for b, i in closed:
            q[b, i, 0] = tq[b, i, 0] = float("-inf")
        q[1, 2, 1] = tq[1, 2, 1] = float("nan")
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    tout = TF.scaled_dot_product_attention(tq, tk, tv, is_causal=True)
    result = out.detach().to("cpu").numpy()
    assert all((result[b, i] == 0).all() for b, i in closed) and numpy.isnan(result[1, 2]).all()
    assert_close(out, tout, tol)
    upstream = rng.standard_normal(out.shape).astype(dtype)
    upstream[1, 2] = 0.0                         # (the nan row's gradient is nan everywhere in both)
    out.backward(gpugrad.tensor(upstream, device=device))
    tout.backward(to_torch(upstream, device=device))
    for ours, theirs in ((q, tq), (k, tk), (v, tv)):
        assert_close(ours.grad, theirs.grad, tol, floor=1.0)
    assert all((q.grad.to("cpu").numpy()[b, i] == 0).all() for b, i in closed)
    empty = F.scaled_dot_product_attention(q, k[:, :0], v[:, :0], is_causal=True)
    assert tuple(empty.shape) == (2, 6, 5) and (empty.detach().to("cpu").numpy() == 0).all()
