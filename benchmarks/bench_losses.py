"""The fused losses: cross_entropy and logsumexp, forward, backward and
forward+backward, gpugrad against torch eager, torch.compile and a plain
CuPy (NumPy on the CPU) composition.

Minimal bytes (KERNELS.md): the forward reads N*C elements; the backward
reads N*C and writes N*C; forward+backward moves 3*N*C.  The achieved GB/s is
that over the measured time, next to the machine's copy bandwidth.

Run alone: ``python -m benchmarks.bench_losses`` (same options as the suite).
"""

import gpugrad
import gpugrad.nn.functional as F

GPU_SIZES = [(16384, 1024), (4096, 32000), (8192, 50257), (4096, 128256)]
CPU_SIZES = [(4096, 1000), (256, 32000)]
QUICK_SIZES = [(64, 1000)]


def composition(xp):
    """Cross-entropy and log-sum-exp as array code in the fewest passes over
    the N x C logits that NumPy (or CuPy) allows while keeping, like the
    fused ops, only per-row values between forward and backward: the floor an
    array-library implementation can reach.  Forward: max (read), x - m into a
    buffer (read, write), exp in place (read, write), row sums (read).
    Backward from x and the row's (m, s): x - m, exp, scale by g / s (three
    read-write passes).  Cross-entropy's forward+backward, whose upstream
    gradient is known in the forward (loss.backward()), scales the forward's
    exp instead: five passes in all."""

    def stats(x):
        m = x.max(axis=1, keepdims=True)
        e = xp.subtract(x, m)
        xp.exp(e, out=e)
        return m, e.sum(axis=1, keepdims=True), e

    def lse(x):
        m, s, _ = stats(x)
        return xp.log(s) + m, (m, s)

    def scaled_softmax(x, m, s, g):
        grad = xp.subtract(x, m)
        xp.exp(grad, out=grad)
        grad *= g / s
        return grad

    def ce_forward(x, t):
        out, saved = lse(x)
        return (out[:, 0] - x[xp.arange(x.shape[0]), t]).mean(), saved

    def ce_backward(x, t, saved):
        m, s = saved
        grad = scaled_softmax(x, m, s, 1 / x.shape[0])
        grad[xp.arange(x.shape[0]), t] -= 1 / x.shape[0]
        return grad

    def ce_forward_backward(x, t):
        m, s, e = stats(x)
        rows = xp.arange(x.shape[0])
        loss = (xp.log(s[:, 0]) + m[:, 0] - x[rows, t]).mean()
        e *= 1 / (s * x.shape[0])
        e[rows, t] -= 1 / x.shape[0]
        return loss, e

    def lse_backward(x, saved, g):
        m, s = saved
        return scaled_softmax(x, m, s, g[:, None])

    def lse_forward_backward(x, g):
        out, saved = lse(x)
        return out, lse_backward(x, saved, g)

    return lse, ce_forward, ce_backward, ce_forward_backward, lse_backward, lse_forward_backward


COMPOSITION = "array code, fewest passes"


def _family(machine):
    return "gpugrad" if machine.cuda else "cpu"


def cases(machine, quick=False, compile_torch=False):
    torch = machine.torch
    sizes = QUICK_SIZES if quick else (GPU_SIZES if machine.cuda else CPU_SIZES)
    dtypes = ["float32"] if (quick or not machine.cuda) else ["float32", "float16"]
    xp = machine.cupy if machine.cuda else __import__("numpy")
    lse, ce_forward, ce_backward, ce_forward_backward, lse_backward, lse_forward_backward = composition(xp)
    ours_family = _family(machine)
    compiled_ce = torch.compile(torch.nn.functional.cross_entropy, dynamic=False) if compile_torch else None
    compiled_lse = torch.compile(lambda a: torch.logsumexp(a, 1), dynamic=False) if compile_torch else None

    for rows, classes in sizes:
        for dtype in dtypes:
            torch_dtype = getattr(torch, dtype)
            tx = (torch.randn(rows, classes, device=machine.device) * 3).to(torch_dtype).requires_grad_(True)
            tt = torch.randint(0, classes, (rows,), device=machine.device)
            gx = gpugrad.from_dlpack(tx.detach()).requires_grad_(True)
            gt = gpugrad.from_dlpack(tt)
            raw_x, raw_t = xp.from_dlpack(tx.detach()), xp.from_dlpack(tt)
            tg = torch.ones(rows, device=machine.device, dtype=torch_dtype)
            gg = gpugrad.from_dlpack(tg)
            element = tx.element_size()
            n = rows * classes
            size = f"{rows}x{classes}"

            # cross-entropy
            loss_ours = F.cross_entropy(gx, gt)
            loss_theirs = torch.nn.functional.cross_entropy(tx, tt)
            saved = ce_forward(raw_x, raw_t)
            impls = {
                "fwd": {
                    "gpugrad": (lambda: F.cross_entropy(gx, gt), ours_family),
                    "torch": (lambda: torch.nn.functional.cross_entropy(tx, tt), "torch"),
                    COMPOSITION: (lambda: ce_forward(raw_x, raw_t), ours_family),
                },
                "bwd": {
                    "gpugrad": (lambda: gpugrad.autograd.grad(loss_ours, gx, retain_graph=True), ours_family),
                    "torch": (lambda: torch.autograd.grad(loss_theirs, tx, retain_graph=True), "torch"),
                    COMPOSITION: (lambda: ce_backward(raw_x, raw_t, saved[1]), ours_family),
                },
                "fwd+bwd": {
                    "gpugrad": (lambda: gpugrad.autograd.grad(F.cross_entropy(gx, gt), gx), ours_family),
                    "torch": (lambda: torch.autograd.grad(torch.nn.functional.cross_entropy(tx, tt), tx), "torch"),
                    COMPOSITION: (lambda: ce_forward_backward(raw_x, raw_t), ours_family),
                },
            }
            if compiled_ce is not None:
                loss_compiled = compiled_ce(tx, tt)
                impls["fwd"]["torch.compile"] = (lambda: compiled_ce(tx, tt), "torch")
                impls["bwd"]["torch.compile"] = (
                    lambda: torch.autograd.grad(loss_compiled, tx, retain_graph=True), "torch")
                impls["fwd+bwd"]["torch.compile"] = (lambda: torch.autograd.grad(compiled_ce(tx, tt), tx), "torch")
            for phase, factor in (("fwd", 1), ("bwd", 2), ("fwd+bwd", 3)):
                yield _case("cross_entropy", phase, size, dtype, impls[phase], factor * n * element, n)

            # log-sum-exp (upstream gradient of ones)
            out_ours = gpugrad.logsumexp(gx, 1)
            out_theirs = torch.logsumexp(tx, 1)
            saved_lse = lse(raw_x)[1]
            g_raw = xp.from_dlpack(tg)
            impls = {
                "fwd": {
                    "gpugrad": (lambda: gpugrad.logsumexp(gx, 1), ours_family),
                    "torch": (lambda: torch.logsumexp(tx, 1), "torch"),
                    COMPOSITION: (lambda: lse(raw_x), ours_family),
                },
                "bwd": {
                    "gpugrad": (lambda: gpugrad.autograd.grad(out_ours, gx, gg, retain_graph=True), ours_family),
                    "torch": (lambda: torch.autograd.grad(out_theirs, tx, tg, retain_graph=True), "torch"),
                    COMPOSITION: (lambda: lse_backward(raw_x, saved_lse, g_raw), ours_family),
                },
                "fwd+bwd": {
                    "gpugrad": (lambda: gpugrad.autograd.grad(gpugrad.logsumexp(gx, 1), gx, gg), ours_family),
                    "torch": (lambda: torch.autograd.grad(torch.logsumexp(tx, 1), tx, tg), "torch"),
                    COMPOSITION: (lambda: lse_forward_backward(raw_x, g_raw), ours_family),
                },
            }
            if compiled_lse is not None:
                out_compiled = compiled_lse(tx)
                impls["fwd"]["torch.compile"] = (lambda: compiled_lse(tx), "torch")
                impls["bwd"]["torch.compile"] = (
                    lambda: torch.autograd.grad(out_compiled, tx, tg, retain_graph=True), "torch")
                impls["fwd+bwd"]["torch.compile"] = (lambda: torch.autograd.grad(compiled_lse(tx), tx, tg), "torch")
            for phase, factor in (("fwd", 1), ("bwd", 2), ("fwd+bwd", 3)):
                yield _case("logsumexp", phase, size, dtype, impls[phase], factor * n * element, n)


def _case(op, phase, size, dtype, impls, nbytes, n):
    from benchmarks.suite import Case
    memory = impls if phase == "fwd+bwd" else None
    return Case(group="losses", name=f"{op} {phase}", size=size, dtype=dtype, impls=dict(impls), bytes=nbytes,
                memory=memory, x=n)


if __name__ == "__main__":
    from benchmarks.__main__ import main
    main(["--only", "losses"])
