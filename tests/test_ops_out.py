"""out= (gpugrad/ops/out.py) and NumPy's keyword names against torch: the
result written into the given tensor (views of it see it), cast within its
kind, resized with torch's warning, pairs of outs, and torch's errors;
axis=/keepdims= as torch's argument parser takes them; randint's keyword
forms; float()/int() of a multi-element tensor."""

import warnings

import numpy
import pytest
import torch

import gpugrad


def _both(call):
    """call(lib) for gpugrad and torch; the results as NumPy arrays (tuples kept)."""
    out = []
    for lib in (gpugrad, torch):
        value = call(lib)
        if isinstance(value, tuple):
            out.append(tuple(v.numpy() for v in value))
        else:
            out.append(value.numpy())
    return out


@pytest.mark.parametrize("call", [
    lambda lib, o: lib.add(lib.arange(6.0).reshape(2, 3), 1, out=o),
    lambda lib, o: lib.mul(lib.arange(6.0).reshape(2, 3), lib.arange(3.0), out=o),
    lambda lib, o: lib.exp(lib.arange(6.0).reshape(2, 3), out=o),
    lambda lib, o: lib.sum(lib.arange(6.0).reshape(2, 3, 1), 2, out=o),
    lambda lib, o: lib.matmul(lib.ones(2, 4), lib.arange(12.0).reshape(4, 3), out=o),
    lambda lib, o: lib.cat([lib.ones(1, 3), lib.zeros(1, 3)], out=o),
    lambda lib, o: lib.where(lib.arange(6).reshape(2, 3) > 2, lib.ones(2, 3), lib.zeros(3), out=o),
    lambda lib, o: lib.clamp(lib.arange(6.0).reshape(2, 3), 1, 4, out=o),
])
def test_out_writes_into_the_given_tensor(call):
    ours, theirs = gpugrad.zeros(2, 3), torch.zeros(2, 3)
    view, tview = ours[0], theirs[0]
    assert call(gpugrad, ours) is ours
    assert call(torch, theirs) is theirs
    numpy.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)
    numpy.testing.assert_allclose(view.numpy(), tview.numpy(), rtol=1e-6)


def test_out_casts_resizes_and_refuses_as_torch():
    ours = gpugrad.zeros(3, dtype=gpugrad.float64)
    gpugrad.add(gpugrad.ones(3, dtype=gpugrad.int64), 1, out=ours)
    assert ours.dtype == gpugrad.float64 and ours.tolist() == [2.0, 2.0, 2.0]
    for lib in (gpugrad, torch):
        with pytest.raises(RuntimeError, match="can't be cast to the desired output type Long"):
            lib.add(lib.ones(3), 1, out=lib.zeros(3, dtype=lib.int64))
        x = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
            lib.mul(x, 2, out=lib.zeros(3))
        with lib.no_grad():
            lib.mul(x, 2, out=lib.zeros(3))
        empty = lib.zeros(0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            lib.add(lib.ones(2, 2), 1, out=empty)
        assert tuple(empty.shape) == (2, 2)
        with pytest.warns(UserWarning, match="resized"):
            lib.add(lib.ones(2, 2), 1, out=lib.zeros(3))
    values, indices = gpugrad.zeros(2), gpugrad.zeros(2, dtype=gpugrad.int64)
    result = gpugrad.max(gpugrad.tensor([[1.0, 5.0], [7.0, 2.0]]), 1, out=(values, indices))
    assert result.values is values and values.tolist() == [5.0, 7.0] and indices.tolist() == [1, 0]
    ours, theirs = _both(lambda lib: lib.sort(lib.tensor([3.0, 1.0, 2.0]),
                                              out=(lib.zeros(3), lib.zeros(3, dtype=lib.int64))))
    assert all(numpy.array_equal(a, b) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("call", [
    lambda lib, x: x.argmax(axis=1), lambda lib, x: x.sum(axis=0), lambda lib, x: x.sum(axis=0, keepdims=True),
    lambda lib, x: lib.sum(x, axis=0), lambda lib, x: x.mean(axis=1), lambda lib, x: x.max(axis=1)[0],
    lambda lib, x: x.min(axis=1, keepdims=True)[0], lambda lib, x: x.std(axis=1), lambda lib, x: x.cumsum(axis=1),
    lambda lib, x: x.sort(axis=1)[0], lambda lib, x: x.softmax(axis=1), lambda lib, x: lib.stack([x, x], axis=0),
    lambda lib, x: x.logsumexp(axis=1), lambda lib, x: lib.argmin(x, axis=1), lambda lib, x: (x > 3).all(axis=1),
    lambda lib, x: x.unsqueeze(0).squeeze(axis=0), lambda lib, x: x.var(1, keepdims=True),
])
def test_numpy_keyword_names(call):
    ours, theirs = _both(lambda lib: call(lib, lib.arange(12.0).reshape(3, 4)))
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-6)


def test_randint_keyword_forms_and_scalar_conversions():
    for call in (lambda lib: lib.randint(5, size=(2, 3)), lambda lib: lib.randint(high=5, size=(2,)),
                 lambda lib: lib.randint(low=1, high=5, size=(2,)), lambda lib: lib.randint(0, 5, (3,))):
        ours, theirs = call(gpugrad), call(torch)
        assert tuple(ours.shape) == tuple(theirs.shape) and ours.dtype == gpugrad.int64
    assert 0 <= int(gpugrad.randint(5, size=(1,))) < 5
    for lib in (gpugrad, torch):
        with pytest.raises(ValueError, match="only one element tensors"):
            float(lib.ones(2))
        with pytest.raises(ValueError, match="only one element tensors"):
            int(lib.ones(2))
        assert lib.is_tensor(lib.ones(1)) and not lib.is_tensor([1.0])
        assert lib.is_floating_point(lib.ones(1)) and not lib.is_floating_point(lib.ones(1, dtype=lib.int64))
        assert len(lib.nonzero(lib.tensor([[0, 1], [1, 0]]), as_tuple=True)) == 2
