"""gpugrad/creation.py: factories with torch's signatures, NumPy and DLPack exchange."""

import numpy
import pytest
import torch
from conftest import assert_close, needs_torch_cuda

import gpugrad


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


@pytest.mark.cuda
@needs_torch_cuda
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


def test_factories_refuse_what_torch_refuses():
    for bad, kind in ((lambda: gpugrad.arange(0, 1, -1), RuntimeError), (lambda: gpugrad.arange(0, 1, 0), RuntimeError),
                      (lambda: gpugrad.eye(-1), RuntimeError), (lambda: gpugrad.linspace(0, 1, -1), RuntimeError),
                      (lambda: gpugrad.full((2,), float("inf"), dtype=gpugrad.int64), RuntimeError),
                      (lambda: gpugrad.tensor([float("nan")], dtype=gpugrad.int32), RuntimeError),
                      (lambda: gpugrad.zeros(), TypeError), (lambda: gpugrad.arange(3, dtype=gpugrad.bool),
                                                             NotImplementedError)):
        with pytest.raises(kind):
            bad()
    assert gpugrad.arange(4.15, dtype=gpugrad.int64).tolist() == torch.arange(4.15, dtype=torch.int64).tolist()
    for dtype in ("int64", "int32", "uint8"):          # an infinite step: int64 cannot hold it (fuzzer seed 4140803826)
        with pytest.raises(RuntimeError, match="cannot be converted to type int64_t without overflow"):
            gpugrad.arange(-3, 6, float("inf"), dtype=getattr(gpugrad, dtype))
    assert gpugrad.arange(-3, 6, float("inf"), dtype=gpugrad.float64).tolist() == []     # as torch's: empty
    assert gpugrad.arange(4.15, dtype=gpugrad.int32).tolist() == torch.arange(4.15, dtype=torch.int32).tolist()


def test_sizes_are_ints_only_as_torch():
    """zeros((3, 2.5)) made a 3x2 tensor (issue 25: nn.Linear(2.5, 3)); an integer 0-d tensor is a size."""
    for bad in (lambda lib: lib.zeros((3, 2.5)), lambda lib: lib.ones(2.5), lambda lib: lib.empty("3"),
                lambda lib: lib.zeros(lib.tensor(2.0)), lambda lib: lib.ones(6).reshape(2, 3.0),
                lambda lib: lib.ones(3).expand(3.0)):
        with pytest.raises(TypeError):
            bad(torch)
        with pytest.raises(TypeError):
            bad(gpugrad)
    for good in (lambda lib: lib.zeros(numpy.int64(2)), lambda lib: lib.zeros(lib.tensor(2)),
                 lambda lib: lib.ones(6).reshape(lib.tensor(2), 3)):
        assert tuple(good(gpugrad).shape) == tuple(good(torch).shape)


def test_logspace_of_one_integer_step_keeps_the_fractional_start():
    for args in ((2.96, 1.52, 1), (2.96, 1.52, 3), (-1.0, 2.0, 3)):
        for base in (10.0, 2.0):
            assert gpugrad.logspace(*args, base=base, dtype=gpugrad.int64).tolist() == \
                torch.logspace(*args, base=base, dtype=torch.int64).tolist(), (args, base)
