"""torch.cpu's names: the CPU as a device (always there, one of it) and the
older ``torch.cpu.amp`` spellings of autocast and GradScaler."""

from gpugrad.cpu import amp


def is_available():
    """True: the CPU is always there."""
    return True


def device_count():
    """1, as torch: the CPU is one device."""
    return 1


def current_device():
    """'cpu', as torch."""
    return "cpu"


def synchronize(device=None):
    """Nothing to wait for: NumPy's work is done when its call returns."""


__all__ = [
    "amp",
    "is_available",
    "device_count",
    "current_device",
    "synchronize",
]
