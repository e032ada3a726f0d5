"""gpugrad.linalg (gpugrad/ops/decomposition.py) against torch.linalg in
float64: values, gradients and second derivatives of inv, det, slogdet,
solve, cholesky, qr, eigh, svd, svdvals, pinv and the norms; batches; the
errors (LinAlgError for singular and indefinite matrices)."""

import math

import numpy
import pytest
import torch
from conftest import DEVICES, compare_with_torch

import gpugrad


def _well_conditioned(rng, shape):
    a = rng.standard_normal(shape)
    return a + 3 * numpy.eye(shape[-1]) if shape[-1] == shape[-2] else a


def _spd(rng, shape):
    a = rng.standard_normal(shape)
    return a @ numpy.swapaxes(a, -1, -2) + shape[-1] * numpy.eye(shape[-1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [(), (2,)])
def test_inverse_determinant_and_solve(rng, device, batch):
    A = _well_conditioned(rng, batch + (3, 3))
    B = rng.standard_normal(batch + (3, 2))
    for name in ("inv", "det"):
        compare_with_torch(rng, getattr(gpugrad.linalg, name), getattr(torch.linalg, name), [A], device)
    compare_with_torch(rng, lambda a: gpugrad.linalg.slogdet(a), lambda a: torch.linalg.slogdet(a), [A], device)
    compare_with_torch(rng, gpugrad.linalg.solve, torch.linalg.solve, [A, B], device)
    compare_with_torch(rng, lambda a, b: gpugrad.linalg.solve(a, b, left=False),
                       lambda a, b: torch.linalg.solve(a, b, left=False), [A, numpy.swapaxes(B, -1, -2)], device)
    vector = rng.standard_normal(batch + (3,))
    compare_with_torch(rng, gpugrad.linalg.solve, torch.linalg.solve, [A, vector], device)
    compare_with_torch(rng, gpugrad.logdet, torch.logdet, [_spd(rng, batch + (3, 3))], device)


@pytest.mark.parametrize("device", DEVICES)
def test_cholesky_qr_eigh(rng, device):
    S = _spd(rng, (2, 4, 4))
    compare_with_torch(rng, gpugrad.linalg.cholesky, torch.linalg.cholesky, [S], device)
    compare_with_torch(rng, lambda a: gpugrad.linalg.cholesky(a, upper=True),
                       lambda a: torch.linalg.cholesky(a, upper=True), [S], device)
    # the decompositions' factors are unique up to signs that LAPACK picks alike; the gradients are tested
    # through sign-independent functions of them as well
    tall = rng.standard_normal((5, 3))
    compare_with_torch(rng, gpugrad.linalg.qr, torch.linalg.qr, [tall], device)
    compare_with_torch(rng, lambda a: gpugrad.linalg.qr(a).R.abs(), lambda a: torch.linalg.qr(a).R.abs(), [tall],
                       device)
    symmetric = rng.standard_normal((4, 4))
    symmetric = symmetric + symmetric.T
    compare_with_torch(rng, lambda a: gpugrad.linalg.eigh(a).eigenvalues,
                       lambda a: torch.linalg.eigh(a).eigenvalues, [symmetric], device)
    compare_with_torch(rng, lambda a: gpugrad.linalg.eigh(a).eigenvectors ** 2,
                       lambda a: torch.linalg.eigh(a).eigenvectors ** 2, [symmetric], device, tol=1e-8)
    compare_with_torch(rng, gpugrad.linalg.eigvalsh, torch.linalg.eigvalsh, [symmetric], device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(4, 4), (5, 3), (3, 5)])
def test_svd_and_its_uses(rng, device, shape):
    A = rng.standard_normal(shape)
    compare_with_torch(rng, gpugrad.linalg.svdvals, torch.linalg.svdvals, [A], device)
    compare_with_torch(rng, lambda a: [t ** 2 for t in gpugrad.linalg.svd(a, full_matrices=False)],
                       lambda a: [t ** 2 for t in torch.linalg.svd(a, full_matrices=False)], [A], device, tol=1e-8)
    compare_with_torch(rng, gpugrad.linalg.pinv, torch.linalg.pinv, [A], device, tol=1e-8)
    for ord in ("fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf):
        compare_with_torch(rng, lambda a: gpugrad.linalg.matrix_norm(a, ord),
                           lambda a: torch.linalg.matrix_norm(a, ord), [A], device, tol=1e-9)
    for ord, dim in ((None, None), (3, 1), (None, (0, 1)), ("nuc", None), (1, None)):
        compare_with_torch(rng, lambda a: gpugrad.linalg.norm(a, ord, dim, keepdim=True),
                           lambda a: torch.linalg.norm(a, ord, dim, keepdim=True), [A], device, tol=1e-9)
    compare_with_torch(rng, lambda a: gpugrad.linalg.vector_norm(a, 0.5, dim=0),
                       lambda a: torch.linalg.vector_norm(a, 0.5, dim=0), [A], device)


def test_errors_as_torch(rng):
    singular = numpy.ones((3, 3))
    for name in ("inv",):
        with pytest.raises(gpugrad.linalg.LinAlgError, match="singular"):
            getattr(gpugrad.linalg, name)(gpugrad.tensor(singular))
        with pytest.raises(torch.linalg.LinAlgError):
            getattr(torch.linalg, name)(torch.tensor(singular))
    with pytest.raises(gpugrad.linalg.LinAlgError, match="positive-definite"):
        gpugrad.linalg.cholesky(gpugrad.tensor(-numpy.eye(2)))
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(torch.tensor(-numpy.eye(2)))
    assert issubclass(gpugrad.linalg.LinAlgError, RuntimeError)
    for call in (lambda lib: lib.linalg.inv(lib.ones(2, 3)), lambda lib: lib.linalg.det(lib.ones(3)),
                 lambda lib: lib.linalg.inv(lib.ones(2, 2, dtype=lib.int64)),
                 lambda lib: lib.linalg.norm(lib.ones(2, 2, 2), ord=2)):
        with pytest.raises(RuntimeError):
            call(torch)
        with pytest.raises(RuntimeError):
            call(gpugrad)
    assert gpugrad.det(gpugrad.eye(2, dtype=gpugrad.float64)).item() == 1.0
