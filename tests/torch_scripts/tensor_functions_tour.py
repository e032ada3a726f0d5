"""The tensor functions today's notebooks reach for beside the layers,
as numerical-methods and data-wrangling tutorials use them: least squares
by torch.linalg.solve on the normal equations and by QR, torch.dist, Cholesky
and eigh of a covariance (PCA), SVD low-rank approximation, det/slogdet/inv,
vector and matrix norms; scatter_add_/scatter_reduce/index_add for
group-bys, unique(return_inverse, return_counts), bucketize and
searchsorted for binning, histc, meshgrid and atan2 for polar grids,
diagonal/diag_embed/trace, nonzero(as_tuple=True), masked_scatter, out=,
NumPy-style axis=/keepdims=, and float() of a one-element tensor.  Small
local data from NumPy, float64."""

import numpy as np
import torch

rng = np.random.default_rng(31)
X = torch.from_numpy(rng.standard_normal((40, 3)))
true_w = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
y = X @ true_w + 0.1 * torch.from_numpy(rng.standard_normal(40))
A = torch.cat([X, torch.ones(40, 1, dtype=torch.float64)], dim=1)
w = torch.linalg.solve(A.T @ A, A.T @ y)
Q, R = torch.linalg.qr(A)
w_qr = torch.linalg.inv(R) @ (Q.T @ y)
print("least squares", w, torch.allclose(w, w_qr))

centered = X - X.mean(axis=0, keepdims=True)
cov = centered.T @ centered / (X.shape[0] - 1)
L = torch.linalg.cholesky(cov)
eigenvalues, eigenvectors = torch.linalg.eigh(cov)
print("cholesky", torch.dist(L @ L.T, cov).item() < 1e-12, "eigenvalues", eigenvalues)
U, S, Vh = torch.linalg.svd(centered, full_matrices=False)
rank1 = S[0] * torch.outer(U[:, 0], Vh[0])
print("svd", S, torch.linalg.matrix_norm(centered - rank1).item(), torch.linalg.svdvals(cov))
sign, logabsdet = torch.linalg.slogdet(cov)
print("det", torch.linalg.det(cov).item(), sign.item(), logabsdet.item(), torch.linalg.inv(cov).trace().item())
print("norms", torch.linalg.vector_norm(X, ord=1).item(), torch.linalg.norm(cov).item(),
      torch.linalg.matrix_norm(cov, ord="nuc").item())

groups = torch.from_numpy(rng.integers(0, 4, 40))
values = X[:, 0]
sums = torch.zeros(4, dtype=torch.float64).scatter_add_(0, groups, values)
counts = torch.zeros(4, dtype=torch.float64).index_add(0, groups, torch.ones(40, dtype=torch.float64))
maxima = torch.full((4,), -float("inf"), dtype=torch.float64).scatter_reduce(0, groups, values, reduce="amax")
means = torch.zeros(4, dtype=torch.float64).scatter_reduce(0, groups, values, reduce="mean", include_self=False)
print("group by", sums / counts, maxima, means)
labels, inverse, label_counts = torch.unique(groups, sorted=True, return_inverse=True, return_counts=True)
print("unique", labels, inverse[:6], label_counts, torch.unique_consecutive(torch.tensor([1, 1, 2, 2, 1])))
edges = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64)
print("bucketize", torch.bucketize(values[:6], edges), torch.searchsorted(edges, values[:6], right=True))
print("histc", torch.histc(values, bins=5, min=-2, max=2))

xs, ys = torch.meshgrid(torch.linspace(-1, 1, 3), torch.linspace(-1, 1, 4), indexing="xy")
print("polar", torch.atan2(ys, xs), torch.sqrt(xs ** 2 + ys ** 2).max().item())
M = torch.arange(9.0).reshape(3, 3)
print("diagonal", torch.diagonal(M), M.diagonal(offset=1), torch.diag_embed(torch.tensor([1.0, 2.0])), M.trace())
rows, cols = torch.nonzero(M > 4, as_tuple=True)
print("nonzero", rows, cols, M.argmax(axis=1), M.sum(axis=0, keepdims=True))
mask = M > 5
print("masked_scatter", M.masked_scatter(mask, torch.full((9,), -1.0)))
out = torch.empty(3)
torch.add(torch.ones(3), 2, out=out)
print("out=", out, float(M[2, 2]), M[0, 1].item())
try:
    float(M)
except ValueError as error:
    print("ValueError", error)
