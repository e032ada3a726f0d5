"""torch.backends.mps: gpugrad has no Apple-GPU (MPS) device."""


def is_available():
    """False: gpugrad runs on the CPU (NumPy) and on NVIDIA GPUs (CuPy) only."""
    return False


def is_built():
    """False: gpugrad has no MPS backend."""
    return False
