"""gpugrad/ops/search.py against torch: unique (flat and along a dim, inverse
and counts, nan kept apart), unique_consecutive, searchsorted and bucketize
(sides, N-D sequences, sorter, int32), histc and histogram (ranges, edges,
weights, density)."""

import math

import numpy
import pytest
import torch
from conftest import DEVICES, to_numpy

import gpugrad


def _same(a, b):
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert tuple(x.shape) == tuple(y.shape), (x.shape, y.shape)
        assert str(x.dtype).split(".")[-1] == str(y.dtype).split(".")[-1], (x.dtype, y.dtype)
        numpy.testing.assert_array_equal(to_numpy(x), to_numpy(y))


@pytest.mark.parametrize("device", DEVICES)
def test_unique(rng, device):
    values = rng.integers(0, 5, (4, 6)).astype(numpy.float64)
    values[1, 1] = math.nan
    for kwargs in ({}, {"return_inverse": True}, {"return_counts": True},
                   {"return_inverse": True, "return_counts": True}):
        _same(gpugrad.unique(gpugrad.tensor(values, device=device), **kwargs), torch.unique(torch.tensor(values),
                                                                                          **kwargs))
    ints = rng.integers(0, 2, (5, 3))
    ints[3] = ints[0]
    for dim in (0, 1, -1):
        _same(gpugrad.tensor(ints, device=device).unique(dim=dim, return_inverse=True, return_counts=True),
              torch.tensor(ints).unique(dim=dim, return_inverse=True, return_counts=True))
    _same(gpugrad.unique(gpugrad.tensor([], device=device)), torch.unique(torch.tensor([])))
    run = numpy.array([1, 1, 2, 2, 3, 1, 1, 2])
    _same(gpugrad.unique_consecutive(gpugrad.tensor(run, device=device), return_inverse=True, return_counts=True),
          torch.unique_consecutive(torch.tensor(run), return_inverse=True, return_counts=True))


@pytest.mark.parametrize("device", DEVICES)
def test_searchsorted_and_bucketize(rng, device):
    boundaries = numpy.sort(rng.integers(0, 10, 7)).astype(numpy.float64)
    values = rng.integers(-1, 12, (3, 4)).astype(numpy.float64)
    g_b, t_b = gpugrad.tensor(boundaries, device=device), torch.tensor(boundaries)
    g_v, t_v = gpugrad.tensor(values, device=device), torch.tensor(values)
    for kwargs in ({}, {"right": True}, {"side": "right"}, {"out_int32": True}):
        _same(gpugrad.searchsorted(g_b, g_v, **kwargs), torch.searchsorted(t_b, t_v, **kwargs))
    for kwargs in ({}, {"right": True}, {"out_int32": True}):
        _same(gpugrad.bucketize(g_v, g_b, **kwargs), torch.bucketize(t_v, t_b, **kwargs))
    _same(gpugrad.searchsorted(g_b, 4.0), torch.searchsorted(t_b, 4.0))
    rows = numpy.sort(rng.standard_normal((3, 5)), axis=1)
    queries = rng.standard_normal((3, 2))
    _same(gpugrad.searchsorted(gpugrad.tensor(rows, device=device), gpugrad.tensor(queries, device=device)),
          torch.searchsorted(torch.tensor(rows), torch.tensor(queries)))
    shuffled = rng.permutation(boundaries)
    sorter = numpy.argsort(shuffled, kind="stable")
    _same(gpugrad.searchsorted(gpugrad.tensor(shuffled, device=device), g_v,
                               sorter=gpugrad.tensor(sorter, device=device)),
          torch.searchsorted(torch.tensor(shuffled), t_v, sorter=torch.tensor(sorter)))
    with pytest.raises(RuntimeError, match="side and right"):
        gpugrad.searchsorted(g_b, g_v, right=True, side="left")
    with pytest.raises(RuntimeError):
        torch.searchsorted(t_b, t_v, right=True, side="left")


@pytest.mark.parametrize("device", DEVICES)
def test_histc_and_histogram(rng, device):
    x = rng.standard_normal(50)
    g, t = gpugrad.tensor(x, device=device), torch.tensor(x)
    for args in ((), (10,), (7, -1.0, 1.0), (5, 0.0, 0.0)):
        _same(gpugrad.histc(g, *args), torch.histc(t, *args))
    _same(g.histc(4, 1.0, 1.0), t.histc(4, 1.0, 1.0))
    for bins, kwargs in ((10, {}), (6, {"range": (-1.0, 2.0)}), (5, {"density": True})):
        ours, theirs = gpugrad.histogram(g, bins, **kwargs), torch.histogram(t, bins, **kwargs)
        numpy.testing.assert_allclose(to_numpy(ours.bin_edges), to_numpy(theirs.bin_edges), rtol=1e-12)
        numpy.testing.assert_allclose(to_numpy(ours.hist), to_numpy(theirs.hist), rtol=1e-12)
    edges = numpy.array([-2.0, -0.5, 0.0, 1.5])
    weight = rng.random(50)
    ours = gpugrad.histogram(g, gpugrad.tensor(edges, device=device), weight=gpugrad.tensor(weight, device=device))
    theirs = torch.histogram(t, torch.tensor(edges), weight=torch.tensor(weight))
    numpy.testing.assert_allclose(to_numpy(ours.hist), to_numpy(theirs.hist), rtol=1e-12)
    with pytest.raises(RuntimeError, match="max must be larger than min"):
        gpugrad.histc(g, 5, 1.0, 0.0)
    with pytest.raises(RuntimeError):
        torch.histc(t, 5, 1.0, 0.0)
