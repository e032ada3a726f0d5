"""The bfloat16 matrix product on CuPy, through cuBLAS.

CuPy 14.2 holds bfloat16 arrays but its matmul takes them for an integer type
(``TypeError: data type 'E' not understood``).  Here a product of bfloat16
arrays is a cublasGemmStridedBatchedEx call (one per index of the batch dims
that no single stride spans): A, B and C in CUDA_R_16BF, CUBLAS_COMPUTE_32F
with the reductions kept in float32 (CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION),
so each element is a float32 sum of exact products rounded once to bfloat16:
torch's rule.

The layout is a pure function, :func:`plan`, from the operands' shapes and
strides to cuBLAS's arguments (tests/test_gemm.py runs plans on the CPU with a
NumPy GEMM over the raw buffers); :func:`matmul` makes the calls.

cuBLAS is column-major: the row-major C = A @ B is C^T = B^T A^T there, so B
is cuBLAS's first operand.  A row-major (rows, cols) matrix whose rows lie
along memory (unit column stride) reads, column-major, as its transpose with
ld = its row stride (op N); one whose columns lie along memory (a transposed
view) reads as itself with ld = its column stride (op T).  An operand with
neither, or with a negative stride, is copied (C order) first.
"""

import collections
import itertools
import math

import numpy

OP_N, OP_T = 0, 1               # cublasOperation_t
INT_MAX = 2 ** 31 - 1           # cuBLAS's sizes and leading dims are ints

Plan = collections.namedtuple("Plan", [
    "out_shape",                # the product's shape (C-contiguous)
    "copy_a", "copy_b",         # the operand is copied to C order first (the rest assumes the copy)
    "trans_b", "trans_a",       # cuBLAS's transa (on b's memory) and transb (on a's)
    "m", "n", "k",              # cuBLAS's sizes: columns of the output, its rows (a's rows), a's columns
    "ld_b", "ld_a", "ld_c",
    "batch",                    # matrices per call
    "stride_b", "stride_a", "stride_c",         # in elements, between a call's matrices
    "offsets",                  # per call: (a's, b's, the output's) first element; () when nothing to compute
])


def plan(shape_a, strides_a, shape_b, strides_b):
    """cuBLAS's arguments for ``a @ b``: row-major operands of two or more dims
    (their batch dims broadcast), strides in elements (negative, zero and any
    others).  None where a size passes cuBLAS's int arguments.  The output is
    zeros where a's columns are none (k == 0), and empty with no call where
    the output is."""
    rows, inner = shape_a[-2:]
    columns = shape_b[-1]
    batch_shape = tuple(numpy.broadcast_shapes(tuple(shape_a[:-2]), tuple(shape_b[:-2])))
    out_shape = batch_shape + (rows, columns)
    if 0 in out_shape or inner == 0:
        return Plan(out_shape, False, False, OP_N, OP_N, columns, rows, inner, 1, 1, 1, 1, 0, 0, 0, ())
    copy_a = _needs_copy(shape_a, strides_a)
    copy_b = _needs_copy(shape_b, strides_b)
    if copy_a:
        strides_a = _c_strides(shape_a)
    if copy_b:
        strides_b = _c_strides(shape_b)
    strides_c = _c_strides(out_shape)
    batch_a = _broadcast_strides(shape_a, strides_a, batch_shape)
    batch_b = _broadcast_strides(shape_b, strides_b, batch_shape)
    trans_b, ld_b = _matrix(inner, columns, *strides_b[-2:])

    if not any(batch_b):
        # b is one matrix for the whole batch: where a's batch continues its rows (a contiguous a),
        # the batch is rows of one product
        merged = _merge(batch_shape + (rows,), batch_a + (strides_a[-2],))
        matrix_a = merged and _matrix(merged[0], inner, merged[1], strides_a[-1])
        if matrix_a:
            return _checked(Plan(out_shape, copy_a, copy_b, trans_b, matrix_a[0], columns, merged[0], inner,
                                 ld_b, matrix_a[1], columns, 1, 0, 0, 0, ((0, 0, 0),)))

    trans_a, ld_a = _matrix(rows, inner, *strides_a[-2:])
    dims = [d for d in zip(batch_shape, batch_a, batch_b, strides_c[:-2]) if d[0] != 1]
    strided = []                # the innermost batch dims one stride per operand spans
    while dims and (not strided or all(outer == inner_ * strided[0][0]
                                       for outer, inner_ in zip(dims[-1][1:], strided[0][1:]))):
        strided.insert(0, dims.pop())
    batch = math.prod(d[0] for d in strided)
    stride_a, stride_b, stride_c = strided[-1][1:] if strided else (0, 0, 0)
    offsets = tuple(tuple(sum(i * d[j] for i, d in zip(index, dims)) for j in (1, 2, 3))
                    for index in itertools.product(*(range(d[0]) for d in dims)))
    return _checked(Plan(out_shape, copy_a, copy_b, trans_b, trans_a, columns, rows, inner, ld_b, ld_a, columns,
                         batch, stride_b, stride_a, stride_c, offsets))


def _matrix(rows, cols, row_stride, col_stride):
    """(op, ld) with which cuBLAS reads the transpose of a row-major (rows,
    cols) matrix, or None; a stride over a dim of one is free."""
    if cols == 1 or col_stride == 1:
        ld = row_stride if rows > 1 else max(1, cols)
        if ld >= max(1, cols):
            return OP_N, ld
    if rows == 1 or row_stride == 1:
        ld = col_stride if cols > 1 else max(1, rows)
        if ld >= max(1, rows):
            return OP_T, ld
    return None


def _needs_copy(shape, strides):
    return (_matrix(*shape[-2:], *strides[-2:]) is None
            or any(s < 0 for n, s in zip(shape, strides) if n > 1))


def _c_strides(shape):
    strides, step = [], 1
    for n in reversed(shape):
        strides.insert(0, step)
        step *= max(n, 1)
    return tuple(strides)


def _broadcast_strides(shape, strides, batch_shape):
    """An operand's strides over the broadcast batch dims (0 where it is broadcast)."""
    lead = len(batch_shape) - (len(shape) - 2)
    own = [(1, 0)] * lead + list(zip(shape[:-2], strides[:-2]))
    return tuple(s if n != 1 else 0 for n, s in own)


def _merge(shape, strides):
    """(size, stride) of dims that one stride spans, else None."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if any(outer[1] != inner[1] * inner[0] for outer, inner in zip(dims, dims[1:])):
        return None
    return math.prod(shape), dims[-1][1] if dims else 0


def _checked(p):
    fits = max(p.m, p.n, p.k, p.ld_a, p.ld_b, p.ld_c, p.batch) <= INT_MAX
    return p if fits else None


def matmul(cp, a, b):
    """``a @ b`` of bfloat16 CuPy arrays of two or more dims (batch dims
    broadcast), through cuBLAS; None where the CuPy module ``cp`` has no cuBLAS
    handle to give (a stand-in such as the emulator's)."""
    get_handle = getattr(getattr(cp.cuda, "device", None), "get_cublas_handle", None)
    if get_handle is None:
        return None
    # Imported on first use: the binding loads libcublas, which only a CUDA tensor's product needs.
    from cupy_backends.cuda.libs import cublas
    return product(cp, cublas, get_handle, a, b)


def product(cp, cublas, get_handle, a, b):
    """:func:`matmul` with CuPy's cuBLAS binding ``cublas`` and handle getter
    ``get_handle`` (given: tests/test_gemm.py runs this with a NumPy stand-in)."""
    with cp.cuda.Device(a.device.id):
        a, b = [x if all(s % x.itemsize == 0 for s in x.strides) else cp.ascontiguousarray(x) for x in (a, b)]
        p = plan(a.shape, [s // a.itemsize for s in a.strides], b.shape, [s // b.itemsize for s in b.strides])
        if p is None:       # past cuBLAS's ints: CuPy's float32 product (exact products), rounded once
            return (a.astype(numpy.float32) @ b.astype(numpy.float32)).astype(a.dtype)
        out = (cp.zeros if p.k == 0 else cp.empty)(p.out_shape, dtype=a.dtype)
        if not p.offsets:
            return out
        a = cp.ascontiguousarray(a) if p.copy_a else a
        b = cp.ascontiguousarray(b) if p.copy_b else b
        _call(cublas, cp.cuda.runtime.CUDA_R_16BF, get_handle(), p, a, b, out)
    return out


def _call(cublas, data_type, handle, p, a, b, out):
    """The plan's cuBLAS calls: alpha 1 and beta 0 as float32 on the host."""
    one, zero = numpy.ones((), numpy.float32), numpy.zeros((), numpy.float32)
    size = out.itemsize
    pointer_mode, math_mode = cublas.getPointerMode(handle), cublas.getMathMode(handle)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    cublas.setMathMode(handle, math_mode | cublas.CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)
    try:
        for offset_a, offset_b, offset_c in p.offsets:
            cublas.gemmStridedBatchedEx(
                handle, p.trans_b, p.trans_a, p.m, p.n, p.k, one.ctypes.data,
                b.data.ptr + offset_b * size, data_type, p.ld_b, p.stride_b,
                a.data.ptr + offset_a * size, data_type, p.ld_a, p.stride_a,
                zero.ctypes.data, out.data.ptr + offset_c * size, data_type, p.ld_c, p.stride_c,
                p.batch, cublas.CUBLAS_COMPUTE_32F, cublas.CUBLAS_GEMM_DEFAULT)
    finally:
        cublas.setMathMode(handle, math_mode)
        cublas.setPointerMode(handle, pointer_mode)
