"""gpugrad/tensor.py: the Tensor's state and protocol with torch's names
(metadata, conversions, printing, .data, autograd state)."""


import numpy
import pytest

import gpugrad


def test_repr_looks_like_torch():
    assert repr(gpugrad.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert repr(gpugrad.tensor([1.5, 2.25])) == "tensor([1.5000, 2.2500])"
    x = gpugrad.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    assert repr(x * 2) == "tensor([2., 4.], grad_fn=<MulBackward0>)"
    assert repr(gpugrad.tensor([1, 2])) == "tensor([1, 2])"
    assert repr(gpugrad.tensor([1.0], dtype=gpugrad.float64)) == "tensor([1.], dtype=gpugrad.float64)"
    assert repr(gpugrad.tensor(3.5)) == "tensor(3.5000)"


def test_metadata_and_conversions():
    x = gpugrad.arange(6).reshape(2, 3)
    assert x.shape == (2, 3) and x.ndim == 2 and x.dim() == 2 and x.numel() == 6 and x.size(1) == 3
    assert x.dtype == gpugrad.int64 and str(x.device) == "cpu" and not x.is_cuda
    assert x.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert x[1, 2].item() == 5 and isinstance(x[1, 2].item(), int)
    assert x.float().dtype == gpugrad.float32 and x.double().dtype == gpugrad.float64
    assert x.half().dtype == gpugrad.float16 and x.long() is x and x.int().dtype == gpugrad.int32
    assert x.to(gpugrad.float64).dtype == gpugrad.float64 and x.to("cpu") is x
    assert numpy.array_equal(x.numpy(), numpy.arange(6).reshape(2, 3))
    assert float(gpugrad.tensor(2.5)) == 2.5 and int(gpugrad.tensor(3)) == 3
    assert f"{gpugrad.tensor(1 / 3):.3f}" == "0.333"
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        x.item()
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(x)
    assert x.stride() == (3, 1) and x.T.stride() == (1, 3) and not x.T.is_contiguous()


def test_to_is_differentiable_across_dtypes(rng):
    x = gpugrad.tensor(rng.standard_normal(3), dtype=gpugrad.float64, requires_grad=True)
    y = x.float() * 2
    y.sum().backward()
    assert x.grad.dtype == gpugrad.float64 and x.grad.tolist() == [2.0, 2.0, 2.0]
