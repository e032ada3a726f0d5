"""Cases and the runner: each case holds the implementations of one
measurement; the runner times them interleaved and derives rates."""

import dataclasses


@dataclasses.dataclass
class Case:
    group: str                      # losses, softmax, elementwise, matmul, mlp, overhead
    name: str                       # what is measured, e.g. "cross_entropy fwd+bwd"
    size: str                       # human-readable size, e.g. "4096x32000"
    dtype: str
    impls: dict                     # label -> (callable, family: "gpugrad" | "cupy" | "torch")
    bytes: int = None               # fewest bytes one call must move through memory
    flops: int = None               # floating-point operations of one call
    memory: dict = None             # label -> (callable, family): one call, for peak memory
    wall_calls: int = 0             # > 0: host wall time per call over bursts (dispatch overhead)
    x: float = None                 # numeric size for plots


def run_case(machine, case, repeats, warmup, ceilings):
    """One row per implementation, with rates against the ceilings and the ratio to gpugrad."""
    if case.wall_calls:
        seconds = {label: machine.wall_per_call(fn, case.wall_calls) for label, (fn, _) in case.impls.items()}
    else:
        seconds = machine.interleaved(case.impls, repeats, warmup)
    peaks = {label: machine.peak_bytes(fn, family) for label, (fn, family) in (case.memory or {}).items()}
    ours = seconds.get("gpugrad")
    rows = []
    for label, value in seconds.items():
        row = {"group": case.group, "case": case.name, "size": case.size, "dtype": case.dtype, "impl": label,
               "seconds": value, "x": case.x, "peak_bytes": peaks.get(label)}
        if case.bytes:
            row["gb_per_s"] = case.bytes / value / 1e9
            row["pct_of_copy"] = 100 * case.bytes / value / ceilings["copy_bytes_per_s"]
        if case.flops:
            row["tflop_per_s"] = case.flops / value / 1e12
            row["pct_of_matmul"] = 100 * case.flops / value / ceilings["matmul_flops_per_s"]
        if ours and label != "gpugrad":
            row["gpugrad_speedup"] = value / ours      # > 1: gpugrad is faster
        rows.append(row)
    return rows
