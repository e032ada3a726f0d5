"""CUDA side of gpugrad: device queries (torch.cuda's names), the kernel
loader, the fused ops' launchers and the device-side error word.

Importing this package does not import CuPy; the submodules that launch
kernels do, and they are reached only for CUDA tensors.
"""

from gpugrad import backend


def is_available():
    """True when CuPy is installed and a CUDA GPU is usable."""
    return backend.cuda_available()


def device_count():
    if not is_available():
        return 0
    return backend.cupy_module().cuda.runtime.getDeviceCount()


def current_device():
    return backend.cupy_module().cuda.runtime.getDevice()


def synchronize(device=None):
    """Wait for all work on the device, then raise any error its kernels recorded."""
    if not is_available():
        return
    cp = backend.cupy_module()
    with cp.cuda.Device(current_device() if device is None else backend.device(device).index or 0):
        cp.cuda.Device().synchronize()
    from gpugrad.cuda import errors
    errors.check()


def manual_seed(seed):
    if is_available():
        backend.cupy_module().random.seed(int(seed))


def memory_allocated():
    """Bytes currently in use in CuPy's memory pool (torch.cuda.memory_allocated)."""
    return backend.cupy_module().get_default_memory_pool().used_bytes() if is_available() else 0


def get_device_name(device=None):
    cp = backend.cupy_module()
    index = current_device() if device is None else backend.device(device).index or 0
    return cp.cuda.runtime.getDeviceProperties(index)["name"].decode()
