"""The fused losses' kernels one by one under Nsight Compute (scripts/gpu_session.sh kernels): each
case's public call (forward + backward) once after its warm-up, between two marker launches
(``mark<i>``), so that ``ncu --profile-from-start off --csv --page raw`` gives every kernel's time
and DRAM bytes by case; scripts/gpu_kernels_report.py turns that CSV into the table of
benchmarks/README.md (measured bandwidth per shape, next to the H100 model's figures).

    python scripts/gpu_kernels.py --list          # the cases, in marker order
"""
import argparse
import functools
import sys

import numpy

SHAPES = [(16384, 1024), (4096, 1000), (4096, 32768), (4096, 128256), (65536, 10), (1, 262144)]
DTYPES = ["float32", "bfloat16"]
CALLS = ["F.cross_entropy(x, t).backward()", "gpugrad.logsumexp(x, 1).sum().backward()",
         "gpugrad.softmax(x, 1).backward(g)"]


def call_once(F, gpugrad, call, x, t, g):
    x.grad = None
    if call.startswith("F.cross_entropy"):
        F.cross_entropy(x, t).backward()
    elif call.startswith("gpugrad.logsumexp"):
        gpugrad.logsumexp(x, 1).sum().backward()
    else:
        gpugrad.softmax(x, 1).backward(g)


def cases():
    return [(call, rows, cols, dtype) for rows, cols in SHAPES for dtype in DTYPES for call in CALLS]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--shapes", help="RxC,RxC... instead of SHAPES (a check on the emulator)")
    args = parser.parse_args()
    if args.shapes:
        SHAPES[:] = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
    if args.list:
        for i, case in enumerate(cases()):
            print(i, *case, sep="\t")
        return 0
    import cupy

    import gpugrad
    import gpugrad.nn.functional as F
    marks = cupy.RawModule(code="template <int N> __global__ void mark(int* out) { out[0] = N; }",
                           name_expressions=[f"mark<{i}>" for i in range(len(cases()))])
    word = cupy.zeros(1, dtype=cupy.int32)
    profiler = getattr(cupy.cuda, "profiler", None)       # (the emulator's CuPy has none)
    rng = numpy.random.default_rng(0)
    for i, (call, rows, cols, dtype) in enumerate(cases()):
        x = gpugrad.tensor(rng.standard_normal((rows, cols)).astype("float32"), device="cuda").to(
            getattr(gpugrad, dtype)).requires_grad_()
        t = gpugrad.tensor(rng.integers(0, cols, rows), device="cuda")
        g = gpugrad.randn(rows, cols, device="cuda", dtype=x.dtype)

        run = functools.partial(call_once, F, gpugrad, call, x, t, g)
        run()
        run()                                  # warm: kernels built, the upstream gradient seen
        cupy.cuda.Device().synchronize()
        if profiler is not None:
            profiler.start()
        marks.get_function(f"mark<{i}>")((1,), (1,), (word,))
        run()
        marks.get_function(f"mark<{i}>")((1,), (1,), (word,))
        cupy.cuda.Device().synchronize()
        if profiler is not None:
            profiler.stop()
        print(i, call, f"{rows}x{cols}", dtype, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
