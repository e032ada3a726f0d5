"""The layers of issue 27 point 3 against torch in float64 (values, gradients,
second derivatives): GroupNorm, InstanceNorm1d/2d (running statistics),
ConvTranspose1d/2d (stride, padding, output_padding, groups, dilation,
output_size), interpolate / Upsample (nearest, nearest-exact, linear,
bilinear with align_corners both ways, scale_factor and size), PixelShuffle
and PixelUnshuffle, Embedding(max_norm=) and EmbeddingBag, and the remaining
losses (CosineEmbeddingLoss, MarginRankingLoss, TripletMarginLoss,
PoissonNLLLoss, GaussianNLLLoss, MultiLabelSoftMarginLoss; CTCLoss in
test_ctc_loss.py); on the emulated
cuda device too."""

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import DEVICES, assert_close, compare_with_torch, module_pair, to_torch

import gpugrad
import gpugrad.nn.functional as F


@pytest.mark.parametrize("device", DEVICES)
def test_group_norm(rng, device):
    x = rng.standard_normal((2, 6, 3, 2)) * 3 + 1
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    for groups in (1, 2, 3, 6):
        compare_with_torch(rng, lambda a, ww, bb: F.group_norm(a, groups, ww, bb),
                           lambda a, ww, bb: TF.group_norm(a, groups, ww, bb), [x, w, b], device)
    compare_with_torch(rng, lambda a: F.group_norm(a, 2, eps=0.1), lambda a: TF.group_norm(a, 2, eps=0.1),
                       [x[:, :, 0]], device)
    ours, theirs = module_pair("GroupNorm", device, 3, 6)
    compare_with_torch(rng, ours, theirs, [x], device)
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(gpugrad.zeros(2, 5, 3), 2)
    with pytest.raises(ValueError):
        gpugrad.nn.GroupNorm(2, 5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,shape", [("InstanceNorm1d", (3, 4, 5)), ("InstanceNorm2d", (2, 4, 3, 3)),
                                        ("InstanceNorm2d", (4, 3, 3))])
def test_instance_norm(rng, device, name, shape):
    x = rng.standard_normal(shape) * 2 + 0.5
    for kwargs in ({}, {"affine": True}, {"track_running_stats": True, "momentum": 0.3}):
        ours, theirs = module_pair(name, device, 4, **kwargs)
        for step in range(2):
            compare_with_torch(rng, ours, theirs, [x + step], device)
        for a, b in zip(ours.buffers(), theirs.buffers()):
            if a.dtype == gpugrad.float64:
                assert_close(a, b, 1e-12)
        ours.eval(), theirs.eval()
        compare_with_torch(rng, ours, theirs, [x], device)
    with pytest.raises(ValueError):
        gpugrad.nn.InstanceNorm2d(4)(gpugrad.zeros(4, 3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("options", [{}, {"stride": 2}, {"stride": 2, "padding": 1, "output_padding": 1},
                                     {"stride": (2, 3), "padding": (0, 1), "output_padding": (1, 2)},
                                     {"groups": 2}, {"dilation": 2, "padding": 2},
                                     {"stride": 2, "dilation": 3, "output_padding": 2}])
def test_conv_transpose2d(rng, device, options):
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(3 * options.get("groups", 1))
    compare_with_torch(rng, lambda a, ww, bb: F.conv_transpose2d(a, ww, bb, **options),
                       lambda a, ww, bb: TF.conv_transpose2d(a, ww, bb, **options), [x, w, b[:3 * options.get(
                           "groups", 1)]], device)
    compare_with_torch(rng, lambda a, ww: F.conv_transpose2d(a, ww, **options),
                       lambda a, ww: TF.conv_transpose2d(a, ww, **options), [x[0], w], device)


@pytest.mark.parametrize("device", DEVICES)
def test_conv_transpose_modules_and_1d(rng, device):
    x = rng.standard_normal((2, 4, 5))
    for options in ({}, {"stride": 3, "padding": 1, "output_padding": 2}, {"groups": 2, "dilation": 2}):
        compare_with_torch(rng, lambda a, w: F.conv_transpose1d(a, w, **options),
                           lambda a, w: TF.conv_transpose1d(a, w, **options), [x, rng.standard_normal((4, 3, 3))],
                           device)
    for kwargs in ({}, {"stride": 2, "padding": 1, "output_padding": 1, "groups": 2, "dilation": 2, "bias": False}):
        for name in ("ConvTranspose1d", "ConvTranspose2d"):
            ours, theirs = getattr(gpugrad.nn, name)(4, 2, 3, **kwargs), getattr(torch.nn, name)(4, 2, 3, **kwargs)
            assert repr(ours) == repr(theirs)
    ours, theirs = module_pair("ConvTranspose1d", device, 4, 6, 3, stride=2, groups=2)
    compare_with_torch(rng, ours, theirs, [x], device)
    ours, theirs = module_pair("ConvTranspose2d", device, 4, 2, 3, stride=2, padding=1, bias=False)
    image = rng.standard_normal((1, 4, 3, 3))
    compare_with_torch(rng, lambda a: ours(a, output_size=(6, 6)), lambda a: theirs(a, output_size=(6, 6)), [image],
                       device)
    with pytest.raises(ValueError, match="output size"):
        ours(gpugrad.tensor(image, device=device), output_size=(9, 9))
    with pytest.raises(RuntimeError, match="output padding must be smaller"):
        F.conv_transpose2d(gpugrad.zeros(1, 1, 2, 2), gpugrad.zeros(1, 1, 2, 2), output_padding=1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "bilinear", "bilinear-corners"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_interpolate_2d(rng, device, mode, dtype):
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    align = {"align_corners": mode == "bilinear-corners"} if mode.startswith("bilinear") else {}
    mode = mode.split("-corners")[0]
    tol = 1e-10 if dtype == "float64" else 1e-5
    for sizing in ({"scale_factor": 2}, {"scale_factor": 1.5}, {"scale_factor": (0.5, 2.5)}, {"size": (7, 3)},
                   {"size": 1}, {"scale_factor": 1.7, "recompute_scale_factor": True}):
        compare_with_torch(rng, lambda a: F.interpolate(a, mode=mode, **sizing, **align),
                           lambda a: TF.interpolate(a, mode=mode, **sizing, **align), [x], device, tol=tol,
                           double=dtype == "float64")


@pytest.mark.parametrize("device", DEVICES)
def test_interpolate_1d_and_modules(rng, device):
    x = rng.standard_normal((2, 3, 6))
    for mode, align in (("nearest", None), ("linear", False), ("linear", True)):
        compare_with_torch(rng, lambda a: F.interpolate(a, scale_factor=1.5, mode=mode, align_corners=align),
                           lambda a: TF.interpolate(a, scale_factor=1.5, mode=mode, align_corners=align), [x], device)
    image = rng.standard_normal((1, 2, 3, 3))
    for name, kwargs in (("Upsample", {"scale_factor": 2}), ("Upsample", {"size": (5, 4), "mode": "bilinear"}),
                         ("UpsamplingNearest2d", {"scale_factor": 3}), ("UpsamplingBilinear2d", {"size": 5})):
        ours, theirs = getattr(gpugrad.nn, name)(**kwargs), getattr(torch.nn, name)(**kwargs)
        assert repr(ours) == repr(theirs)
        compare_with_torch(rng, ours, theirs, [image], device)
    with pytest.raises(NotImplementedError):
        F.interpolate(gpugrad.zeros(1, 1, 4), scale_factor=2, mode="bilinear")
    with pytest.raises(ValueError, match="align_corners"):
        F.interpolate(gpugrad.zeros(1, 1, 4), scale_factor=2, mode="nearest", align_corners=True)
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        F.interpolate(gpugrad.zeros(1, 1, 4), size=3, scale_factor=2)


@pytest.mark.parametrize("device", DEVICES)
def test_pixel_shuffle(rng, device):
    x = rng.standard_normal((2, 8, 3, 2))
    compare_with_torch(rng, lambda a: F.pixel_shuffle(a, 2), lambda a: TF.pixel_shuffle(a, 2), [x], device)
    compare_with_torch(rng, lambda a: gpugrad.nn.PixelUnshuffle(3)(a), lambda a: torch.nn.PixelUnshuffle(3)(a),
                       [rng.standard_normal((3, 6, 9))], device)
    y = gpugrad.tensor(x, device=device)
    assert numpy.array_equal(F.pixel_unshuffle(F.pixel_shuffle(y, 2), 2).cpu().numpy(), x)
    with pytest.raises(RuntimeError, match="divisible"):
        F.pixel_shuffle(gpugrad.zeros(1, 3, 2, 2), 2)


@pytest.mark.parametrize("device", DEVICES)
def test_embedding_max_norm_renormalises_in_place(rng, device):
    weight = rng.standard_normal((6, 3)) * 2
    index = numpy.array([[0, 2, 2], [5, 1, 0]])
    for norm_type in (2.0, 1.0):
        ours = gpugrad.tensor(weight, device=device, requires_grad=True)
        theirs = to_torch(ours, requires_grad=True)
        out = F.embedding(gpugrad.tensor(index, device=device), ours, max_norm=1.5, norm_type=norm_type)
        tout = TF.embedding(to_torch(index, device), theirs, max_norm=1.5, norm_type=norm_type)
        assert_close(out, tout, 1e-12)
        assert_close(ours, theirs, 1e-12)          # rows 0, 1, 2, 5 rescaled in place, 3 and 4 left
        upstream = rng.standard_normal(out.shape)
        out.backward(gpugrad.tensor(upstream, device=device))
        tout.backward(to_torch(upstream, device))
        assert_close(ours.grad, theirs.grad, 1e-12)
    module, tmodule = module_pair("Embedding", device, 6, 3, max_norm=0.5)
    module(gpugrad.tensor([1, 3], device=device)), tmodule(to_torch([1, 3], device))
    assert_close(module.weight, tmodule.weight, 1e-12)
    assert repr(module) == repr(tmodule)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_embedding_bag(rng, device, mode):
    weight = rng.standard_normal((7, 4))
    flat = rng.integers(0, 7, 9)
    offsets = numpy.array([0, 3, 3, 7])
    g_flat, t_flat = gpugrad.tensor(flat, device=device), to_torch(flat, device)
    g_off, t_off = gpugrad.tensor(offsets, device=device), to_torch(offsets, device)
    compare_with_torch(rng, lambda w: F.embedding_bag(g_flat, w, g_off, mode=mode),
                       lambda w: TF.embedding_bag(t_flat, w, t_off, mode=mode), [weight], device,
                       double=mode != "max")
    last = numpy.array([0, 2, 5, 9])
    compare_with_torch(rng, lambda w: F.embedding_bag(g_flat, w, gpugrad.tensor(last, device=device), mode=mode,
                                                      include_last_offset=True, padding_idx=flat[0]),
                       lambda w: TF.embedding_bag(t_flat, w, to_torch(last, device), mode=mode,
                                                  include_last_offset=True, padding_idx=int(flat[0])),
                       [weight], device, double=mode != "max")
    batch = flat[:8].reshape(2, 4)
    compare_with_torch(rng, lambda w: F.embedding_bag(gpugrad.tensor(batch, device=device), w, mode=mode),
                       lambda w: TF.embedding_bag(to_torch(batch, device), w, mode=mode), [weight], device,
                       double=mode != "max")
    if mode == "sum":
        compare_with_torch(rng, lambda w, p: F.embedding_bag(g_flat, w, g_off, mode=mode, per_sample_weights=p),
                           lambda w, p: TF.embedding_bag(t_flat, w, t_off, mode=mode, per_sample_weights=p),
                           [weight, rng.standard_normal(9)], device, double=False)    # (torch has none)
    ours, theirs = module_pair("EmbeddingBag", device, 7, 4, mode=mode)
    compare_with_torch(rng, lambda: ours(g_flat, g_off), lambda: theirs(t_flat, t_off), [], device)
    assert repr(ours) == repr(theirs)
    with pytest.raises(ValueError, match="offsets has to be None"):
        F.embedding_bag(gpugrad.tensor(batch), gpugrad.zeros(7, 4), gpugrad.tensor([0]))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_remaining_losses(rng, device, reduction):
    x1, x2 = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    signs = rng.choice([-1.0, 1.0], 5)
    r = {"reduction": reduction}
    for margin in (0.0, 0.3):
        compare_with_torch(rng, lambda a, b, y: F.cosine_embedding_loss(a, b, y, margin, **r),
                           lambda a, b, y: TF.cosine_embedding_loss(a, b, y, margin, **r), [x1, x2, signs], device)
        compare_with_torch(rng, lambda a, b, y: F.margin_ranking_loss(a, b, y, margin, **r),
                           lambda a, b, y: TF.margin_ranking_loss(a, b, y, margin, **r), [x1[:, 0], x2[:, 0], signs],
                           device)
    compare_with_torch(rng, lambda a, b: F.cosine_embedding_loss(a, b, gpugrad.tensor(-1, device=device), **r),
                       lambda a, b: TF.cosine_embedding_loss(a, b, to_torch(-1, device), **r), [x1[0], x2[0]], device)
    for p, swap in ((2, False), (1, True), (3, False)):
        compare_with_torch(rng, lambda a, b, c: F.triplet_margin_loss(a, b, c, 0.5, p, swap=swap, **r),
                           lambda a, b, c: TF.triplet_margin_loss(a, b, c, 0.5, p, swap=swap, **r),
                           [x1, x2, rng.standard_normal((5, 4))], device)
    counts = rng.poisson(2.0, (5, 4)).astype(float)
    for log_input, full in ((True, False), (True, True), (False, True)):
        inputs = x1 if log_input else numpy.abs(x1) + 0.1
        compare_with_torch(rng, lambda a, y: F.poisson_nll_loss(a, y, log_input, full, **r),
                           lambda a, y: TF.poisson_nll_loss(a, y, log_input, full, **r), [inputs, counts], device)
    for var in (numpy.abs(x2) + 1e-7, numpy.abs(x2[:, 0]), numpy.abs(x2[:, :1]), numpy.abs(x2[:1])):
        for full in (False, True):
            compare_with_torch(rng, lambda a, y, v: F.gaussian_nll_loss(a, y, v, full, **r),
                               lambda a, y, v: TF.gaussian_nll_loss(a, y, v, full, **r), [x1, x2, var], device)
    compare_with_torch(rng, lambda a, y: F.gaussian_nll_loss(a, y, 0.5, **r),
                       lambda a, y: TF.gaussian_nll_loss(a, y, 0.5, **r), [x1, x2], device)
    labels = rng.integers(0, 2, (5, 4)).astype(float)
    compare_with_torch(rng, lambda a, y, w: F.multilabel_soft_margin_loss(a, y, w, **r),
                       lambda a, y, w: TF.multilabel_soft_margin_loss(a, y, w, **r), [x1, labels, rng.random(4)],
                       device)
    compare_with_torch(rng, lambda a, y: F.multilabel_soft_margin_loss(a, y, **r),
                       lambda a, y: TF.multilabel_soft_margin_loss(a, y, **r), [x1[0], labels[0]], device)


@pytest.mark.parametrize("device", DEVICES)
def test_remaining_loss_modules_and_errors(rng, device):
    x1, x2, x3 = (rng.standard_normal((3, 4)) for _ in range(3))
    signs = numpy.array([1.0, -1.0, 1.0])
    cases = [("CosineEmbeddingLoss", {"margin": 0.2}, [x1, x2, signs]),
             ("MarginRankingLoss", {"margin": 0.1, "reduction": "sum"}, [x1[:, 0], x2[:, 0], signs]),
             ("TripletMarginLoss", {"margin": 2.0, "p": 1.0, "swap": True}, [x1, x2, x3]),
             ("PoissonNLLLoss", {"full": True}, [x1, numpy.abs(x2) * 3]),
             ("GaussianNLLLoss", {"full": True, "eps": 0.1}, [x1, x2, numpy.abs(x3)]),
             ("MultiLabelSoftMarginLoss", {"reduction": "none"}, [x1, (x2 > 0).astype(float)])]
    for name, kwargs, arrays in cases:
        ours, theirs = module_pair(name, device, **kwargs)
        assert repr(ours) == repr(theirs)
        compare_with_torch(rng, ours, theirs, arrays, device)
    with pytest.raises(ValueError, match="margin must be greater than 0"):
        F.triplet_margin_loss(gpugrad.zeros(2), gpugrad.zeros(2), gpugrad.zeros(2), margin=0)
    with pytest.raises(RuntimeError, match="1D target tensor expects 2D input tensors"):
        F.cosine_embedding_loss(gpugrad.zeros(3), gpugrad.zeros(3), gpugrad.ones(3))
    with pytest.raises(RuntimeError, match="same dimension"):
        F.margin_ranking_loss(gpugrad.zeros(3), gpugrad.zeros(3, 1), gpugrad.ones(3))
    with pytest.raises(ValueError, match="var is of incorrect size"):
        F.gaussian_nll_loss(gpugrad.zeros(3, 4), gpugrad.zeros(3, 4), gpugrad.ones(2, 4))
    with pytest.raises(ValueError, match="negative"):
        F.gaussian_nll_loss(gpugrad.zeros(3), gpugrad.zeros(3), -gpugrad.ones(3))
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.poisson_nll_loss(gpugrad.zeros(3), gpugrad.zeros(3), reduction="max")
    with pytest.raises(ValueError, match="TripletMarginLoss: expected margin"):
        gpugrad.nn.TripletMarginLoss(margin=-1)


@pytest.mark.parametrize("device", DEVICES)
def test_prelu(rng, device):
    x = rng.standard_normal((3, 4, 2))
    x[0, 0, 0] = 0.0
    compare_with_torch(rng, F.prelu, TF.prelu, [x, rng.standard_normal(4)], device)
    compare_with_torch(rng, F.prelu, TF.prelu, [x, rng.standard_normal(1)], device)
    compare_with_torch(rng, F.prelu, TF.prelu, [x[0, 0], rng.standard_normal(())], device)
    ours, theirs = module_pair("PReLU", device, 4, init=0.1)
    assert repr(ours) == repr(theirs)
    compare_with_torch(rng, ours, theirs, [x], device)
    with pytest.raises(RuntimeError, match="Mismatch of parameter numbers"):
        F.prelu(gpugrad.zeros(2, 3), gpugrad.zeros(2))


@pytest.mark.parametrize("device", DEVICES)
def test_cdist(rng, device):
    x1, x2 = rng.standard_normal((2, 4, 3)), rng.standard_normal((5, 3))
    x2[0] = x1[0, 1]            # a zero distance: the gradient there is 0, as torch's
    for p in (2.0, 1.0, 3.0, float("inf"), 0.5):
        compare_with_torch(rng, lambda a, b: gpugrad.cdist(a, b, p, "donot_use_mm_for_euclid_dist"),
                           lambda a, b: torch.cdist(a, b, p, "donot_use_mm_for_euclid_dist"), [x1, x2], device,
                           double=False)
    with pytest.raises(RuntimeError, match="same number of columns"):
        gpugrad.cdist(gpugrad.zeros(2, 3), gpugrad.zeros(2, 4))
    with pytest.raises(ValueError, match="compute_mode"):
        gpugrad.cdist(gpugrad.zeros(2, 3), gpugrad.zeros(2, 3), compute_mode="fast")


@pytest.mark.parametrize("device", DEVICES)
def test_dist(rng, device):
    a, b = rng.standard_normal((3, 4)), rng.standard_normal(4)
    for p in (2, 1, float("inf"), 3.5):
        compare_with_torch(rng, lambda x, y: gpugrad.dist(x, y, p), lambda x, y: torch.dist(x, y, p), [a, b], device)
        compare_with_torch(rng, lambda x, y: x.dist(y, p=p), lambda x, y: x.dist(y, p=p), [a, b], device)
    a[0, 1] = b[1]        # (p=0 counts the non-zero differences; torch's backward of it fails)
    assert_close(gpugrad.dist(gpugrad.tensor(a, device=device), gpugrad.tensor(b, device=device), 0),
                 torch.dist(torch.tensor(a), torch.tensor(b), 0), 0)
