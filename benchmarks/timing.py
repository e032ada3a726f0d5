"""Clocks, interleaved timing, ceilings and peak memory, on the GPU and the CPU.

On the GPU each repetition is bracketed by CUDA events of the library that
ran it (CuPy for gpugrad and plain CuPy, torch for torch), after warm-up.  On
the CPU each repetition is a burst of calls (about 20 ms) timed by
perf_counter after a 10 ms idle gap, so that one library's spinning thread
pool does not slow the next one down, and one untimed call.  Implementations are interleaved
repetition by repetition, in rotating order, so drifting clocks affect all
alike; the median and the quartiles are reported.
"""

import gc
import os
import pathlib
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy
import threadpoolctl

import gpugrad

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from cpu_threads import available_cores, cgroup_cpu_quota  # noqa: E402 (the examples' module, as bench_gpt's)


class Timing:
    """Seconds per call: the median of the samples and their quartiles."""

    def __init__(self, median, q1, q3, samples):
        self.median, self.q1, self.q3, self.samples = median, q1, q3, samples

    @classmethod
    def of(cls, values):
        values = sorted(values)
        if len(values) < 2:
            return cls(values[0], values[0], values[0], len(values))
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        return cls(statistics.median(values), q1, q3, len(values))

    @property
    def spread(self):
        """Half the interquartile range over the median (0.05: +-5%)."""
        return (self.q3 - self.q1) / 2 / self.median if self.median else 0.0


class _torch_threads:
    """torch on ``threads`` intra-op threads inside the block (None: as it is)."""

    def __init__(self, torch, threads, default):
        self.torch, self.threads, self.default = torch, threads, default

    def __enter__(self):
        if self.threads is not None:
            self.torch.set_num_threads(self.threads)

    def __exit__(self, *exc):
        if self.threads is not None:
            self.torch.set_num_threads(self.default)
        return False


class Machine:
    """What the suite runs on: 'cuda' (gpugrad via CuPy, torch CUDA) or 'cpu'."""

    def __init__(self, device):
        import torch
        self.torch = torch
        self.device = device
        self.cuda = device == "cuda"
        if self.cuda:
            import cupy
            self.cupy = cupy
            self._pool = cupy.get_default_memory_pool()
            self._peak = 0
            cupy.cuda.set_allocator(self._tracking_malloc)

    # -- memory --------------------------------------------------------------------
    def _tracking_malloc(self, size):
        memory = self._pool.malloc(size)
        self._peak = max(self._peak, self._pool.used_bytes())
        return memory

    def peak_bytes(self, fn, family):
        """Peak device (or, for gpugrad on the CPU, traced host) bytes while fn runs, above the start."""
        gc.collect()
        if self.cuda and family == "torch":
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
            start = self.torch.cuda.memory_allocated()
            fn()
            self.torch.cuda.synchronize()
            return self.torch.cuda.max_memory_allocated() - start
        if self.cuda:
            self.cupy.cuda.Device().synchronize()
            start = self._peak = self._pool.used_bytes()
            fn()
            self.cupy.cuda.Device().synchronize()
            return self._peak - start
        if family == "torch":
            return None            # torch's CPU allocator is invisible to tracemalloc
        tracemalloc.start()
        try:
            fn()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return peak

    # -- launches --------------------------------------------------------------------------
    def kernel_launches(self, fn):
        """(kernel launches per call of fn, {kernel: per call}) on the GPU; None on the CPU."""
        if not self.cuda:
            return None
        from benchmarks import launches
        return launches.per_call(self.torch, fn, self.synchronize)

    # -- time ------------------------------------------------------------------------------
    def synchronize(self):
        if self.cuda:
            self.cupy.cuda.Device().synchronize()
            self.torch.cuda.synchronize()

    def _threads(self, family):
        """torch's intra-op thread count for this family: 1 for 'torch-1', else unchanged (None)."""
        return 1 if family == "torch-1" else None

    def once(self, fn, family):
        """Seconds one call of fn takes on the device (CUDA events on the GPU)."""
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        if family.startswith("torch"):
            begin, end = self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            return begin.elapsed_time(end) / 1e3
        begin, end = self.cupy.cuda.Event(), self.cupy.cuda.Event()
        begin.record()
        fn()
        end.record()
        end.synchronize()
        return self.cupy.cuda.get_elapsed_time(begin, end) / 1e3

    def _burst(self, fn, calls):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        self.synchronize()
        return (time.perf_counter() - start) / calls

    def measure(self, impls, repeats, warmup, calls=None, burst_seconds=0.02, gap_seconds=0.01):
        """{label: Timing} for impls = {label: (fn, family)}.

        On the CPU (and for host-time cases, ``calls`` given, on the GPU) each
        sample is the wall time per call over a burst of calls, after an idle
        gap (the thread pools of the implementation timed before, torch's or
        OpenBLAS's, stop spinning) and one untimed call (this implementation's
        threads wake up: after tens of milliseconds idle that can take ten);
        the order of the implementations rotates from one repetition to the
        next.  On the GPU otherwise, each sample is
        one call between CUDA events.  ``torch-1`` implementations run with
        torch on one thread.
        """
        torch = self.torch
        default_threads = torch.get_num_threads()
        labels = list(impls)
        samples = {label: [] for label in labels}
        per_burst = {}
        for label in labels:
            fn, family = impls[label]
            with _torch_threads(torch, self._threads(family), default_threads):
                for _ in range(warmup):
                    fn()
                self.synchronize()
                if calls is not None:
                    per_burst[label] = calls
                elif not self.cuda:
                    one = self._burst(fn, 1)
                    per_burst[label] = max(1, min(10_000, int(burst_seconds / max(one, 1e-7))))
        for r in range(repeats):
            for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                fn, family = impls[label]
                with _torch_threads(torch, self._threads(family), default_threads):
                    if label in per_burst:
                        time.sleep(gap_seconds)
                        fn()                  # untimed: wakes this implementation's threads
                        samples[label].append(self._burst(fn, per_burst[label]))
                    else:
                        samples[label].append(self.once(fn, family))
        return {label: Timing.of(values) for label, values in samples.items()}

    # -- ceilings -----------------------------------------------------------------------------
    def copy_bandwidth(self, nbytes=1 << 30):
        """Bytes read plus written per second by a large device-to-device (or RAM) copy."""
        torch = self.torch
        n = nbytes // 4
        if self.cuda:
            src = torch.randn(n, device="cuda")
            dst = torch.empty_like(src)
            seconds = self.measure({"copy": (lambda: dst.copy_(src), "torch")}, repeats=20, warmup=3)["copy"].median
        else:
            n = min(n, 1 << 26)
            src = numpy.random.default_rng(0).standard_normal(n, dtype=numpy.float32)
            dst = numpy.empty_like(src)
            seconds = self.measure({"copy": (lambda: numpy.copyto(dst, src), "cpu")}, repeats=10,
                                   warmup=2)["copy"].median
        return 2 * n * 4 / seconds

    def matmul_rate(self):
        """FLOP/s of a large float32 matrix product through torch (TF32 off)."""
        torch = self.torch
        n = 8192 if self.cuda else 1024
        a = torch.randn(n, n, device=self.device)
        b = torch.randn(n, n, device=self.device)
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
        seconds = self.measure({"mm": (lambda: a @ b, "torch")}, repeats=10, warmup=2)["mm"].median
        return 2 * n ** 3 / seconds


def load_average():
    """The 1, 5 and 15-minute load averages (runnable processes), or None where there are none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def git_commit():
    """The commit of this checkout (with '+changes' when tracked files differ from it), or None."""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        changes = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if changes else "")


def describe(machine):
    """Machine, threads, versions and commit, for the JSON record."""
    import platform

    import torch
    cores, _ = available_cores()
    blas = [{"library": info["internal_api"], "version": info.get("version"), "threads": info["num_threads"]}
            for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]
    info = {"device": machine.device, "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__, "gpugrad": gpugrad.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "commit": git_commit(),
            "cores": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
            else None, "cgroup_cpu_quota": cgroup_cpu_quota(), "available_cores": cores, "blas": blas,
            "torch_threads": torch.get_num_threads()}
    if machine.cuda:
        info["gpu"] = gpugrad.cuda.get_device_name()
        info["cupy"] = machine.cupy.__version__
        info["cuda_runtime"] = machine.cupy.cuda.runtime.runtimeGetVersion()
    return info

