"""torch.linalg: matrix functions and decompositions (``ops/decomposition.py``)
with the products and diagonals that torch.linalg also names."""

from gpugrad.ops.decomposition import (
    LinAlgError,
    cholesky,
    det,
    eigh,
    eigvalsh,
    inv,
    matrix_norm,
    norm,
    pinv,
    qr,
    slogdet,
    solve,
    svd,
    svdvals,
    vector_norm,
)
from gpugrad.ops.linalg import matmul
from gpugrad.ops.shape import diagonal as _diagonal


def diagonal(A, *, offset=0, dim1=-2, dim2=-1):
    """The diagonals of the matrices over the last two dims (torch.linalg.diagonal)."""
    return _diagonal(A, offset, dim1, dim2)


__all__ = ["LinAlgError", "cholesky", "det", "diagonal", "eigh", "eigvalsh", "inv", "matmul", "matrix_norm", "norm",
           "pinv", "qr", "slogdet", "solve", "svd", "svdvals", "vector_norm"]
