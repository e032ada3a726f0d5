"""nn.functional.linear_cross_entropy (chunked, never holding N x V logits)
against torch's unfused cross_entropy(linear(...)) and torch 2.13's own
linear_cross_entropy: values and gradients for every option, shapes,
retain_graph, errors, and the memory it saves."""

import tracemalloc
import warnings

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import FLOAT_TOLERANCE, assert_close, torch_device

import gpugrad
import gpugrad.nn.functional as F

OPTIONS = [
    {}, {"reduction": "sum"}, {"reduction": "none"}, {"ignore_index": 3}, {"label_smoothing": 0.25},
    {"weight": True}, {"weight": True, "ignore_index": 0, "label_smoothing": 0.1},
    {"weight": True, "reduction": "sum", "label_smoothing": 0.3}, {"weight": True, "reduction": "none"},
]


def _case(rng, batch_shape, features, classes, dtype, options, bias=True, device="cpu"):
    x = rng.standard_normal(batch_shape + (features,)).astype(dtype)
    w = (rng.standard_normal((classes, features)) / 2).astype(dtype)
    b = rng.standard_normal(classes).astype(dtype) if bias else None
    t = rng.integers(0, classes, batch_shape)
    if "ignore_index" in options and t.size > 1:
        t.reshape(-1)[::3] = options["ignore_index"]
        t.reshape(-1)[-1] = (options["ignore_index"] + 1) % classes
    cw = rng.uniform(0.3, 2.0, classes).astype(dtype)
    ours = dict(options)
    theirs = dict(options)
    if options.get("weight"):
        ours["weight"] = gpugrad.tensor(cw, device=device)
        theirs["weight"] = torch.tensor(cw, device=torch_device(device))
    leaves = [gpugrad.tensor(a, device=device, requires_grad=True) for a in (x, w, b) if a is not None]
    tleaves = [torch.tensor(a, device=torch_device(device), requires_grad=True) for a in (x, w, b) if a is not None]
    return leaves, tleaves, t, ours, theirs


def _reference(tleaves, t, options):
    x, w = tleaves[0], tleaves[1]
    b = tleaves[2] if len(tleaves) > 2 else None
    logits = TF.linear(x, w, b)
    if x.ndim == 3:                                         # (B, T, V): classes in dim 1 for cross_entropy
        return TF.cross_entropy(logits.reshape(-1, w.shape[0]), t.reshape(-1), **options).reshape(
            t.shape if options.get("reduction") == "none" else ())
    return TF.cross_entropy(logits, t, **options)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_shape,chunk", [((37,), 7), ((37,), 1), ((37,), None), ((3, 11), 5), ((), None)],
                         ids=str)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_matches_the_unfused_reference(rng, device, dtype, batch_shape, chunk, options):
    leaves, tleaves, t, ours, theirs = _case(rng, batch_shape, 16, 29, dtype, options, device=device)
    if "ignore_index" in options and not batch_shape:
        pytest.skip("one ignored row is the all-ignored case (covered by test_all_rows_ignored)")
    loss = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t, device=device), linear_bias=leaves[2],
                                  options=gpugrad.nn.LinearCrossEntropyOptions(batch_chunk_size=chunk), **ours)
    tloss = _reference(tleaves, torch.tensor(t, device=torch_device(device)), theirs)
    tol = FLOAT_TOLERANCE[dtype]
    assert tuple(loss.shape) == tuple(tloss.shape) and loss.dtype == leaves[0].dtype
    assert_close(loss, tloss, tol)
    upstream = rng.standard_normal(tuple(tloss.shape)).astype(dtype)
    loss.backward(gpugrad.tensor(upstream, device=device))
    tloss.backward(torch.tensor(upstream, device=torch_device(device)))
    for ours_leaf, theirs_leaf in zip(leaves, tleaves):
        assert ours_leaf.grad.dtype == ours_leaf.dtype
        assert_close(ours_leaf.grad, theirs_leaf.grad, tol, floor=1e-3)


def test_matches_torchs_linear_cross_entropy_and_loss_backward(rng):
    leaves, tleaves, t, ours, theirs = _case(rng, (64,), 32, 100, "float64", {"label_smoothing": 0.1}, bias=False)
    loss = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t), **ours)
    for options in (None, torch.nn.LinearCrossEntropyOptions(batch_chunk_size=16)):
        copies = [tl.detach().clone().requires_grad_() for tl in tleaves]
        with warnings.catch_warnings():          # torch's chunked path falls back to its reference for smoothing
            warnings.simplefilter("ignore")
            tloss = TF.linear_cross_entropy(copies[0], copies[1], torch.tensor(t), options=options, **theirs)
        assert_close(loss, tloss, 1e-12)
        tloss.backward()
        tleaves = copies
    loss.backward()                                   # the implicit 1: the gradients computed in the forward
    for ours_leaf, theirs_leaf in zip(leaves, tleaves):
        assert_close(ours_leaf.grad, theirs_leaf.grad, 1e-12)


def test_2d_input_takes_no_reshape_node(rng):
    """(N, D) input joins the op as it is: through a reshape node its gradient
    would reach .grad as a view, which the engine copies (one more N x D pass);
    (B, T, D) input is reshaped, as torch's."""
    x = gpugrad.tensor(rng.standard_normal((6, 4)), requires_grad=True)
    w = gpugrad.tensor(rng.standard_normal((5, 4)), requires_grad=True)
    loss = F.linear_cross_entropy(x, w, gpugrad.tensor(rng.integers(0, 5, 6)))
    assert loss.grad_fn.next_functions[0][0].variable is x
    loss.backward()
    assert x.grad.array.base is None
    x3 = gpugrad.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    loss3 = F.linear_cross_entropy(x3, w, gpugrad.tensor(rng.integers(0, 5, (2, 3))))
    assert loss3.grad_fn.next_functions[0][0].name() == "ReshapeBackward0"


def test_second_backward_recomputes_and_scaled_upstream(rng):
    leaves, tleaves, t, ours, theirs = _case(rng, (20,), 8, 13, "float64", {"weight": True})
    loss = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t), linear_bias=leaves[2],
                                  options=gpugrad.nn.LinearCrossEntropyOptions(batch_chunk_size=6), **ours)
    (loss * 3).backward(retain_graph=True)
    first = [leaf.grad.clone() for leaf in leaves]
    for leaf in leaves:
        leaf.grad = None
    loss.backward()
    tloss = _reference(tleaves, torch.tensor(t), theirs)
    tloss.backward()
    for a, b, tleaf in zip(first, leaves, tleaves):
        assert_close(a, tleaf.grad * 3, 1e-12)
        assert_close(b.grad, tleaf.grad, 1e-12)
    # create_graph: the unfused gradient, differentiable again (before: "double backward is not supported")
    again = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t), linear_bias=leaves[2], **ours)
    (gx,) = gpugrad.autograd.grad(again, leaves[0], create_graph=True)
    for leaf in leaves:
        leaf.grad = None
    (gx * gx).sum().backward()
    tagain = _reference(tleaves, torch.tensor(t), theirs)
    (tgx,) = torch.autograd.grad(tagain, tleaves[0], create_graph=True)
    for leaf in tleaves:
        leaf.grad = None
    (tgx * tgx).sum().backward()
    assert_close(gx, tgx, 1e-12)
    for leaf, tleaf in zip(leaves, tleaves):
        assert_close(leaf.grad, tleaf.grad, 1e-10)


def test_all_rows_ignored_and_no_grad(rng):
    leaves, tleaves, t, _, _ = _case(rng, (5,), 4, 6, "float64", {})
    ignored = gpugrad.full((5,), -100)
    loss = F.linear_cross_entropy(leaves[0], leaves[1], ignored)
    tloss = TF.cross_entropy(TF.linear(tleaves[0], tleaves[1]), torch.full((5,), -100))
    assert numpy.isnan(loss.item()) and numpy.isnan(tloss.item())
    loss.backward()
    assert leaves[0].grad.abs().sum().item() == 0 and leaves[1].grad.abs().sum().item() == 0
    with gpugrad.no_grad():
        plain = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t))
    assert plain.grad_fn is None and numpy.isfinite(plain.item())


def test_reference_paths_and_the_module(rng):
    """Probability targets and K-dimensional weights run the unfused reference;
    nn.LinearCrossEntropyLoss has torch's parameters and result."""
    x, w = rng.standard_normal((6, 5)), rng.standard_normal((4, 5))
    p = rng.dirichlet(numpy.ones(4), 6)
    ours = F.linear_cross_entropy(gpugrad.tensor(x), gpugrad.tensor(w), gpugrad.tensor(p))
    assert_close(ours, TF.linear_cross_entropy(torch.tensor(x), torch.tensor(w), torch.tensor(p)), 1e-12)
    w3, t3 = rng.standard_normal((4, 3, 5)), rng.integers(0, 4, (6, 3))
    ours = F.linear_cross_entropy(gpugrad.tensor(x), gpugrad.tensor(w3), gpugrad.tensor(t3), reduction="none")
    theirs = TF.linear_cross_entropy(torch.tensor(x), torch.tensor(w3), torch.tensor(t3), reduction="none")
    assert_close(ours, theirs, 1e-12)
    torch.manual_seed(0)
    tmodule = torch.nn.LinearCrossEntropyLoss(5, 7, bias=True, label_smoothing=0.1).double()
    module = gpugrad.nn.LinearCrossEntropyLoss(5, 7, bias=True, label_smoothing=0.1).double()
    assert list(module.state_dict()) == list(tmodule.state_dict())
    module.load_state_dict({k: gpugrad.tensor(v.detach().numpy()) for k, v in tmodule.state_dict().items()})
    t = rng.integers(0, 7, 6)
    assert_close(module(gpugrad.tensor(x), gpugrad.tensor(t)), tmodule(torch.tensor(x), torch.tensor(t)), 1e-12)


def test_errors_name_the_problem(rng):
    x, w = gpugrad.randn(4, 5), gpugrad.randn(7, 5)
    t = gpugrad.tensor([0, 1, 2, 3])
    with pytest.raises(RuntimeError, match="input has 6 features"):
        F.linear_cross_entropy(gpugrad.randn(4, 6), w, t)
    with pytest.raises(RuntimeError, match="same dtype"):
        F.linear_cross_entropy(x.double(), w, t)
    with pytest.raises(RuntimeError, match="expected target of shape \\[4\\]"):
        F.linear_cross_entropy(x, w, gpugrad.tensor([0, 1]))
    with pytest.raises(IndexError, match="Target 9 is out of bounds"):
        F.linear_cross_entropy(x, w, gpugrad.tensor([0, 1, 9, 3]))
    with pytest.raises(RuntimeError, match="linear_bias of shape \\[3\\]"):
        F.linear_cross_entropy(x, w, t, linear_bias=gpugrad.zeros(3))
    with pytest.raises(NotImplementedError, match="chunking_method"):
        gpugrad.nn.LinearCrossEntropyOptions(chunking_method="aspect_ratio:2")


def _peak(run):
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_is_a_chunk_not_the_logits(rng):
    """N=1024, V=4096, D=64 float32: the logits are 16 MiB; the chunked
    forward+backward peaks at a fraction of the unfused one's."""
    x = gpugrad.tensor(rng.standard_normal((1024, 64)), dtype=gpugrad.float32, requires_grad=True)
    w = gpugrad.tensor(rng.standard_normal((4096, 64)) / 8, dtype=gpugrad.float32, requires_grad=True)
    t = gpugrad.tensor(rng.integers(0, 4096, 1024))
    options = gpugrad.nn.LinearCrossEntropyOptions(memory_budget=2 << 20)

    def fused():
        F.linear_cross_entropy(x, w, t, options=options).backward()

    def unfused():
        F.cross_entropy(F.linear(x, w), t).backward()
    fused(), unfused()
    x.grad = w.grad = None
    peak_fused, peak_unfused = _peak(fused), _peak(unfused)
    logits = 1024 * 4096 * 4
    assert peak_unfused > logits
    assert peak_fused < 2 * (2 << 20) + 2 * (x.numel() + w.numel()) * 4 + (1 << 20)
    assert peak_fused * 3 < peak_unfused
