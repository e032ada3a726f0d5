"""torch.backends' switches, for the scripts that set them in their first lines.

Each flag is accepted with torch's name and default; what it does in gpugrad
is said in its module: ``cuda.matmul.allow_tf32`` (and
``gpugrad.set_float32_matmul_precision``) switch CuPy's float32 matrix
products to TF32; gpugrad uses no cuDNN, so ``cudnn``'s flags are kept and
read back but change nothing; there is no MPS device.
"""

from gpugrad.backends import (
    cpu,
    cuda,
    cudnn,
    mps,
)

__all__ = [
    "cpu",
    "cuda",
    "cudnn",
    "mps",
]
