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
    """Bytes in use in CuPy's memory pool (torch.cuda.memory_allocated)."""
    return backend.cupy_module().get_default_memory_pool().used_bytes() if is_available() else 0


def get_device_name(device=None):
    """The name of a CUDA device, e.g. 'NVIDIA H100 80GB HBM3'."""
    cp = backend.cupy_module()
    name = cp.cuda.runtime.getDeviceProperties(_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else name
