"""Clocks, interleaved timing, ceilings and peak memory, on the GPU and the CPU.

On the GPU each repetition is bracketed by CUDA events of the library that
ran it (CuPy for gpugrad and plain CuPy, torch for torch), after warm-up; on
the CPU by perf_counter.  Implementations are interleaved repetition by
repetition, so drifting clocks affect all alike; the median is reported.
"""

import gc
import statistics
import time
import tracemalloc

import numpy

import gpugrad


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

    # -- time ------------------------------------------------------------------------------
    def synchronize(self):
        if self.cuda:
            self.cupy.cuda.Device().synchronize()
            self.torch.cuda.synchronize()

    def once(self, fn, family):
        """Seconds one call of fn takes on the device."""
        if not self.cuda:
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start
        if family == "torch":
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

    def interleaved(self, impls, repeats, warmup):
        """{name: median seconds} for impls = {name: (fn, family)}, interleaved."""
        for fn, family in impls.values():
            for _ in range(warmup):
                fn()
        self.synchronize()
        samples = {name: [] for name in impls}
        for _ in range(repeats):
            for name, (fn, family) in impls.items():
                samples[name].append(self.once(fn, family))
        return {name: statistics.median(values) for name, values in samples.items()}

    def wall_per_call(self, fn, calls, repeats=5):
        """Host wall time per call over a burst of calls (dispatch overhead), median of bursts."""
        fn()
        self.synchronize()
        bursts = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            self.synchronize()
            bursts.append((time.perf_counter() - start) / calls)
        return statistics.median(bursts)

    # -- ceilings -----------------------------------------------------------------------------
    def copy_bandwidth(self, nbytes=1 << 30):
        """Bytes read plus written per second by a large device-to-device (or RAM) copy."""
        torch = self.torch
        n = nbytes // 4
        if self.cuda:
            src = torch.randn(n, device="cuda")
            dst = torch.empty_like(src)
            seconds = self.interleaved({"copy": (lambda: dst.copy_(src), "torch")}, repeats=20, warmup=3)["copy"]
        else:
            n = min(n, 1 << 26)
            src = numpy.random.default_rng(0).standard_normal(n, dtype=numpy.float32)
            dst = numpy.empty_like(src)
            seconds = self.interleaved({"copy": (lambda: numpy.copyto(dst, src), "cpu")}, repeats=10, warmup=2)["copy"]
        return 2 * n * 4 / seconds

    def matmul_rate(self):
        """FLOP/s of a large float32 matrix product through torch (TF32 off)."""
        torch = self.torch
        n = 8192 if self.cuda else 1024
        a = torch.randn(n, n, device=self.device)
        b = torch.randn(n, n, device=self.device)
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = False
        seconds = self.interleaved({"mm": (lambda: a @ b, "torch")}, repeats=10, warmup=2)["mm"]
        return 2 * n ** 3 / seconds


def describe(machine):
    """Machine and versions, for the JSON record."""
    import platform

    import torch
    info = {"device": machine.device, "python": platform.python_version(), "numpy": numpy.__version__,
            "torch": torch.__version__, "gpugrad": gpugrad.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
    if machine.cuda:
        info["gpu"] = gpugrad.cuda.get_device_name()
        info["cupy"] = machine.cupy.__version__
        info["cuda_runtime"] = machine.cupy.cuda.runtime.runtimeGetVersion()
    return info

