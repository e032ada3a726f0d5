"""torch.accelerator: the machine's accelerator, for device-agnostic scripts
(``device = torch.accelerator.current_accelerator()``).  gpugrad's one
accelerator type is CUDA (through CuPy)."""

from gpugrad import backend, cuda


def is_available():
    """True when a CUDA GPU is usable (CuPy installed, a device visible)."""
    return cuda.is_available()


def current_accelerator(check_available=False):
    """``device('cuda')`` where CUDA is usable, else None (as torch on a machine without one)."""
    return backend.device("cuda") if cuda.is_available() else None


def device_count():
    """The number of visible CUDA devices (0 without one)."""
    return cuda.device_count()


def _require():
    if not cuda.is_available():
        raise RuntimeError("Cannot access accelerator device when none is available.")


def current_device_index():
    """The current CUDA device's ordinal; RuntimeError without an accelerator, as torch."""
    _require()
    return cuda.current_device()


def set_device_index(device):
    """Make ``device`` (an ordinal, 'cuda:N' or a device) the current one."""
    _require()
    cuda.set_device(device)


def synchronize(device=None):
    """Wait for the accelerator's work (and raise what its kernels recorded)."""
    _require()
    cuda.synchronize(device)


__all__ = ["is_available", "current_accelerator", "device_count", "current_device_index", "set_device_index",
           "synchronize"]
