"""Matrix functions and decompositions of torch.linalg: inv, det, slogdet,
solve, cholesky, qr, eigh, svd and the norms built on them.  The forward is
the array library's LAPACK (NumPy) or cuSOLVER (CuPy) routine through
``xp.linalg``; the backward is torch's formula (FunctionsManual.cpp) in
Tensor ops, so second derivatives come from differentiating it again."""

import math

from gpugrad import backend, dtypes, return_types, validation
from gpugrad.autograd.function import InternalFunction
from gpugrad.ops import reduction
from gpugrad.ops.elementwise import where
from gpugrad.ops.shape import diag_embed, diagonal, tril, triu
from gpugrad.tensor import Tensor


class LinAlgError(RuntimeError):
    """A matrix the routine cannot handle (singular, not positive-definite),
    as torch.linalg.LinAlgError (a RuntimeError)."""


def _check_matrix(A, name, square=True):
    validation.tensor_argument(A, f"linalg.{name}", "A", 1)
    if A.ndim < 2:
        raise RuntimeError(f"linalg.{name}: The input tensor A must have at least 2 dimensions.")
    if square and A.shape[-1] != A.shape[-2]:
        raise RuntimeError(f"linalg.{name}: A must be batches of square matrices, but they are {A.shape[-2]} by "
                           f"{A.shape[-1]} matrices")
    if not dtypes.is_floating_point(A.dtype) or A.dtype in (dtypes.float16, dtypes.bfloat16):
        raise RuntimeError(f"linalg.{name}: Expected a floating point or complex tensor as input. Got "
                           f"{validation.type_name(A.dtype)}")


def _linalg(call, name, message):
    """Run an xp.linalg call, its LinAlgError as torch's."""
    try:
        return call()
    except Exception as error:       # numpy.linalg.LinAlgError or CuPy's
        if type(error).__name__ != "LinAlgError":
            raise
        raise LinAlgError(f"linalg.{name}: {message}") from None


def _no_nan(array, name, message):
    """cuSOLVER leaves nan where LAPACK raises: the same error on both devices."""
    if backend.is_cupy_array(array) and bool(backend.xp_for(array).isnan(array).any()):
        raise LinAlgError(f"linalg.{name}: {message}")
    return array


def _mH(x):
    return x.mT


# -- inverse, determinant, solve --------------------------------------------------------

_SINGULAR = "The inversion could not be completed because the input matrix is singular."


class Inv(InternalFunction):
    @staticmethod
    def forward(ctx, A):
        out = _no_nan(_linalg(lambda: ctx.xp.linalg.inv(A), "inv", _SINGULAR), "inv", _SINGULAR)
        ctx.save_for_backward(None, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        _, inverse = ctx.saved_tensors
        return -(_mH(inverse) @ grad @ _mH(inverse))


def inv(A):
    """The inverse of a square matrix (or each of a batch); LinAlgError when singular."""
    _check_matrix(A, "inv")
    if A.numel() == 0:
        return A.clone()
    return Inv.apply(A)


class Det(InternalFunction):
    @staticmethod
    def forward(ctx, A):
        ctx.save_for_backward(A)
        return ctx.xp.linalg.det(A)

    @staticmethod
    def backward(ctx, grad):
        A, = ctx.saved_tensors
        out = det(A)
        # torch's for an invertible A: grad * det(A) * A^{-H}
        return (grad * out).unsqueeze(-1).unsqueeze(-1) * _mH(inv(A))


def det(A):
    """The determinant of a square matrix (or each of a batch).  Its gradient is
    det(A) A^{-T}: an invertible A (a singular one gets inf or nan)."""
    _check_matrix(A, "det")
    return Det.apply(A)


class Slogdet(InternalFunction):
    @staticmethod
    def forward(ctx, A):
        ctx.save_for_backward(A)
        sign, logabsdet = ctx.xp.linalg.slogdet(A)
        sign, logabsdet = backend.keep_array(sign), backend.keep_array(logabsdet)
        ctx.set_materialize_grads(False)
        return sign, logabsdet

    @staticmethod
    def backward(ctx, grad_sign, grad_logabsdet):
        A, = ctx.saved_tensors
        if grad_logabsdet is None:
            return None
        return grad_logabsdet.unsqueeze(-1).unsqueeze(-1) * _mH(inv(A))


def slogdet(A):
    """(sign, logabsdet): the sign and the log of the absolute determinant
    (logabsdet -inf and sign 0 for a singular A); the gradient flows through
    logabsdet: A^{-T} (sign's is 0)."""
    _check_matrix(A, "slogdet")
    sign, logabsdet = Slogdet.apply(A)
    return return_types.linalg_slogdet(sign, logabsdet)


def logdet(A):
    """log(det(A)): nan for a negative determinant, -inf for a singular A."""
    sign, logabsdet = slogdet(A)
    return where(sign < 0, math.nan, logabsdet)


class Solve(InternalFunction):
    @staticmethod
    def forward(ctx, A, B):
        xp = ctx.xp
        batch = tuple(validation.broadcast_shapes(A.shape[:-2], B.shape[:-2]))
        A_b = xp.broadcast_to(A, batch + A.shape[-2:])
        B_b = xp.broadcast_to(B, batch + B.shape[-2:])
        X = _no_nan(_linalg(lambda: xp.linalg.solve(A_b, B_b), "solve", _SINGULAR), "solve", _SINGULAR)
        ctx.save_for_backward(A, None, X)
        return X

    @staticmethod
    def backward(ctx, grad):
        A, _, X = ctx.saved_tensors
        grad_B = _solve_matrices(_mH(A), grad)
        grad_A = -(grad_B @ _mH(X)) if ctx.needs_input_grad[0] else None
        return grad_A, grad_B if ctx.needs_input_grad[1] else None


def _solve_matrices(A, B):
    return Solve.apply(A, B)


def solve(A, B, *, left=True):
    """X with A X = B (left=False: X A = B); B a matrix (or batch) or a
    vector (or batch of vectors) as torch's rule reads it; LinAlgError when A
    is singular."""
    _check_matrix(A, "solve")
    validation.tensor_argument(B, "linalg.solve", "B", 2)
    if A.dtype != B.dtype:
        raise RuntimeError(f"linalg.solve: Expected A and B to have the same dtype, but found A of type "
                           f"{validation.type_name(A.dtype)} and B of type {validation.type_name(B.dtype)} instead")
    vector = B.ndim == 1 or (B.ndim == A.ndim - 1 and tuple(B.shape) == tuple(A.shape[:-1]))
    if vector:
        if not left:
            raise RuntimeError("linalg.solve: Vector broadcasting of the left hand side is not supported for "
                               "left=False. In this case linalg.solve is equivalent to B / A.squeeze(-1)")
        B = B.unsqueeze(-1)
    if left and B.shape[-2] != A.shape[-1] or not left and B.shape[-1] != A.shape[-1]:
        raise RuntimeError(f"linalg.solve: Incompatible shapes of A and B for the equation "
                           f"{'AX = B' if left else 'XA = B'} ({A.shape[-2]}x{A.shape[-1]} and "
                           f"{B.shape[-2]}x{B.shape[-1]})")
    out = _solve_matrices(A, B) if left else _mH(_solve_matrices(_mH(A), _mH(B)))
    return out.squeeze(-1) if vector else out


# -- decompositions ---------------------------------------------------------------------------

_NOT_PD = "The factorization could not be completed because the input is not positive-definite."


class Cholesky(InternalFunction):
    @staticmethod
    def forward(ctx, A):
        L = _no_nan(_linalg(lambda: ctx.xp.linalg.cholesky(A), "cholesky", _NOT_PD), "cholesky", _NOT_PD)
        ctx.save_for_backward(None, L)
        return L

    @staticmethod
    def backward(ctx, grad):
        _, L = ctx.saved_tensors
        # torch's cholesky_backward: L^{-H} Phi(L^H gL) L^{-1}, Phi: the lower triangle, its diagonal halved
        gA = tril(_mH(L) @ grad)
        gA = 0.5 * (gA + _mH(tril(gA, -1)))
        gA = _solve_matrices(_mH(L), gA)
        return _mH(_solve_matrices(_mH(L), _mH(gA)))


def cholesky(A, *, upper=False):
    """L, lower triangular with a positive diagonal, with A = L L^T (upper=True:
    U = L^T, A = U^T U) of a symmetric positive-definite A; LinAlgError otherwise."""
    _check_matrix(A, "cholesky")
    L = Cholesky.apply(A)
    return _mH(L) if upper else L


class Qr(InternalFunction):
    @staticmethod
    def forward(ctx, A, mode):
        Q, R = ctx.xp.linalg.qr(A, mode=mode)
        ctx.save_for_backward(None, Q, R)
        ctx.set_materialize_grads(False)
        ctx.mode = mode
        return Q, R

    @staticmethod
    def backward(ctx, gQ, gR):
        _, Q, R = ctx.saved_tensors
        m, n = Q.shape[-2], R.shape[-1]
        if m < n:
            raise NotImplementedError("linalg.qr: the gradient of a matrix with more columns than rows is not "
                                      "implemented")
        if ctx.mode == "complete" and m > n:
            raise RuntimeError("The QR decomposition is not differentiable when mode='complete' and nrows > ncols.")
        if gQ is None and gR is None:
            return None, None
        # torch's linalg_qr_backward (m >= n): [gQ + Q syminvadj(triu(gR R^H - Q^H gQ))] R^{-H}
        if gQ is None:
            gA = gR @ _mH(R)
        else:
            gA = -(_mH(Q) @ gQ) if gR is None else gR @ _mH(R) - _mH(Q) @ gQ
        upper = triu(gA)
        symmetric = upper + _mH(upper)
        symmetric = symmetric - diag_embed(diagonal(symmetric, 0, -2, -1)) * 0.5
        gA = Q @ symmetric
        if gQ is not None:
            gA = gA + gQ
        return _mH(_solve_matrices(R, _mH(gA))), None


def qr(A, mode="reduced"):
    """(Q, R) with A = Q R, Q with orthonormal columns and R upper triangular:
    mode 'reduced' (k = min(m, n) columns), 'complete' (Q square) or 'r'
    (R only, Q empty).  Differentiable for m >= n (as torch's)."""
    _check_matrix(A, "qr", square=False)
    if mode not in ("reduced", "complete", "r"):
        raise RuntimeError(f"qr received unrecognized mode '{mode}' but expected one of 'reduced' (default), 'r', "
                           "or 'complete'")
    if mode == "r":
        with_r = Qr.apply(A.detach(), "reduced")[1] if A.requires_grad else Qr.apply(A, "reduced")[1]
        if A.requires_grad:
            raise RuntimeError("The derivative of linalg.qr depends on Q, which is not computed when mode='r'. "
                               "Please use linalg.qr(A, mode='reduced') if you are going to differentiate through "
                               "linalg.qr.")
        return return_types.linalg_qr(Tensor._make(A.xp.zeros((0,), dtype=A.dtype)), with_r)
    Q, R = Qr.apply(A, mode)
    return return_types.linalg_qr(Q, R)


class Eigh(InternalFunction):
    @staticmethod
    def forward(ctx, A, uplo):
        L, V = ctx.xp.linalg.eigh(A, UPLO=uplo)
        ctx.save_for_backward(None, L, V)
        ctx.set_materialize_grads(False)
        return L, V

    @staticmethod
    def backward(ctx, gL, gV):
        _, L, V = ctx.saved_tensors
        if gL is None and gV is None:
            return None, None
        # torch's linalg_eig_backward for a Hermitian A:
        # V (diag(gL) + skew(V^H gV) / E) V^H, E_ij = L_j - L_i (1 on the diagonal)
        if gV is None:
            return (V * gL.unsqueeze(-2)) @ _mH(V), None
        E = L.unsqueeze(-2) - L.unsqueeze(-1)
        E = E + diag_embed(1.0 - diagonal(E, 0, -2, -1))
        VhgV = _mH(V) @ gV
        inner = 0.5 * (VhgV - _mH(VhgV)) / E
        inner = inner - diag_embed(diagonal(inner, 0, -2, -1))
        if gL is not None:
            inner = inner + diag_embed(gL)
        return V @ inner @ _mH(V), None


def eigh(A, UPLO="L"):
    """(eigenvalues, eigenvectors) of a symmetric matrix (read from its lower
    triangle, or its upper with UPLO='U'): ascending eigenvalues, orthonormal
    eigenvectors as columns.  The gradient needs distinct eigenvalues."""
    _check_matrix(A, "eigh")
    if UPLO not in ("L", "U"):
        raise RuntimeError(f"Expected UPLO argument to be 'L' or 'U', but got {UPLO}")
    L, V = Eigh.apply(A, UPLO)
    return return_types.linalg_eigh(L, V)


def eigvalsh(A, UPLO="L"):
    """The ascending eigenvalues of a symmetric matrix (eigh's first result)."""
    return eigh(A, UPLO).eigenvalues


class Svd(InternalFunction):
    @staticmethod
    def forward(ctx, A, full_matrices):
        U, S, Vh = ctx.xp.linalg.svd(A, full_matrices=full_matrices)
        ctx.save_for_backward(None, U, S, Vh)
        ctx.set_materialize_grads(False)
        ctx.full_matrices = full_matrices
        return U, S, Vh

    @staticmethod
    def backward(ctx, gU, gS, gVh):
        _, U, S, Vh = ctx.saved_tensors
        m, n = U.shape[-2], Vh.shape[-1]
        if ctx.full_matrices and m != n:
            raise RuntimeError("svd_backward: The singular vectors in the complete SVD are not well-defined. "
                               "Please use full_matrices=False")
        return svd_backward(gU, gS, gVh, U, S, Vh), None


def svd_backward(gU, gS, gVh, U, S, Vh):
    """torch's svd_backward (real matrices), in Tensor ops."""
    m, n = U.shape[-2], Vh.shape[-1]
    if gU is None and gVh is None:
        if gS is None:
            return None
        return U @ (gS.unsqueeze(-1) * Vh) if m >= n else (U * gS.unsqueeze(-2)) @ Vh
    V = _mH(Vh)
    gV = None if gVh is None else _mH(gVh)
    S2 = S * S
    E = S2.unsqueeze(-2) - S2.unsqueeze(-1)
    E = E + diag_embed(1.0 - diagonal(E, 0, -2, -1))
    terms = []
    if gU is not None:
        skew_U = _mH(U) @ gU
        terms.append((skew_U - _mH(skew_U)) * S.unsqueeze(-2))
    if gV is not None:
        skew_V = Vh @ gV
        terms.append(S.unsqueeze(-1) * (skew_V - _mH(skew_V)))
    gA = (terms[0] if len(terms) == 1 else terms[0] + terms[1]) / E
    if gS is not None:
        gA = gA + diag_embed(gS)
    if m > n and gU is not None:
        gA = U @ gA
        gU_S = gU / S.unsqueeze(-2)
        gA = gA + gU_S - U @ (_mH(U) @ gU_S)
        return gA @ Vh
    if m < n and gV is not None:
        gA = gA @ Vh
        gV_S = gV / S.unsqueeze(-2)
        gA = gA + _mH(gV_S) - (_mH(gV_S) @ V) @ Vh
        return U @ gA
    return U @ (gA @ Vh) if m >= n else (U @ gA) @ Vh


def svd(A, full_matrices=True, *, driver=None):
    """(U, S, Vh) with A = U diag(S) Vh, S descending; full_matrices=False keeps
    k = min(m, n) columns of U and rows of Vh (the form that is differentiable
    for m != n).  The gradient through U or Vh needs distinct singular values."""
    _check_matrix(A, "svd", square=False)
    U, S, Vh = Svd.apply(A, bool(full_matrices))
    return return_types.linalg_svd(U, S, Vh)


def svdvals(A, *, driver=None):
    """The singular values, descending."""
    _check_matrix(A, "svdvals", square=False)
    return Svd.apply(A, False)[1]


class Pinv(InternalFunction):
    @staticmethod
    def forward(ctx, A, atol, rtol):
        xp = ctx.xp
        U, S, Vh = xp.linalg.svd(A, full_matrices=False)
        largest = S.max(axis=-1, keepdims=True) if S.shape[-1] else S.sum(axis=-1, keepdims=True)
        tolerance = xp.maximum(largest * rtol, atol)
        keep = S > tolerance
        inverse_S = xp.where(keep, 1.0 / xp.where(keep, S, 1.0), 0.0).astype(A.dtype)
        out = xp.swapaxes(Vh, -1, -2) @ (inverse_S[..., None] * xp.swapaxes(U, -1, -2))
        ctx.save_for_backward(A, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        A, pinvA = ctx.saved_tensors
        # torch's pinv_backward, in the smaller dimension
        m, n = A.shape[-2], A.shape[-1]
        pinvAh, gradh = _mH(pinvA), _mH(grad)
        if m <= n:
            K = gradh @ pinvA
            KpinvAh = K @ pinvAh
            return (-_mH(pinvA @ K) + KpinvAh - (A @ pinvA) @ KpinvAh
                    + (pinvAh @ pinvA) @ (gradh - K @ A)), None, None
        K = pinvA @ gradh
        pinvAhK = pinvAh @ K
        return (-_mH(K @ pinvA) + ((gradh - A @ K) @ pinvA) @ pinvAh + pinvAhK
                - (pinvAhK @ pinvA) @ A), None, None


def pinv(A, *, atol=None, rtol=None, hermitian=False):
    """The Moore-Penrose pseudo-inverse, through the SVD: singular values at
    most max(atol, rtol * largest) are dropped (rtol defaults to eps * max(m, n)
    when neither is given); torch's gradient (defined for rank-deficient A too)."""
    _check_matrix(A, "pinv", square=False)
    if rtol is None:
        rtol = dtypes.finfo(A.dtype).eps * max(A.shape[-2], A.shape[-1]) if atol is None or atol <= 0 else 0.0
    return Pinv.apply(A, float(atol or 0.0), float(rtol))


# -- norms --------------------------------------------------------------------------------------

def vector_norm(x, ord=2, dim=None, keepdim=False, *, dtype=None):
    """The ord-norm of x's elements over ``dim`` (every element by default),
    as a vector: 2, 1, inf, -inf, 0 (the count of non-zeros) or any number."""
    if isinstance(ord, str):
        raise TypeError("linalg_vector_norm(): argument 'ord' must be Number, not str")
    return reduction.norm(x, float(ord), dim, keepdim, dtype)


def dist(input, other, p=2):
    """The p-norm of input - other (broadcast), as one 0-d tensor."""
    return vector_norm(input - other, p)


_CDIST_MODES = ("use_mm_for_euclid_dist_if_necessary", "use_mm_for_euclid_dist", "donot_use_mm_for_euclid_dist")


def cdist(x1, x2, p=2.0, compute_mode="use_mm_for_euclid_dist_if_necessary"):
    """The p-norm distance between each row of x1 (..., P, M) and each row of
    x2 (..., R, M): (..., P, R), the batch dims broadcast.  Computed as the
    norms of the differences (torch's direct kernel; torch's matrix-product
    form for p = 2 and more than 25 rows agrees to rounding)."""
    if compute_mode not in _CDIST_MODES:
        raise ValueError(f"{compute_mode} is not a valid value for compute_mode")
    for x, name in ((x1, "X1"), (x2, "X2")):
        if x.ndim < 2:
            raise RuntimeError(f"cdist only supports at least 2D tensors, {name} got: {x.ndim}D")
    if x1.shape[-1] != x2.shape[-1]:
        raise RuntimeError(f"X1 and X2 must have the same number of columns. X1: {x1.shape[-1]} X2: {x2.shape[-1]}")
    if p < 0:
        raise RuntimeError("cdist only supports non-negative p values")
    difference = x1.unsqueeze(-2) - x2.unsqueeze(-3)
    if p == math.inf:
        # torch's cdist backward sends the whole gradient to each tied maximum (the norm shares it out)
        size = difference.abs()
        largest = size.detach().amax(-1, keepdim=True)
        return (largest + ((size - largest) * (size.detach() == largest)).sum(-1, keepdim=True)).squeeze(-1)
    return vector_norm(difference, p, -1)


def matrix_norm(A, ord="fro", dim=(-2, -1), keepdim=False, *, dtype=None):
    """A matrix norm over the two dims ``dim``: 'fro', 'nuc' (the sum of the
    singular values), 2 / -2 (the largest / smallest singular value), 1 / -1
    (the largest / smallest column sum of |A|), inf / -inf (row sums)."""
    if dtype is not None:
        A = A.to(dtype)
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    if len(dim) != 2:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple. Got {' '.join(map(str, dim))}")
    rows, cols = (d % A.ndim for d in dim)
    if rows == cols:
        raise RuntimeError(f"linalg.matrix_norm: dims must be different. Got ({dim[0]}, {dim[1]})")
    if ord == "fro":
        return reduction.norm(A, 2.0, (rows, cols), keepdim)
    if ord in ("nuc", 2, -2):
        moved = A.movedim((rows, cols), (-2, -1))
        values = svdvals(moved)
        out = values.sum(-1) if ord == "nuc" else (values.amax(-1) if ord == 2 else values.amin(-1))
        if keepdim:
            out = out.unsqueeze(min(rows, cols)).unsqueeze(max(rows, cols))
        return out
    if ord in (1, -1, math.inf, -math.inf):
        summed, picked = (rows, cols) if ord in (1, -1) else (cols, rows)
        sums = A.abs().sum(summed, keepdim=True)
        out = sums.amax(picked, keepdim=True) if ord > 0 else sums.amin(picked, keepdim=True)
        return out if keepdim else out.squeeze((rows, cols))
    raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")


def norm(A, ord=None, dim=None, keepdim=False, *, dtype=None):
    """torch.linalg.norm: a vector norm (dim an int, or a 1-D input) or a
    matrix norm (dim a pair, or a 2-D input); with neither ord nor dim, the
    2-norm of every element."""
    if isinstance(dim, int):
        dim = (dim,)
    if dim is not None:
        if len(dim) == 1:
            return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
        return matrix_norm(A, "fro" if ord is None else ord, tuple(dim), keepdim, dtype=dtype)
    if ord is None:
        out = vector_norm(A, 2, None, False, dtype=dtype)
        return out.reshape((1,) * A.ndim) if keepdim else out
    if A.ndim == 1:
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. Got "
                       f"{A.ndim}D.")
