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
    count_launches: bool = False    # on the GPU, count each implementation's kernel launches per call
    x: float = None                 # numeric size for plots


def report_failure(errors, error, **where):
    """Append {where..., error: 'Type: message'} to ``errors`` and print it: a failing
    implementation or case is reported, and the suite goes on."""
    errors.append({**where, "error": f"{type(error).__name__}: {error}"[:500]})
    place = " ".join(str(v) for v in where.values() if v)
    print(f"  {place}: left out ({errors[-1]['error']})", flush=True)


def usable(machine, case, errors):
    """The case's implementations that run: each is called once (a warm-up; torch.compile
    compiles here); one that raises is left out and its error appended to ``errors``, so a
    baseline this torch lacks, or a failing compile, costs its row and not the run."""
    impls = {}
    for label, (fn, family) in case.impls.items():
        try:
            machine.once(fn, family)
        except Exception as error:  # noqa: BLE001 (any failure of one implementation is reported, not fatal)
            report_failure(errors, error, group=case.group, case=case.name, size=case.size, dtype=case.dtype,
                           impl=label)
        else:
            impls[label] = (fn, family)
    return impls


def run_case(machine, case, repeats, warmup, ceilings, impls=None):
    """One row per implementation (``impls``: those of the case that run, default all), with
    rates against the ceilings and the ratio to gpugrad."""
    impls = dict(case.impls if impls is None else impls)
    if not machine.cuda and "torch" in impls:
        impls["torch (1 thread)"] = (impls["torch"][0], "torch-1")
    timings = machine.measure(impls, case.repeats or repeats, min(warmup, case.repeats or warmup),
                              calls=case.wall_calls or None)
    peaks = case.peaks if case.peaks is not None else {
        label: machine.peak_bytes(fn, family) for label, (fn, family) in (case.memory or {}).items()
        if label in impls}
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
        if case.count_launches and machine.cuda:
            try:
                row["launches_per_call"], row["kernels"] = machine.kernel_launches(impls[label][0])
            except Exception as error:  # noqa: BLE001 (the profiler is optional to the timing)
                row["launches_error"] = f"{type(error).__name__}: {error}"[:300]
        rows.append(row)
    return rows
