"""The plumbing at the top of scripts: gpugrad.backends, accelerator, cuda's
seeding and memory queries, cuda.amp / cpu.amp, thread counts, float32
matmul precision, autograd.Variable, onnx, compile; each against what torch
answers on the same machine where the answer does not depend on the
hardware (torch here is CPU-only; the CUDA answers run under @cuda)."""

import warnings

import numpy
import pytest
from conftest import EMULATED

import gpugrad

torch = pytest.importorskip("torch")


def test_backends_flags_have_torch_defaults_and_are_kept():
    cudnn = gpugrad.backends.cudnn
    for name in ("benchmark", "deterministic", "enabled", "allow_tf32"):
        assert getattr(cudnn, name) == getattr(torch.backends.cudnn, name), name
    assert cudnn.is_available() is False and cudnn.version() is None
    saved = cudnn.benchmark, cudnn.deterministic
    try:
        cudnn.benchmark, cudnn.deterministic = True, True
        assert gpugrad.backends.cudnn.benchmark is True and gpugrad.backends.cudnn.deterministic is True
    finally:
        cudnn.benchmark, cudnn.deterministic = saved
    assert gpugrad.backends.mps.is_available() is False and gpugrad.backends.mps.is_built() is False
    assert gpugrad.backends.cpu.get_cpu_capability() in ("AVX512", "AVX2", "DEFAULT")
    assert isinstance(gpugrad.backends.cuda.is_built(), bool)
    matmul = gpugrad.backends.cuda.matmul
    assert matmul.allow_tf32 is False            # torch's default (no CUPY_TF32 in the test environment)
    assert matmul.allow_bf16_reduced_precision_reduction == torch.backends.cuda.matmul.\
        allow_bf16_reduced_precision_reduction


def test_cpu_capability_agrees_with_torch_on_x86():
    ours = gpugrad.backends.cpu.get_cpu_capability()
    theirs = torch.backends.cpu.get_cpu_capability()
    if theirs in ("AVX512", "AVX2"):
        assert ours == theirs


def test_float32_matmul_precision_drives_allow_tf32():
    matmul = gpugrad.backends.cuda.matmul
    assert gpugrad.get_float32_matmul_precision() == "highest"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # a CuPy without the switch says it cannot apply
            gpugrad.set_float32_matmul_precision("medium")
            assert matmul.allow_tf32 is True and gpugrad.get_float32_matmul_precision() == "medium"
            gpugrad.set_float32_matmul_precision("high")
            assert gpugrad.get_float32_matmul_precision() == "high"
            with pytest.warns(UserWarning, match="not one of 'highest', 'high', or 'medium'"):
                gpugrad.set_float32_matmul_precision("fast")
            assert gpugrad.get_float32_matmul_precision() == "high"
            gpugrad.set_float32_matmul_precision("highest")
            assert matmul.allow_tf32 is False and gpugrad.get_float32_matmul_precision() == "highest"
            matmul.allow_tf32 = True
            assert gpugrad.get_float32_matmul_precision() == "high"
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matmul.allow_tf32 = False


@pytest.mark.skipif(gpugrad.cuda.is_available(), reason="the answers of a machine without CUDA")
def test_cuda_queries_without_cuda_answer_as_torch():
    assert gpugrad.accelerator.is_available() is torch.accelerator.is_available() is False
    assert gpugrad.accelerator.current_accelerator() is None is torch.accelerator.current_accelerator()
    assert gpugrad.accelerator.device_count() == 0 == torch.accelerator.device_count()
    with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
        gpugrad.accelerator.current_device_index()
    with pytest.raises(RuntimeError, match="Cannot access accelerator device when none is available"):
        gpugrad.accelerator.synchronize()
    for name in ("memory_allocated", "max_memory_allocated", "memory_reserved"):
        assert getattr(gpugrad.cuda, name)() == 0 == getattr(torch.cuda, name)(), name
    # seeding, emptying the cache: accepted and nothing to do, as torch's
    assert gpugrad.cuda.manual_seed(3) is None and gpugrad.cuda.manual_seed_all(3) is None
    assert gpugrad.cuda.empty_cache() is None
    assert gpugrad.cuda.is_bf16_supported() is False
    # matmul.allow_tf32 has no CUDA to apply to: kept, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpugrad.backends.cuda.matmul.allow_tf32 = True
        gpugrad.backends.cuda.matmul.allow_tf32 = False


def test_cpu_module_answers_as_torch():
    assert gpugrad.cpu.is_available() is torch.cpu.is_available() is True
    assert gpugrad.cpu.device_count() == torch.cpu.device_count() == 1
    assert gpugrad.cpu.current_device() == torch.cpu.current_device() == "cpu"
    assert gpugrad.cpu.synchronize() is None


def test_cpu_amp_aliases_autocast_to_bfloat16_with_torchs_deprecation(rng):
    a, b = gpugrad.tensor(rng.standard_normal((3, 4)), dtype=gpugrad.float32), gpugrad.randn(4, 2)
    with pytest.warns(FutureWarning, match="gpugrad.amp.autocast\\('cpu'"):
        region = gpugrad.cpu.amp.autocast()
    with region:
        assert (a @ b).dtype == gpugrad.bfloat16
        assert gpugrad.is_autocast_enabled("cpu")
    assert not gpugrad.is_autocast_enabled("cpu") and (a @ b).dtype == gpugrad.float32
    with pytest.warns(FutureWarning):
        with gpugrad.cpu.amp.autocast(dtype=gpugrad.float16):
            assert (a @ b).dtype == gpugrad.float16
    with pytest.warns(FutureWarning):
        with gpugrad.cpu.amp.autocast(enabled=False):
            assert (a @ b).dtype == gpugrad.float32
    with pytest.warns(FutureWarning, match="GradScaler"):
        scaler = gpugrad.cpu.amp.GradScaler(init_scale=4.0)
    assert isinstance(scaler, gpugrad.amp.GradScaler) and scaler.is_enabled()
    assert float(scaler.scale(gpugrad.tensor(2.0))) == 8.0


def test_cuda_amp_aliases_the_cuda_region():
    with pytest.warns(FutureWarning, match="gpugrad.amp.autocast\\('cuda'"):
        region = gpugrad.cuda.amp.autocast()
    with region:
        assert gpugrad.is_autocast_enabled("cuda") and gpugrad.get_autocast_dtype("cuda") == gpugrad.float16
        assert not gpugrad.is_autocast_enabled("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = gpugrad.cuda.amp.GradScaler()
    assert scaler.is_enabled() == gpugrad.cuda.is_available()
    from gpugrad.cuda.amp import GradScaler, autocast  # the import line scripts write
    assert autocast is gpugrad.cuda.amp.autocast and GradScaler is gpugrad.cuda.amp.GradScaler


def test_num_threads_set_numpy_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = gpugrad.get_num_threads()
    assert before >= 1
    try:
        gpugrad.set_num_threads(1)
        assert gpugrad.get_num_threads() == 1
        blas = [c for c in threadpoolctl.threadpool_info() if c["user_api"] == "blas"]
        assert blas and all(c["num_threads"] == 1 for c in blas)
        a = numpy.ones((300, 300))
        assert (gpugrad.tensor(a) @ gpugrad.tensor(a))[0, 0].item() == 300.0
    finally:
        gpugrad.set_num_threads(before)
    assert gpugrad.get_num_threads() == before
    for bad, message in ((0, "positive integer"), (-2, "positive integer"), (1.5, "expects an int")):
        with pytest.raises(RuntimeError, match=message):
            gpugrad.set_num_threads(bad)
        with pytest.raises(RuntimeError, match=message):
            torch.set_num_threads(bad)


def test_variable_returns_a_tensor_as_torch(rng):
    Variable = gpugrad.autograd.Variable
    data = gpugrad.tensor(rng.standard_normal(3))
    v = Variable(data, requires_grad=True)
    tv = torch.autograd.Variable(torch.from_numpy(data.numpy()), requires_grad=True)
    assert type(v) is gpugrad.Tensor and v is not data and v.is_leaf and v.requires_grad == tv.requires_grad
    assert isinstance(data, Variable) and isinstance(v, Variable) and not isinstance(3.0, Variable)
    (v * 2).sum().backward()
    assert v.grad.tolist() == [2.0, 2.0, 2.0]
    plain = Variable(data)
    assert not plain.requires_grad
    with gpugrad.no_grad():
        plain[0] = 7.0
    assert data[0].item() == 7.0             # the data is shared, as torch's
    nonleaf = gpugrad.ones(2, requires_grad=True) * 3
    v2 = Variable(nonleaf)
    assert v2.is_leaf and not v2.requires_grad and v2.grad_fn is None
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got list"):
        Variable([1.0, 2.0])
    with pytest.raises(TypeError, match="Variable data has to be a tensor, but got list"):
        torch.autograd.Variable([1.0, 2.0])
    with pytest.warns(UserWarning, match="volatile was removed"):
        Variable(data, volatile=True)


def test_onnx_imports_and_export_says_what_to_do():
    import gpugrad.onnx
    assert gpugrad.onnx.is_in_onnx_export() is False
    with pytest.raises(NotImplementedError, match="torch.onnx.export"):
        gpugrad.onnx.export(gpugrad.nn.Linear(2, 2), (gpugrad.randn(1, 2),), "model.onnx")


def test_compile_is_the_identity_and_warns_once(monkeypatch, rng):
    monkeypatch.setattr(gpugrad.compiler, "_warned", False)
    model = gpugrad.nn.Linear(3, 2)
    with pytest.warns(UserWarning, match="returns the model unchanged"):
        assert gpugrad.compile(model) is model
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # once per process
        assert gpugrad.compile(model, mode="max-autotune", fullgraph=True) is model

        @gpugrad.compile
        def f(x):
            return x * 2

        @gpugrad.compile(dynamic=False)
        def g(x):
            return x + 1
    x = gpugrad.tensor(rng.standard_normal(2))
    assert gpugrad.equal(f(x), x * 2) and gpugrad.equal(g(x), x + 1)
    with pytest.raises(AssertionError, match="A callable function is expected"):
        gpugrad.compile(3)
    assert gpugrad.compiler.is_compiling() is False and gpugrad.compiler.disable(f) is f


# -- on a CUDA device (the emulator's, or a real one) ----------------------------------------------

@pytest.mark.cuda
def test_cuda_memory_queries_follow_the_pool():
    gpugrad.cuda.synchronize()
    gpugrad.cuda.empty_cache()
    gpugrad.cuda.reset_peak_memory_stats()
    start = gpugrad.cuda.memory_allocated()
    x = gpugrad.zeros(1 << 20, device="cuda")             # 4 MiB
    assert gpugrad.cuda.memory_allocated() - start >= 4 << 20
    assert gpugrad.cuda.max_memory_allocated() >= gpugrad.cuda.memory_allocated()
    assert gpugrad.cuda.memory_reserved() >= gpugrad.cuda.memory_allocated()
    peak = gpugrad.cuda.max_memory_allocated()
    del x
    assert gpugrad.cuda.memory_allocated() == start
    if not EMULATED:                                       # the emulator has no allocator hook
        assert gpugrad.cuda.max_memory_allocated() == peak >= start + (4 << 20)
    gpugrad.cuda.reset_peak_memory_stats()
    assert gpugrad.cuda.max_memory_allocated() == gpugrad.cuda.memory_allocated()
    gpugrad.cuda.empty_cache()
    assert gpugrad.cuda.memory_reserved() >= gpugrad.cuda.memory_allocated()
    assert gpugrad.cuda.get_device_name()
    assert gpugrad.accelerator.is_available() and gpugrad.accelerator.current_accelerator() == "cuda"
    assert gpugrad.accelerator.device_count() == gpugrad.cuda.device_count() >= 1
    assert gpugrad.accelerator.current_device_index() == gpugrad.cuda.current_device()
    gpugrad.accelerator.synchronize()


@pytest.mark.cuda
def test_cuda_manual_seed_repeats_the_gpu_stream():
    gpugrad.cuda.manual_seed(5)
    a = gpugrad.randn(4, device="cuda")
    gpugrad.cuda.manual_seed_all(5)
    b = gpugrad.randn(4, device="cuda")
    assert gpugrad.equal(a, b)
    cpu_state = gpugrad.get_rng_state()
    gpugrad.cuda.manual_seed(6)
    assert gpugrad.equal(cpu_state, gpugrad.get_rng_state())     # the CPU stream is not touched


@pytest.mark.cuda
def test_allow_tf32_sets_cupys_compute_type_or_says_it_cannot():
    matmul = gpugrad.backends.cuda.matmul
    try:
        if EMULATED:
            with pytest.warns(UserWarning, match="cannot apply"):
                matmul.allow_tf32 = True
            return
        import cupy
        from cupy._core import _routines_linalg as linalg
        matmul.allow_tf32 = True
        expected = linalg.COMPUTE_TYPE_TF32 if gpugrad.cuda.is_bf16_supported() else linalg.COMPUTE_TYPE_DEFAULT
        assert linalg.get_compute_type(cupy.float32) == expected
        matmul.allow_tf32 = False
        assert linalg.get_compute_type(cupy.float32) == linalg.COMPUTE_TYPE_DEFAULT
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matmul.allow_tf32 = False
