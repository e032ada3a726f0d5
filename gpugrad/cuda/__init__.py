"""CUDA side of gpugrad: device queries (torch.cuda's names), the kernel
loader, the fused ops' launchers and the device-side error word.

Importing this package does not import CuPy; the submodules that launch
kernels reach it through ``gpugrad.backend`` when a CUDA tensor is used.
"""

from gpugrad import backend
from gpugrad.cuda import errors


def is_available():
    """True when CuPy is installed and a CUDA GPU is usable."""
    return backend.cuda_available()


def device_count():
    """The number of visible CUDA devices (0 without CUDA)."""
    if not is_available():
        return 0
    return backend.cupy_module().cuda.runtime.getDeviceCount()


def current_device():
    """The ordinal of the current CUDA device."""
    return backend.cupy_module().cuda.runtime.getDevice()


def set_device(device):
    """Make ``device`` (an ordinal, 'cuda:N' or a device) the current CUDA device."""
    backend.cupy_module().cuda.Device(_index(device)).use()


def _index(device):
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    return backend.device(device).index or 0


def synchronize(device=None):
    """Wait for all work on the device, then raise any error its kernels recorded
    (IndexError for an out-of-range class index)."""
    if not is_available():
        return
    cp = backend.cupy_module()
    index = _index(device)
    with cp.cuda.Device(index):
        cp.cuda.Device().synchronize()
    errors.raise_recorded(index)


def memory_allocated(device=None):
    """Bytes in use in CuPy's memory pool on ``device`` (torch.cuda.memory_allocated);
    0 without CUDA, as torch."""
    return backend.memory_in_use(_index(device)) if is_available() else 0


def max_memory_allocated(device=None):
    """The most bytes in use in CuPy's memory pool on ``device`` since the program
    started or :func:`reset_peak_memory_stats` (torch.cuda.max_memory_allocated);
    0 without CUDA.  gpugrad notes the pool's use after each allocation; where the
    user installed an allocator of their own before gpugrad's first CUDA use, only
    the bytes in use now are known."""
    return backend.peak_memory_in_use(_index(device)) if is_available() else 0


def reset_peak_memory_stats(device=None):
    """Start :func:`max_memory_allocated` afresh from the bytes in use now."""
    if is_available():
        backend.reset_peak_memory(_index(device))


reset_max_memory_allocated = reset_peak_memory_stats


def memory_reserved(device=None):
    """Bytes CuPy's memory pool holds on ``device``, in use or cached for reuse
    (torch.cuda.memory_reserved); 0 without CUDA."""
    if not is_available():
        return 0
    cp = backend.cupy_module()
    with cp.cuda.Device(_index(device)):
        return cp.get_default_memory_pool().total_bytes()


def empty_cache():
    """Return the blocks CuPy's memory pools cache but no tensor uses to the
    driver (torch.cuda.empty_cache); a no-op without CUDA."""
    if is_available():
        cp = backend.cupy_module()
        cp.get_default_memory_pool().free_all_blocks()
        cp.get_default_pinned_memory_pool().free_all_blocks()


def manual_seed(seed):
    """Seed the default generator of the current GPU (torch.cuda.manual_seed);
    a no-op without CUDA, as torch's."""
    if is_available():
        # at call time: gpugrad.random sits above this package (tensor imports gpugrad.cuda.errors)
        from gpugrad import random
        random.generator_for(backend.device("cuda", current_device())).manual_seed(seed)


def manual_seed_all(seed):
    """Seed the default generator of every GPU (torch.cuda.manual_seed_all); a no-op without CUDA."""
    if is_available():
        # at call time, as in manual_seed
        from gpugrad import random
        random.manual_seed_cuda(seed)


def is_bf16_supported(including_emulation=True):
    """True on a GPU of compute capability 8.0 or more (bfloat16 arithmetic in
    hardware); False without CUDA."""
    if not is_available():
        return False
    return int(backend.cupy_module().cuda.Device(current_device()).compute_capability) >= 80


def get_device_name(device=None):
    """The name of a CUDA device, e.g. 'NVIDIA H100 80GB HBM3'."""
    cp = backend.cupy_module()
    name = cp.cuda.runtime.getDeviceProperties(_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else name
