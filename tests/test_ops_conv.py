"""gpugrad/ops/conv.py: convolution, pooling, unfold/fold against torch
(values, gradients of input, weight and bias, second derivatives)."""

import pytest
import torch
import torch.nn.functional as TF
from conftest import assert_forward_backward, make_pair

import gpugrad
import gpugrad.nn.functional as F
from gpugrad.autograd import gradgradcheck

CONV2D = [dict(), dict(stride=2, padding=1), dict(stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
          dict(groups=2, padding=1), dict(padding="same"), dict(padding="valid", dilation=2)]


@pytest.mark.parametrize("options", CONV2D, ids=str)
def test_conv2d_matches_torch(rng, device, options):
    groups = options.get("groups", 1)
    x, tx = make_pair(rng, (2, 4, 7, 6), "float64", device)
    w, tw = make_pair(rng, (6, 4 // groups, 3, 3), "float64", device)
    b, tb = make_pair(rng, (6,), "float64", device)
    assert_forward_backward(rng, F.conv2d(x, w, b, **options), TF.conv2d(tx, tw, tb, **options),
                            [(x, tx), (w, tw), (b, tb)], 1e-12)


@pytest.mark.parametrize("options", [dict(), dict(stride=2, padding=2, dilation=2), dict(groups=3, padding="same")],
                         ids=str)
def test_conv1d_matches_torch(rng, device, options):
    x, tx = make_pair(rng, (2, 3, 11), "float64", device)
    w, tw = make_pair(rng, (6, 3 // options.get("groups", 1), 3), "float64", device)
    assert_forward_backward(rng, F.conv1d(x, w, None, **options), TF.conv1d(tx, tw, None, **options),
                            [(x, tx), (w, tw)], 1e-12)


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=3, stride=2, ceil_mode=True),
                                     dict(kernel_size=(2, 3), stride=1, padding=(1, 0))], ids=str)
def test_pooling_matches_torch(rng, device, options):
    for ours, theirs, extra in ((F.max_pool2d, TF.max_pool2d, {}), (F.avg_pool2d, TF.avg_pool2d, {}),
                                (F.avg_pool2d, TF.avg_pool2d, {"count_include_pad": False})):
        x, tx = make_pair(rng, (2, 3, 7, 6), "float64", device)
        assert_forward_backward(rng, ours(x, **options, **extra), theirs(tx, **options, **extra), [(x, tx)], 1e-12)
    x, tx = make_pair(rng, (2, 3, 7, 6), "float64", device)
    assert_forward_backward(rng, F.adaptive_avg_pool2d(x, (3, 4)), TF.adaptive_avg_pool2d(tx, (3, 4)), [(x, tx)],
                            1e-12)
    x, tx = make_pair(rng, (2, 3, 9), "float64", device)
    assert_forward_backward(rng, F.max_pool1d(x, 3, 2), TF.max_pool1d(tx, 3, 2), [(x, tx)], 1e-12)


def test_unfold_fold_and_second_derivatives(rng):
    x, tx = make_pair(rng, (2, 3, 5, 4), "float64")
    assert_forward_backward(rng, F.unfold(x, (2, 3), padding=1, stride=(1, 2)),
                            TF.unfold(tx, (2, 3), padding=1, stride=(1, 2)), [(x, tx)], 1e-12)
    cols, tcols = make_pair(rng, (2, 3 * 4, 12), "float64")
    assert_forward_backward(rng, F.fold(cols, (4, 5), 2), TF.fold(tcols, (4, 5), 2), [(cols, tcols)], 1e-12)
    small, _ = make_pair(rng, (1, 2, 4, 4), "float64")
    weight, _ = make_pair(rng, (2, 2, 2, 2), "float64")
    assert gradgradcheck(lambda a, w: F.conv2d(a, w, padding=1), (small, weight))


def test_conv_errors_name_the_shapes():
    with pytest.raises(RuntimeError, match="expect input with 4 channels, but got 3 channels"):
        F.conv2d(gpugrad.ones(1, 3, 5, 5), gpugrad.ones(2, 4, 3, 3))
    with pytest.raises(RuntimeError, match="larger than the padded input"):
        F.conv2d(gpugrad.ones(1, 1, 2, 2), gpugrad.ones(1, 1, 3, 3))
    with pytest.raises(RuntimeError, match="dtype"):
        F.conv2d(gpugrad.ones(1, 1, 4, 4), gpugrad.ones(1, 1, 3, 3, dtype=gpugrad.float64))
    assert torch.is_tensor(TF.conv2d(torch.ones(1, 1, 4, 4), torch.ones(1, 1, 3, 3)))


def test_conv_padding_same_refuses_strides_and_pads_an_even_kernel_after(rng):
    x, tx = make_pair(rng, (1, 2, 5, 6))
    w, tw = make_pair(rng, (3, 2, 2, 4))
    with pytest.raises(RuntimeError, match="padding='same' is not supported for strided convolutions"):
        F.conv2d(x, w, padding="same", stride=2)
    assert_forward_backward(rng, F.conv2d(x, w, padding="same"), TF.conv2d(tx, tw, padding="same"),
                            [(x, tx), (w, tw)], 1e-12)
