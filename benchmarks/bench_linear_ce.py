"""linear_cross_entropy: the chunked linear + cross-entropy against the
unfused cross_entropy(linear(...)) (gpugrad's and torch's) and torch 2.13's
own chunked F.linear_cross_entropy; forward+backward time and peak extra
memory (on the CPU measured in a fresh process per implementation from the
resident set, benchmarks/peak_memory.py; on the GPU from the allocators).
"""

import gpugrad
import gpugrad.nn.functional as F
from benchmarks import peak_memory
from benchmarks.suite import Case

CPU_SIZES = [(8192, 32000, 512)]
GPU_SIZES = [(8192, 32000, 512), (8192, 128256, 2048)]
QUICK_SIZES = [(256, 2000, 64)]


def _torch_fused(torch, tx, tw, tt):
    """torch's chunked F.linear_cross_entropy (torch 2.13); a torch without it raises
    when called, so the suite leaves that row out and says why."""
    if not hasattr(torch.nn, "LinearCrossEntropyOptions"):
        def missing():
            raise RuntimeError(f"torch {torch.__version__} has no chunked F.linear_cross_entropy")
        return missing
    options = torch.nn.LinearCrossEntropyOptions()
    return lambda: torch.nn.functional.linear_cross_entropy(tx, tw, tt, options=options).backward()


def cases(machine, quick=False, compile_torch=False):
    torch = machine.torch
    sizes = QUICK_SIZES if quick else (GPU_SIZES if machine.cuda else CPU_SIZES)
    family = "gpugrad" if machine.cuda else "cpu"
    for rows, classes, features in sizes:
        tx = torch.randn(rows, features, device=machine.device, requires_grad=True)
        tw = (torch.randn(classes, features, device=machine.device) / features ** 0.5).requires_grad_()
        tt = torch.randint(0, classes, (rows,), device=machine.device)
        gx = gpugrad.from_dlpack(tx.detach()).requires_grad_(True)
        gw = gpugrad.from_dlpack(tw.detach()).requires_grad_(True)
        gt = gpugrad.from_dlpack(tt)
        impls = {
            "gpugrad": (lambda: F.linear_cross_entropy(gx, gw, gt).backward(), family),
            "gpugrad unfused": (lambda: F.cross_entropy(F.linear(gx, gw), gt).backward(), family),
            "torch": (lambda: torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw), tt).backward(),
                      "torch"),
            "torch linear_cross_entropy": (_torch_fused(torch, tx, tw, tt), "torch"),
        }
        peaks = None
        if not machine.cuda:
            names = {"gpugrad": "gpugrad fused", "gpugrad unfused": "gpugrad unfused", "torch": "torch unfused",
                     "torch linear_cross_entropy": "torch linear_cross_entropy"}
            peaks = {label: peak_memory.run(name, rows, classes, features) for label, name in names.items()}
        yield Case("linear_ce", "linear_cross_entropy fwd+bwd", f"N={rows} V={classes} D={features}", "float32",
                   impls, flops=6 * rows * classes * features, memory=impls if machine.cuda else None, peaks=peaks,
                   repeats=3 if not quick else None, x=rows * classes)
