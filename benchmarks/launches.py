"""Kernel launches per call on the GPU, counted by CUPTI through torch's
profiler: it records every kernel the process runs on the device, CuPy's as
well as torch's (one CUDA context), so gpugrad's and torch's counts are taken
the same way.  The count comes from the profiler's own trace (its "kernel"
events), not from matching kernels to the CPU calls that launched them."""

import json
import os
import tempfile


def kernels_in_trace(trace):
    """{kernel name: how many} in a Chrome trace exported by torch.profiler."""
    counts = {}
    for event in trace.get("traceEvents", []):
        if event.get("cat") == "kernel" and event.get("ph") == "X":
            counts[event["name"]] = counts.get(event["name"], 0) + 1
    return counts


def per_call(torch, fn, synchronize, calls=20):
    """(kernel launches per call, {kernel name: launches per call}) over ``calls``
    calls of fn after one untimed call; fn's kernels only (the device is
    synchronised before the profiler starts and before it stops)."""
    from torch.profiler import ProfilerActivity, profile
    fn()
    synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        synchronize()
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            counts = kernels_in_trace(json.load(f))
    finally:
        os.unlink(path)
    return sum(counts.values()) / calls, {name: n / calls for name, n in sorted(counts.items())}
