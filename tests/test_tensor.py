"""gpugrad/tensor.py: the Tensor's state and protocol with torch's names
(metadata, conversions, printing, .data, autograd state)."""


import numpy
import pytest
import torch

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


def test_tensor_constructor_and_legacy_types_as_torch():
    assert gpugrad.Tensor([1, 2]).dtype == gpugrad.float32 and gpugrad.Tensor([1, 2]).tolist() == [1.0, 2.0]
    assert gpugrad.Tensor(2, 3).shape == (2, 3) and gpugrad.Tensor().shape == (0,)
    assert gpugrad.LongTensor([1, 2]).dtype == gpugrad.int64 and gpugrad.FloatTensor(3).shape == (3,)
    x = gpugrad.zeros(2)
    assert isinstance(x, gpugrad.FloatTensor) and not isinstance(x, gpugrad.LongTensor)
    assert x.type() == "torch.FloatTensor" and gpugrad.zeros(2, dtype=gpugrad.int64).type() == "torch.LongTensor"
    assert x.type(gpugrad.float64).dtype == gpugrad.float64 and x.type("torch.LongTensor").dtype == gpugrad.int64
    assert torch.zeros(2).type() == x.type()


def test_next_functions_in_torch_layout():
    x = gpugrad.ones(2, requires_grad=True)
    y = (x * 2).sum()
    tx = torch.ones(2, requires_grad=True)
    ty = (tx * 2).sum()
    mul, = y.grad_fn.next_functions
    tmul, = ty.grad_fn.next_functions
    assert mul[1] == tmul[1] == 0 and mul[0].name() == tmul[0].name() == "MulBackward0"
    ours = [(n.name() if n is not None else None, i) for n, i in mul[0].next_functions]
    theirs = [(type(n).__name__ if n is not None else None, i) for n, i in tmul[0].next_functions]
    assert ours == theirs == [("AccumulateGrad", 0), (None, 0)]
    assert mul[0].next_functions[0][0].variable is x


def test_float16_with_a_python_float_rounds_as_torch(rng):
    values = rng.uniform(-100, 100, 4000).astype("float16")
    for scalar in (0.1, 1 / 3, 2.7182818):
        for op in (lambda a, s: a * s, lambda a, s: a + s, lambda a, s: a / s, lambda a, s: s - a):
            ours = op(gpugrad.tensor(values), scalar)
            theirs = op(torch.tensor(values), scalar)
            assert ours.dtype == gpugrad.float16
            assert numpy.array_equal(ours.array, theirs.numpy())


def test_dtype_rules_as_torch():
    with pytest.raises(RuntimeError, match="same dtype, but got: float32 != float64"):
        gpugrad.ones(2, 2) @ gpugrad.ones(2, 2, dtype=gpugrad.float64)
    assert torch.clamp(torch.tensor([1, 2, 3]), min=1.5).dtype == torch.float32
    assert gpugrad.clamp(gpugrad.tensor([1, 2, 3]), min=1.5).dtype == gpugrad.float32
    assert gpugrad.clamp(gpugrad.tensor([1, 2, 3]), min=1.5).tolist() == [1.5, 2.0, 3.0]
    assert gpugrad.tensor([1, 2], dtype=gpugrad.int32).prod().dtype == gpugrad.int64
    assert (gpugrad.tensor([1], dtype=gpugrad.int32) + gpugrad.tensor(1.5, dtype=gpugrad.float64)).dtype == \
        gpugrad.float64 and (torch.tensor([1], dtype=torch.int32) + torch.tensor(1.5, dtype=torch.float64)).dtype \
        == torch.float64
    assert (gpugrad.ones(1, dtype=gpugrad.bfloat16) + gpugrad.ones(1, dtype=gpugrad.float16)).dtype == gpugrad.float32
