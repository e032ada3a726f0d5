"""Peak extra memory of one forward+backward, measured from outside the
library: run in a fresh process, the inputs made, the kernel's peak-RSS mark
reset (``/proc/self/clear_refs``), one call, then the peak resident set above
the resident set before the call.  Fair to every library on the CPU (torch's
allocator is invisible to tracemalloc).  Run it with MALLOC_MMAP_THRESHOLD_
and MALLOC_TRIM_THRESHOLD_ set low (``run`` does): glibc then maps and
unmaps every large array, so the resident set follows the live memory instead
of keeping freed pages that a second call reuses unseen.

    python -m benchmarks.peak_memory IMPL N V D      # linear_cross_entropy; prints the bytes
    python -m benchmarks.peak_memory "gpt gpugrad" SIZE BATCH     # a GPT training step (or "gpt torch")
"""

import os
import subprocess
import sys

import numpy


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _calls(impl, rows, classes, features):
    rng = numpy.random.default_rng(0)
    x = rng.standard_normal((rows, features), dtype=numpy.float32)
    w = (rng.standard_normal((classes, features), dtype=numpy.float32) / numpy.sqrt(features)).astype(numpy.float32)
    t = rng.integers(0, classes, rows)
    if impl.startswith("gpugrad"):
        import gpugrad
        import gpugrad.nn.functional as F
        gx, gw = gpugrad.tensor(x, requires_grad=True), gpugrad.tensor(w, requires_grad=True)
        gt = gpugrad.tensor(t)
        if impl == "gpugrad fused":
            return lambda: F.linear_cross_entropy(gx, gw, gt).backward()
        return lambda: F.cross_entropy(F.linear(gx, gw), gt).backward()
    import torch
    torch.set_num_threads(1 if impl.endswith("(1 thread)") else torch.get_num_threads())
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    tt = torch.tensor(t)
    if impl.startswith("torch linear_cross_entropy"):
        options = torch.nn.LinearCrossEntropyOptions()
        return lambda: torch.nn.functional.linear_cross_entropy(tx, tw, tt, options=options).backward()
    return lambda: torch.nn.functional.cross_entropy(torch.nn.functional.linear(tx, tw), tt).backward()


def _gpt_step(impl, size, batch):
    from benchmarks.bench_gpt import training_step
    return training_step(impl.split()[1], size, int(batch), "cpu")


def measure(impl, *args):
    run = _gpt_step(impl, *args) if impl.startswith("gpt ") else _calls(impl, *map(int, args))
    run()                                       # warm: the gradients exist, as in training
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")                        # resets VmHWM, the peak resident set
    before = _status("VmRSS")
    run()
    return _status("VmHWM") - before


def run(impl, *args):
    """measure() in a fresh process with glibc's thresholds fixed; bytes."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    done = subprocess.run([sys.executable, "-m", "benchmarks.peak_memory", impl, *map(str, args)],
                          capture_output=True, text=True, env=env, check=True)
    return int(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(measure(sys.argv[1], *sys.argv[2:]))
