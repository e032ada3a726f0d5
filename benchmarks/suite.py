"""Cases and the runner: each case holds the implementations of one
measurement; the runner times them interleaved and derives rates."""

import dataclasses


@dataclasses.dataclass
class Case:
    group: str                      # losses, softmax, elementwise, matmul, mlp, overhead
    name: str                       # what is measured, e.g. "cross_entropy fwd+bwd"
    size: str                       # human-readable size, e.g. "4096x32000"
    dtype: str
    impls: dict                     # label -> (callable, family: "gpugrad" | "cpu" | "torch"); on the CPU a
    #                                 "torch (1 thread)" twin of "torch" is added (family "torch-1")
    bytes: int = None               # fewest bytes one call must move through memory
    flops: int = None               # floating-point operations of one call
    memory: dict = None             # label -> (callable, family): one call, for peak memory
    wall_calls: int = 0             # > 0: host wall time per call over bursts of this many calls
    peaks: dict = None              # label -> peak extra bytes measured elsewhere (a subprocess), instead of memory
    repeats: int = None             # timed repetitions for this case (long calls), instead of the suite's
    x: float = None                 # numeric size for plots


def run_case(machine, case, repeats, warmup, ceilings):
    """One row per implementation, with rates against the ceilings and the ratio to gpugrad."""
    impls = dict(case.impls)
    if not machine.cuda and "torch" in impls:
        impls["torch (1 thread)"] = (impls["torch"][0], "torch-1")
    timings = machine.measure(impls, case.repeats or repeats, min(warmup, case.repeats or warmup),
                              calls=case.wall_calls or None)
    peaks = case.peaks if case.peaks is not None else {
        label: machine.peak_bytes(fn, family) for label, (fn, family) in (case.memory or {}).items()}
    ours = timings["gpugrad"].median if "gpugrad" in timings else None
    rows = []
    for label, timing in timings.items():
        value = timing.median
        row = {"group": case.group, "case": case.name, "size": case.size, "dtype": case.dtype, "impl": label,
               "seconds": value, "q1": timing.q1, "q3": timing.q3, "spread": timing.spread, "x": case.x,
               "peak_bytes": peaks.get(label)}
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
