"""gpugrad/tensor.py, creation.py, backend.py, serialization.py: the Tensor
API with torch's names, factories, devices, DLPack, save/load."""

import os
import subprocess
import sys

import numpy
import pytest
import torch
from conftest import assert_close

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


def test_factories_match_torch():
    assert gpugrad.zeros(2, 3).tolist() == torch.zeros(2, 3).tolist()
    assert gpugrad.ones((2,), dtype=gpugrad.int32).dtype == gpugrad.int32
    assert gpugrad.full((2, 2), 7).dtype == gpugrad.int64
    assert gpugrad.full((2, 2), 7.0).dtype == gpugrad.float32
    assert gpugrad.arange(5).dtype == gpugrad.int64 and gpugrad.arange(0, 1, 0.25).tolist() == [0, 0.25, 0.5, 0.75]
    assert gpugrad.arange(0.0, 1.0, 0.25).dtype == gpugrad.float32
    assert_close(gpugrad.linspace(0, 1, 7), torch.linspace(0, 1, 7), 1e-7)
    assert gpugrad.eye(3, 4).tolist() == torch.eye(3, 4).tolist()
    assert gpugrad.tensor([[1, 2.5]]).dtype == gpugrad.float32
    assert gpugrad.tensor([True, False]).dtype == gpugrad.bool
    assert gpugrad.tensor(numpy.zeros(2)).dtype == gpugrad.float64
    like = gpugrad.zeros(2, 2, dtype=gpugrad.float64)
    for made in (gpugrad.zeros_like(like), gpugrad.ones_like(like), gpugrad.full_like(like, 3),
                 gpugrad.empty_like(like), gpugrad.rand_like(like), gpugrad.randn_like(like)):
        assert made.shape == (2, 2) and made.dtype == gpugrad.float64
    r = gpugrad.randint(3, 9, (1000,))
    assert r.dtype == gpugrad.int64 and r.min().item() >= 3 and r.max().item() <= 8
    u = gpugrad.rand(10000)
    assert 0 <= u.min().item() and u.max().item() < 1 and abs(u.mean().item() - 0.5) < 0.02
    n = gpugrad.randn(10000, dtype=gpugrad.float64)
    assert abs(n.std().item() - 1) < 0.05
    assert sorted(gpugrad.randperm(5).tolist()) == [0, 1, 2, 3, 4]


def test_manual_seed_is_reproducible():
    gpugrad.manual_seed(123)
    a = gpugrad.randn(5).tolist()
    gpugrad.manual_seed(123)
    assert gpugrad.randn(5).tolist() == a


def test_from_numpy_shares_memory():
    array = numpy.zeros(3, dtype=numpy.float32)
    t = gpugrad.from_numpy(array)
    array[0] = 5
    assert t[0].item() == 5
    with pytest.raises(TypeError, match="unsupported dtype"):
        gpugrad.from_numpy(numpy.zeros(2, dtype=numpy.complex64))


def test_dlpack_zero_copy_with_torch_and_numpy():
    t = torch.arange(4, dtype=torch.float32)
    ours = gpugrad.from_dlpack(t)
    t[0] = 10
    assert ours[0].item() == 10
    back = torch.from_dlpack(ours)
    ours.data[1] = 20
    assert back[1].item() == 20
    n = numpy.from_dlpack(gpugrad.ones(2))
    assert n.tolist() == [1.0, 1.0]


def test_devices():
    assert gpugrad.device("cuda:1") == gpugrad.device("cuda", 1)
    assert str(gpugrad.device("cuda", 2)) == "cuda:2" and repr(gpugrad.device("cpu")) == "device(type='cpu')"
    with pytest.raises(ValueError, match="unknown device type"):
        gpugrad.device("tpu")
    if not gpugrad.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            gpugrad.zeros(2, device="cuda")
        assert gpugrad.cuda.device_count() == 0


def test_default_device_from_environment():
    code = "import gpugrad; print(gpugrad.zeros(1).device)"
    env = dict(os.environ, GPUGRAD_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "cpu"
    env["GPUGRAD_DEVICE"] = "cuda"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if gpugrad.cuda.is_available():
        assert out.stdout.strip() == "cuda:0"
    else:
        assert "CUDA is not available" in out.stderr


@pytest.mark.cuda
def test_cuda_round_trip_and_dlpack_with_torch(rng):
    x = gpugrad.tensor(rng.standard_normal(5), device="cuda", requires_grad=True)
    assert x.is_cuda and str(x.device) == "cuda:0"
    y = (x.cpu() * 2).cuda()
    y.sum().backward()
    assert x.grad.is_cuda and x.grad.tolist() == [2.0] * 5
    t = torch.arange(3.0, device="cuda")
    ours = gpugrad.from_dlpack(t)
    t[0] = 7
    assert ours[0].item() == 7
    assert torch.from_dlpack(ours).device.type == "cuda"
    with pytest.raises(TypeError, match="Use Tensor.cpu()"):
        x.detach().numpy()


def test_save_and_load(tmp_path):
    state = {"w": gpugrad.randn(2, 3), "b": gpugrad.zeros(3, dtype=gpugrad.float64), "step": 7,
             "nested": {"lr": 0.1, 1: [gpugrad.ones(2), (1, "a")]}}
    gpugrad.save(state, tmp_path / "s.npz")
    loaded = gpugrad.load(tmp_path / "s.npz")
    assert loaded["w"].tolist() == state["w"].tolist() and loaded["b"].dtype == gpugrad.float64
    assert loaded["step"] == 7 and loaded["nested"]["lr"] == 0.1
    assert loaded["nested"][1][0].tolist() == [1.0, 1.0] and loaded["nested"][1][1] == (1, "a")
    assert gpugrad.load(tmp_path / "s.npz", map_location="cpu")["w"].device == gpugrad.device("cpu")
    numpy.load(tmp_path / "s.npz")                       # a plain .npz
    with pytest.raises(TypeError, match="cannot store"):
        gpugrad.save({"f": object()}, tmp_path / "bad.npz")


@pytest.mark.cuda
def test_load_onto_another_device(tmp_path):
    model = gpugrad.nn.Linear(3, 2)
    gpugrad.save(model.state_dict(), tmp_path / "m.npz")
    on_gpu = gpugrad.load(tmp_path / "m.npz", map_location="cuda")
    assert on_gpu["weight"].is_cuda
    model.cuda().load_state_dict(on_gpu)
    gpugrad.save(model.state_dict(), tmp_path / "g.npz")
    assert not gpugrad.load(tmp_path / "g.npz", map_location="cpu")["weight"].is_cuda
