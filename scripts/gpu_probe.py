"""Small reproductions of cross-entropy / logsumexp results on a real GPU, against torch on the same
device in float64: run plainly (repeats show a nondeterministic result) or under compute-sanitizer
(scripts/gpu_session.sh probe).  python scripts/gpu_probe.py [--quick] [--repeats N]"""
import argparse
import sys

import numpy
import torch
import torch.nn.functional as TF

import gpugrad
import gpugrad.nn.functional as F

TDEV = "cuda" if torch.cuda.is_available() else "cpu"      # (the emulator: torch on the CPU)


def rel(a, b):
    a = numpy.asarray(a.detach().to("cpu").numpy() if hasattr(a, "detach") else a, dtype=numpy.float64)
    b = numpy.asarray(b, dtype=numpy.float64)
    ok = numpy.isfinite(b)
    if not numpy.array_equal(numpy.isfinite(a), ok):
        return float("inf")
    return float(numpy.abs(a - b)[ok].max() / max(numpy.abs(b[ok]).max(), 1e-30)) if ok.any() else 0.0


def ce_case(name, x, t, dtype, repeats, **kw):
    tx = torch.tensor(x, dtype=torch.float64, device=TDEV, requires_grad=True)
    tt = torch.tensor(t, device=TDEV)
    tl = TF.cross_entropy(tx, tt, **kw)
    tl.sum().backward()
    ref_l, ref_g = tl.detach().cpu().numpy(), tx.grad.cpu().numpy()
    for rep in range(repeats):
        g = gpugrad.tensor(x.astype(dtype), device="cuda", requires_grad=True)
        loss = F.cross_entropy(g, gpugrad.tensor(t, device="cuda"), **kw)
        loss.sum().backward()
        el, eg = rel(loss, ref_l), rel(g.grad, ref_g)
        bad = numpy.argwhere(numpy.abs(g.grad.to("cpu").numpy().astype(numpy.float64) - ref_g) >
                             1e-3 * max(1e-30, numpy.abs(ref_g).max()))
        print(f"{name:34s} {dtype:8s} rep {rep}: loss rel {el:.2e}  grad rel {eg:.2e}  bad grad elems {len(bad)} "
              f"{bad[:4].tolist()}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = numpy.random.default_rng(int(numpy.random.SeedSequence().entropy % 2**32))
    x = rng.uniform(-1e4, 1e4, size=(6, 11))
    x[0] = 1e4
    x[1, 3:] = -1e4
    x[2, 5:9] = -numpy.inf
    x[3] = x[3] * 0 + 1e4 + rng.uniform(-3, 3, 11)
    t = rng.integers(0, 11, 6)
    t[2] = 1
    ce_case("extreme 6x11 mean", x, t, "float64", args.repeats)
    ce_case("extreme 6x11 mean", x, t, "float32", args.repeats)
    for rows, cols in ([(2048, 33)] if args.quick else [(65536, 33), (2048, 33), (65536, 3)]):
        x = rng.standard_normal((rows, cols)) * 3
        t = rng.integers(0, cols, rows)
        for dtype in ("float32", "float64"):
            ce_case(f"{rows}x{cols} mean", x, t, dtype, args.repeats)
        ce_case(f"{rows}x{cols} sum", x, t, "float32", 1, reduction="sum")
        ce_case(f"{rows}x{cols} mean w ls", x, t, "float32", 1, weight=None, label_smoothing=0.2)
    x = rng.standard_normal((64, 1000))
    for dtype in ("float32",):
        g = gpugrad.tensor(x.astype(dtype), device="cuda", requires_grad=True)
        gpugrad.logsumexp(g, 1).sum().backward()
        tx = torch.tensor(x, device=TDEV, requires_grad=True)
        torch.logsumexp(tx, 1).sum().backward()
        print(f"logsumexp 64x1000 sum backward grad rel {rel(g.grad, tx.grad.cpu().numpy()):.2e}", flush=True)
    return 0



if __name__ == "__main__":
    sys.exit(main())
