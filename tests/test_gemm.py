"""gpugrad/gemm.py: the bfloat16 product through cuBLAS.  On the CPU, plans run
with a NumPy GEMM over the operands' raw buffers, column-major as cuBLAS reads
them (a wrong flag, leading dim, stride or offset reads other elements, or
past the buffer); the calls themselves run against a stand-in for CuPy's
binding that reads and writes the arrays' memory by address.  On a GPU, the
product against torch CUDA's."""

import contextlib
import ctypes
import math
import types

import ml_dtypes
import numpy
import pytest
import torch
from conftest import needs_torch_cuda

import gpugrad
from gpugrad import gemm

BF16 = numpy.dtype(ml_dtypes.bfloat16)


# -- the reference GEMM over flat buffers ------------------------------------------------

def _read(flat, start, trans, rows, cols, ld):
    """op(X), rows x cols, from column-major X at flat[start] with leading dim ld."""
    stored = (rows, cols) if trans == gemm.OP_N else (cols, rows)
    assert ld >= max(1, stored[0]), f"ld {ld} < {stored[0]}"
    index = start + numpy.arange(stored[0])[:, None] + numpy.arange(stored[1])[None, :] * ld
    assert index.min() >= 0 and index.max() < flat.size, "a read past the operand's buffer"
    x = flat[index].astype(numpy.float64)
    return x if trans == gemm.OP_N else x.T


def reference_gemm(transa, transb, m, n, k, A, lda, stride_a, B, ldb, stride_b, C, ldc, stride_c, batch,
                   written):
    """cublasGemmStridedBatchedEx (alpha 1, beta 0) on flat arrays: A, B and C
    are (flat array, first element); ``written`` counts the writes to C's."""
    for i in range(batch):
        a = _read(A[0], A[1] + i * stride_a, transa, m, k, lda)
        b = _read(B[0], B[1] + i * stride_b, transb, k, n, ldb)
        assert ldc >= max(1, m)
        index = C[1] + i * stride_c + numpy.arange(m)[:, None] + numpy.arange(n)[None, :] * ldc
        assert index.min() >= 0 and index.max() < C[0].size, "a write past the output"
        C[0][index] = a @ b
        numpy.add.at(written, index, 1)


def _flat(x):
    """x's elements from its first one to its last, as a flat array over its memory."""
    assert all(s >= 0 for n, s in zip(x.shape, x.strides) if n > 1), "a negative stride left to cuBLAS"
    extent = 1 + sum((n - 1) * s for n, s in zip(x.shape, x.strides)) // x.itemsize
    return numpy.lib.stride_tricks.as_strided(x, (extent,), (x.itemsize,))


def run_plan(p, a, b):
    """The plan run on NumPy arrays: the product, as cuBLAS would give it."""
    out = numpy.full(math.prod(p.out_shape), numpy.nan)
    if p.k == 0:
        out[:] = 0
    a = numpy.ascontiguousarray(a) if p.copy_a else a
    b = numpy.ascontiguousarray(b) if p.copy_b else b
    written = numpy.zeros(out.size, int)
    for offset_a, offset_b, offset_c in p.offsets:
        reference_gemm(p.trans_b, p.trans_a, p.m, p.n, p.k, (_flat(b), offset_b), p.ld_b, p.stride_b,
                       (_flat(a), offset_a), p.ld_a, p.stride_a, (out, offset_c), p.ld_c, p.stride_c, p.batch,
                       written)
    if p.offsets:
        assert written.max() == 1 and written.min() == 1, "an output element written twice or never"
    return out.reshape(p.out_shape)


def _elements(x):
    return tuple(s // x.itemsize for s in x.strides)


def layout(rng, shape, dtype=numpy.float64):
    """A random view of ``shape``: dims in a random memory order, every few
    elements, some expanded (stride 0) or reversed (negative stride)."""
    order = rng.permutation(len(shape)) if rng.random() < 0.5 else numpy.arange(len(shape))
    steps = [int(rng.choice([1, 1, 2, 3])) for _ in shape]
    expanded = [n > 1 and rng.random() < 0.15 for n in shape]
    reversed_ = [rng.random() < 0.1 for _ in shape]
    own = [1 if e else n for n, e in zip(shape, expanded)]
    padded = [n * s + int(rng.integers(0, 2)) for n, s in zip(own, steps)]
    base = rng.standard_normal([padded[i] for i in order]).astype(dtype)
    x = base.transpose(numpy.argsort(order))
    x = x[tuple(slice(None, n * s, s) for n, s in zip(own, steps))]
    x = x[tuple(slice(None, None, -1) if r else slice(None) for r in reversed_)]
    return numpy.broadcast_to(x, shape)


def random_shapes(rng):
    """Operand shapes of a product: batch dims broadcast (one side's dims fewer,
    or 1), sizes from 0 to 5 (k == 0 and empty outputs among them)."""
    batch = [int(rng.integers(1, 4)) for _ in range(int(rng.integers(0, 4)))]
    if rng.random() < 0.1 and batch:
        batch[int(rng.integers(len(batch)))] = 0
    m, k, n = (int(rng.choice([0, 1, 1, 2, 3, 5])) if rng.random() < 0.15 else int(rng.integers(1, 6))
               for _ in range(3))
    batch_a = [d if rng.random() < 0.7 else 1 for d in batch][int(rng.integers(0, len(batch) + 1)):]
    batch_b = [d if rng.random() < 0.7 else 1 for d in batch][int(rng.integers(0, len(batch) + 1)):]
    return tuple(batch_a) + (m, k), tuple(batch_b) + (k, n)


def test_plans_give_numpys_product_for_random_layouts(rng):
    copies = calls = 0
    for _ in range(1500):
        shape_a, shape_b = random_shapes(rng)
        a, b = layout(rng, shape_a), layout(rng, shape_b)
        p = gemm.plan(a.shape, _elements(a), b.shape, _elements(b))
        expected = numpy.matmul(a, b)
        assert p.out_shape == expected.shape
        numpy.testing.assert_allclose(run_plan(p, a, b), expected, rtol=1e-12, atol=1e-12,
                                      err_msg=f"{a.shape} {_elements(a)} @ {b.shape} {_elements(b)}: {p}")
        copies += p.copy_a + p.copy_b
        calls += len(p.offsets)
    assert 0 < copies < 1500 and calls > 1000        # the draws reach copies and calls both


def test_plans_copy_only_what_cublas_cannot_address(rng):
    x = rng.standard_normal((6, 4))
    w = rng.standard_normal((5, 4))
    p = gemm.plan(x.shape, _elements(x), w.T.shape, _elements(w.T))            # x @ w.T: op T on w
    assert (p.copy_a, p.copy_b, len(p.offsets), p.trans_b, p.ld_b) == (False, False, 1, gemm.OP_T, 4)
    x3 = rng.standard_normal((2, 3, 4))                # a Linear: the batch as rows of one product
    p = gemm.plan(x3.shape, _elements(x3), w.T.shape, _elements(w.T))
    assert (p.copy_a, p.copy_b, p.offsets, p.n, p.batch) == (False, False, ((0, 0, 0),), 6, 1)
    xs = x3.transpose(1, 0, 2)                         # batch not continuing the rows: b at stride 0
    p = gemm.plan(xs.shape, _elements(xs), w.T.shape, _elements(w.T))
    assert (p.copy_a, p.copy_b, len(p.offsets), p.batch, p.stride_b, p.stride_a) == (False, False, 1, 3, 0, 4)
    qkv = rng.standard_normal((2, 7, 3 * 8))           # attention: q @ k.mT of heads split from one array
    q = qkv[..., :8].reshape(2, 7, 2, 4).transpose(0, 2, 1, 3)
    k = qkv[..., 8:16].reshape(2, 7, 2, 4).transpose(0, 2, 1, 3)
    kt = numpy.swapaxes(k, -1, -2)
    p = gemm.plan(q.shape, _elements(q), kt.shape, _elements(kt))
    assert (p.copy_a, p.copy_b, len(p.offsets), p.batch, p.ld_a, p.ld_b) == (False, False, 2, 2, 24, 24)
    e = numpy.broadcast_to(rng.standard_normal((1, 4)), (6, 4))               # a zero stride in a matrix
    assert gemm.plan(e.shape, _elements(e), w.T.shape, _elements(w.T)).copy_a
    assert gemm.plan(x.shape, (-4, 1), w.T.shape, _elements(w.T)).copy_a      # a negative stride
    assert gemm.plan((1, 2 ** 31), (2 ** 31, 1), (2 ** 31, 1), (1, 1)) is None  # past cuBLAS's ints
    p = gemm.plan((2, 3, 0), (0, 0, 1), (0, 4), (4, 1))                        # k == 0: zeros, no call
    assert (p.out_shape, p.k, p.offsets) == ((2, 3, 4), 0, ())


# -- the calls, against a stand-in for CuPy's binding ----------------------------------------

class DeviceArray(numpy.ndarray):
    """A NumPy array with CuPy's .data.ptr and .device.id."""

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


class StandIn:
    """CuPy and its cuBLAS binding, enough for gemm.product: the GEMM reads and
    writes the arrays by address, within the buffers it knows (the operands'
    and those it allocated)."""

    CUBLAS_POINTER_MODE_HOST, CUBLAS_POINTER_MODE_DEVICE = 0, 1
    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION = 16
    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT = 68, -1

    def __init__(self):
        self.buffers = []
        self.modes = {"pointer": self.CUBLAS_POINTER_MODE_DEVICE, "math": 0}
        self.calls = 0
        self.cuda = types.SimpleNamespace(Device=lambda index: contextlib.nullcontext(),
                                          runtime=types.SimpleNamespace(CUDA_R_16BF=14))

    def hold(self, array):
        base = array if array.base is None else array.base
        while getattr(base, "base", None) is not None:
            base = base.base
        start = base.__array_interface__["data"][0]
        self.buffers.append((start, start + base.nbytes))
        return array.view(DeviceArray)

    def zeros(self, shape, dtype):
        return self.hold(numpy.zeros(shape, dtype))

    def empty(self, shape, dtype):
        return self.hold(numpy.full(shape, numpy.nan, dtype))

    def ascontiguousarray(self, x):
        return self.hold(numpy.ascontiguousarray(x))

    def getPointerMode(self, handle):
        return self.modes["pointer"]

    def setPointerMode(self, handle, mode):
        self.modes["pointer"] = mode

    def getMathMode(self, handle):
        return self.modes["math"]

    def setMathMode(self, handle, mode):
        self.modes["math"] = mode

    def _flat(self, pointer):
        """The bfloat16 elements from ``pointer`` to the end of its buffer."""
        for start, stop in self.buffers:
            if start <= pointer < stop:
                count = (stop - pointer) // 2
                return numpy.ctypeslib.as_array((ctypes.c_uint16 * count).from_address(pointer)).view(BF16)
        raise AssertionError("a pointer outside every buffer")

    def gemmStridedBatchedEx(self, handle, transa, transb, m, n, k, alpha, A, Atype, lda, strideA, B, Btype, ldb,
                             strideB, beta, C, Ctype, ldc, strideC, batchCount, computeType, algo):
        assert handle == 7 and (Atype, Btype, Ctype, computeType) == (14, 14, 14, self.CUBLAS_COMPUTE_32F)
        assert self.modes == {"pointer": self.CUBLAS_POINTER_MODE_HOST,
                              "math": self.CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION}
        scalars = [numpy.ctypeslib.as_array((ctypes.c_float * 1).from_address(p))[0] for p in (alpha, beta)]
        assert scalars == [1, 0]
        out = self._flat(C)
        values = out.astype(numpy.float64)
        reference_gemm(transa, transb, m, n, k, (self._flat(A), 0), lda, strideA, (self._flat(B), 0), ldb,
                       strideB, (values, 0), ldc, strideC, batchCount, numpy.zeros(out.size, int))
        out[:] = values.astype(BF16)
        self.calls += 1


def test_the_calls_give_the_rounded_product_in_bfloat16(rng):
    for _ in range(200):
        shape_a, shape_b = random_shapes(rng)
        cp = StandIn()
        a, b = cp.hold(layout(rng, shape_a, BF16)), cp.hold(layout(rng, shape_b, BF16))
        out = gemm.product(cp, cp, lambda: 7, a, b)
        expected = numpy.matmul(a.astype(numpy.float64), b.astype(numpy.float64))
        assert out.dtype == BF16 and out.shape == expected.shape
        # the exact product rounded once (float64 sums here: the same rounding but at a tie)
        numpy.testing.assert_allclose(out.astype(numpy.float64), expected.astype(BF16).astype(numpy.float64),
                                      rtol=2 ** -8, atol=1e-30, err_msg=f"{a.shape} @ {b.shape}")
        assert cp.modes == {"pointer": cp.CUBLAS_POINTER_MODE_DEVICE, "math": 0}       # restored
        assert (cp.calls > 0) == (out.size > 0 and shape_a[-1] > 0)


# -- on the GPU ---------------------------------------------------------------------------

def _bf16_bound(a, b, expected):
    """|gpugrad - exact| allowed: half an ulp of bfloat16 at the exact value,
    plus the float32 sum's rounding (k terms)."""
    k = a.shape[-1]
    magnitude = numpy.matmul(numpy.abs(a), numpy.abs(b))
    accumulation = 2 * k * 2.0 ** -24 * magnitude
    top = numpy.abs(expected) + accumulation
    ulp = numpy.where(top > 0, 2.0 ** (numpy.floor(numpy.log2(numpy.maximum(top, 2.0 ** -126))) - 7), 0)
    return ulp / 2 + accumulation


@contextlib.contextmanager
def _fp32_reductions():
    """torch's bfloat16 products with float32 reductions (split-K sums not rounded to bfloat16), as gpugrad's."""
    previous = torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
    torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = previous


LAYOUTS = {
    "2-D": ((8, 32), (32, 16), lambda a, b: (a, b)),
    "b transposed (x @ w.T)": ((8, 32), (16, 32), lambda a, b: (a, b.mT)),
    "a transposed": ((32, 8), (32, 16), lambda a, b: (a.mT, b)),
    "batched @ 2-D (a Linear)": ((3, 8, 32), (16, 32), lambda a, b: (a, b.mT)),
    "batched, b broadcast at stride 0": ((8, 3, 32), (32, 16), lambda a, b: (a.transpose(0, 1), b)),
    "broadcast batch dims": ((2, 1, 8, 32), (3, 32, 16), lambda a, b: (a, b)),
    "heads split from one array (q @ k.mT)": ((2, 7, 64), (2, 7, 64), lambda a, b: (
        a[..., :32].reshape(2, 7, 2, 16).transpose(1, 2), b[..., 32:].reshape(2, 7, 2, 16).transpose(1, 2).mT)),
    "every other column (a copy)": ((8, 64), (32, 16), lambda a, b: (a[:, ::2], b)),
    "expanded rows (a copy)": ((1, 32), (32, 16), lambda a, b: (a.expand(8, 32), b)),
    "odd sizes": ((3, 5, 7), (3, 7, 9), lambda a, b: (a, b)),
    "k == 0": ((4, 0), (0, 5), lambda a, b: (a, b)),
    "empty batch": ((0, 4, 3), (3, 5), lambda a, b: (a, b)),
}


@pytest.mark.cuda
@needs_torch_cuda
@pytest.mark.parametrize("case", list(LAYOUTS))
def test_bfloat16_products_match_torch_cuda(rng, case):
    shape_a, shape_b, view = LAYOUTS[case]
    a64 = rng.standard_normal(shape_a).astype(BF16).astype(numpy.float64)
    b64 = rng.standard_normal(shape_b).astype(BF16).astype(numpy.float64)
    a, b = view(gpugrad.tensor(a64, device="cuda").to(gpugrad.bfloat16),
                gpugrad.tensor(b64, device="cuda").to(gpugrad.bfloat16))
    ta, tb = view(torch.tensor(a64, device="cuda").to(torch.bfloat16),
                  torch.tensor(b64, device="cuda").to(torch.bfloat16))
    out = (a @ b).to(gpugrad.float64).cpu().numpy()
    with _fp32_reductions():
        theirs = (ta @ tb).double().cpu().numpy()
    av, bv = ta.double().cpu().numpy(), tb.double().cpu().numpy()
    expected = numpy.matmul(av, bv)
    assert out.shape == expected.shape
    bound = _bf16_bound(av, bv, expected)
    assert numpy.all(numpy.abs(out - expected) <= bound), f"{case}: max error {numpy.abs(out - expected).max()}"
    assert numpy.all(numpy.abs(out - theirs) <= 2 * bound), f"{case}: torch differs"


@pytest.mark.cuda
@needs_torch_cuda
def test_bfloat16_linear_backward_matches_torch_cuda(rng):
    x64 = rng.standard_normal((2, 5, 24)).astype(BF16).astype(numpy.float64)
    w64 = rng.standard_normal((12, 24)).astype(BF16).astype(numpy.float64)
    g64 = rng.standard_normal((2, 5, 12)).astype(BF16).astype(numpy.float64)
    ours = [gpugrad.tensor(v, device="cuda").to(gpugrad.bfloat16).requires_grad_() for v in (x64, w64)]
    theirs = [torch.tensor(v, device="cuda").to(torch.bfloat16).requires_grad_() for v in (x64, w64)]
    gpugrad.nn.functional.linear(*ours).backward(gpugrad.tensor(g64, device="cuda").to(gpugrad.bfloat16))
    with _fp32_reductions():
        torch.nn.functional.linear(*theirs).backward(torch.tensor(g64, device="cuda").to(torch.bfloat16))
    for mine, reference, (u, v) in zip(ours, theirs, ((g64, w64), (g64.reshape(-1, 12).T, x64.reshape(-1, 24)))):
        exact = numpy.matmul(u, v)
        got = mine.grad.to(gpugrad.float64).cpu().numpy()
        assert got.dtype == numpy.float64 and mine.grad.dtype == gpugrad.bfloat16
        bound = _bf16_bound(u, v, exact)
        assert numpy.all(numpy.abs(got - exact) <= bound)
        assert numpy.all(numpy.abs(got - reference.grad.double().cpu().numpy()) <= 2 * bound)
