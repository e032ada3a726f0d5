"""gpugrad/ops/scatter.py against torch in float64: values, gradients and
second derivatives of scatter, scatter_add, scatter_reduce (every reduction,
include_self both ways), index_add, index_copy, index_fill, masked_scatter;
the in-place forms; torch's errors."""

import math

import numpy
import pytest
import torch
from conftest import DEVICES, compare_with_torch, to_torch

import gpugrad


def _index(rng, shape, size):
    return rng.integers(0, size, shape)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_scatter_and_scatter_add(rng, device, dim):
    x = rng.standard_normal((4, 5))
    index_shape = (3, 4) if dim == 0 else (4, 3)
    src = rng.standard_normal(index_shape)       # (torch's backward refuses a src larger than index)
    size = x.shape[dim]
    # scatter writes: distinct positions along dim so the last write is the same one in both
    if dim == 0:
        index = numpy.stack([rng.permutation(size)[:3] for _ in range(4)], axis=1)
    else:
        index = numpy.stack([rng.permutation(size)[:3] for _ in range(4)], axis=0)
    compare_with_torch(rng, lambda a, s: gpugrad.scatter(a, dim, gpugrad.tensor(index, device=device), s),
                       lambda a, s: torch.scatter(a, dim, to_torch(index, device), s), [x, src], device)
    repeated = _index(rng, index_shape, size)
    compare_with_torch(rng, lambda a, s: a.scatter_add(dim, gpugrad.tensor(repeated, device=device), s),
                       lambda a, s: a.scatter_add(dim, to_torch(repeated, device), s), [x, src], device)
    compare_with_torch(rng, lambda a: gpugrad.scatter(a, dim, gpugrad.tensor(index, device=device), value=2.5),
                       lambda a: torch.scatter(a, dim, to_torch(index, device), value=2.5), [x], device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce(rng, device, reduce, include_self):
    x = rng.standard_normal((5, 3))
    src = rng.standard_normal((6, 3))
    if reduce in ("amax", "amin"):       # ties: torch shares the gradient, the test makes some
        src[1] = src[0]
    if reduce == "prod":
        src[2, 1] = 0.0                   # one zero among the factors
    index = _index(rng, (6, 3), 5)
    index[1] = index[0]
    double = reduce not in ("amax", "amin", "prod")
    compare_with_torch(
        rng, lambda a, s: a.scatter_reduce(0, gpugrad.tensor(index, device=device), s, reduce,
                                           include_self=include_self),
        lambda a, s: a.scatter_reduce(0, to_torch(index, device), s, reduce, include_self=include_self),
        [x, src], device, double=double)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x, index, src, dim", [
    ([2.0318780355589703], [0], [-0.04873681075260759], 0),
    ([[-0.13985371531071739, -0.839723331433007]], [[0, 1]], [[-math.inf, -1.4294496002002404]], -1)])
def test_scatter_reduce_amin_where_src_holds_the_minimum(device, x, index, src, dim):
    """The two fuzz cases (GPUGRAD_FUZZ_SEED=945203634, scatter_reduce/method:3404584512 and
    scatter_reduce/torch:465398791) whose gradient to self was nan on the H200 for torch's 0 and -0.0:
    self is not the minimum, so its gradient is 0 * grad, signed as grad (torch's scatter_reduce_backward)."""
    upstream = numpy.full(numpy.shape(x), -0.5)
    grads = []
    for lib, dev in ((gpugrad, device), (torch, "cpu")):
        a = lib.tensor(x, dtype=lib.float64, device=dev, requires_grad=True)
        s = lib.tensor(src, dtype=lib.float64, device=dev, requires_grad=True)
        out = a.scatter_reduce(dim, lib.tensor(index, device=dev), s, "amin")
        out.backward(lib.tensor(upstream, dtype=lib.float64, device=dev))
        grads.append([out.tolist(), a.grad.tolist(), s.grad.tolist(), numpy.signbit(a.grad.tolist()).tolist()])
    assert grads[0] == grads[1]


@pytest.mark.parametrize("device", DEVICES)
def test_index_add_copy_fill(rng, device):
    x = rng.standard_normal((5, 4))
    source = rng.standard_normal((3, 4))
    index = numpy.array([4, 0, 4])
    g_index = gpugrad.tensor(index, device=device)
    compare_with_torch(rng, lambda a, s: gpugrad.index_add(a, 0, g_index, s, alpha=-1.5),
                       lambda a, s: torch.index_add(a, 0, to_torch(index, device), s, alpha=-1.5), [x, source], device)
    distinct = numpy.array([3, 0, 1])
    compare_with_torch(rng, lambda a, s: a.index_copy(0, gpugrad.tensor(distinct, device=device), s),
                       lambda a, s: a.index_copy(0, to_torch(distinct, device), s), [x, source], device)
    compare_with_torch(rng, lambda a: a.index_fill(1, gpugrad.tensor([2, 0], device=device), -3.0),
                       lambda a: a.index_fill(1, to_torch([2, 0], device), -3.0), [x], device)


@pytest.mark.parametrize("device", DEVICES)
def test_masked_scatter(rng, device):
    x = rng.standard_normal((3, 4))
    mask = rng.random((1, 4)) < 0.5
    source = rng.standard_normal((4, 4))
    compare_with_torch(rng, lambda a, s: a.masked_scatter(gpugrad.tensor(mask, device=device), s),
                       lambda a, s: a.masked_scatter(to_torch(mask, device), s), [x, source], device)


def test_in_place_forms_write_through_views(rng):
    base = gpugrad.zeros(3, 4)
    view = base[1:]
    view.scatter_(1, gpugrad.tensor([[0], [3]]), gpugrad.ones(2, 1))
    view.index_add_(1, gpugrad.tensor([1, 1]), gpugrad.ones(2, 2))
    tbase = torch.zeros(3, 4)
    tview = tbase[1:]
    tview.scatter_(1, torch.tensor([[0], [3]]), torch.ones(2, 1))
    tview.index_add_(1, torch.tensor([1, 1]), torch.ones(2, 2))
    assert numpy.array_equal(base.numpy(), tbase.numpy())
    x = gpugrad.tensor(rng.standard_normal((4,)), requires_grad=True)
    y = x * 1
    y.scatter_add_(0, gpugrad.tensor([0, 0]), gpugrad.ones(2, dtype=gpugrad.float64))
    y.sum().backward()
    assert numpy.array_equal(x.grad.numpy(), numpy.ones(4))


def test_errors_as_torch():
    x = gpugrad.zeros(3, 4)
    cases = [
        (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[3]]), 1.0), RuntimeError, "out of bounds"),
        (lambda lib: lib.zeros(3, 4).scatter(0, lib.tensor([[0.0]]), 1.0), RuntimeError, "int32/int64"),
        (lambda lib: lib.zeros(3, 4).scatter_add(0, lib.tensor([0]), lib.ones(1, 4)), RuntimeError, "dimensions"),
        (lambda lib: lib.zeros(3, 4).scatter_reduce(0, lib.tensor([[0]]), lib.ones(1, 1), "foo"), RuntimeError,
         "reduce argument"),
        (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([0, 1]), lib.ones(1, 4)), RuntimeError,
         "Number of indices"),
        (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([5]), lib.ones(1, 4)), RuntimeError, "out of bounds"),
        (lambda lib: lib.zeros(3, 4).index_copy(0, lib.tensor([5]), lib.ones(1, 4)), IndexError, "out of bounds"),
        (lambda lib: lib.zeros(3, 4).index_add(0, lib.tensor([[0]]), lib.ones(1, 4)), IndexError, "vector"),
        (lambda lib: lib.zeros(3, 4).masked_scatter(lib.ones(3, 4, dtype=lib.bool), lib.ones(5)), RuntimeError,
         "Number of elements of source"),
    ]
    for call, error, words in cases:
        with pytest.raises(error, match=words):
            call(gpugrad)
        with pytest.raises(error):
            call(torch)
    assert x.numel() == 12


def test_index_errors_name_what_torchs_kernels_name():
    """Out-of-range indices raise what torch's CPU kernels raise, which depends on the path they take
    (fuzzer seed 1466559323): index_add_ with alpha 1 on the first or last of 2+ dims goes through
    scatter_add (RuntimeError), otherwise IndexError; an expanded target fails its overlap check first;
    index_select on dim 1, or on an empty tensor of 2+ dims, raises torch's 'out of DATA bounds'."""
    def kind(lib, shape, dim, alpha=1):
        source_shape = list(shape)
        source_shape[dim] = 3
        try:
            lib.zeros(*shape).index_add_(dim, lib.tensor([0, 1, shape[dim]]), lib.ones(*source_shape), alpha=alpha)
        except (IndexError, RuntimeError) as error:
            return type(error)
        return None
    for shape in ((5,), (4, 4), (4, 5, 6), (4, 5, 1), (2, 3, 4, 5)):
        for dim in range(len(shape)):
            for alpha in (1, 2):
                assert kind(gpugrad, shape, dim, alpha) is kind(torch, shape, dim, alpha) is not None, (shape, dim)
    for lib in (gpugrad, torch):
        with pytest.raises(RuntimeError, match="more than one element of the written-to tensor"):
            lib.zeros(3, 1).expand(3, 3).index_add_(1, lib.tensor([0, 7]), lib.ones(3, 2))
    for shape, dim, index in (((1, 3, 0), 0, 1), ((0, 3), 1, 5), ((2, 0), 0, 3), ((2, 3), 1, 4)):
        message = f"INDICES element is out of DATA bounds, id={index} axis_dim={shape[dim]}"
        for lib in (gpugrad, torch):
            with pytest.raises(RuntimeError, match=message):
                lib.index_select(lib.zeros(shape), dim, lib.tensor([index]))
    for lib in (gpugrad, torch):
        with pytest.raises(IndexError, match="index out of range in self"):
            lib.index_select(lib.zeros(2, 3), 0, lib.tensor([5]))
