"""python -m benchmarks [--quick] [--only GROUP ...] [--device cpu|cuda] [--out DIR]

Runs every case that applies to the machine (the GPU when gpugrad and torch
both see one, else the CPU), gpugrad against torch in one interleaved run, and
writes a JSON record, a markdown table (also printed) and plots to --out.
"""

import argparse
import datetime
import sys
import time
import traceback

from benchmarks import require_torch

require_torch()
import gpugrad  # noqa: E402
from benchmarks import bench_gpt, bench_linear_ce, bench_losses, bench_ops, report, step_launches  # noqa: E402
from benchmarks.suite import report_failure, run_case, usable  # noqa: E402
from benchmarks.timing import Machine, describe, load_average  # noqa: E402

GROUPS = {"losses": bench_losses.cases, "linear_ce": bench_linear_ce.cases, "gpt": bench_gpt.cases,
          **bench_ops.GROUPS}
# groups that count rather than time: group -> fn(machine, quick) giving a dict for the record under its name
COUNTS = {"launches": step_launches.collect}


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="a few small cases (CI: checks the suite runs)")
    parser.add_argument("--only", nargs="+", choices=sorted({**GROUPS, **COUNTS}), help="run these groups only")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("--out", default="benchmarks/results", help="directory for JSON, markdown and plots")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per implementation")
    compile_group = parser.add_mutually_exclusive_group()
    compile_group.add_argument("--compile", dest="compile_torch", action="store_true", default=None,
                               help="include torch.compile (default on the GPU)")
    compile_group.add_argument("--no-compile", dest="compile_torch", action="store_false")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch
    device = args.device or ("cuda" if gpugrad.cuda.is_available() and torch.cuda.is_available() else "cpu")
    machine = Machine(device)
    compile_torch = args.compile_torch if args.compile_torch is not None else (device == "cuda" and not args.quick)
    if compile_torch:
        _specialise_compiles(torch)
    repeats = args.repeats or (3 if args.quick else (50 if device == "cuda" else 7))
    warmup = 1 if args.quick else (5 if device == "cuda" else 2)
    started, before = time.time(), load_average()
    print(f"gpugrad benchmarks on {device}; torch.compile {'on' if compile_torch else 'off'}; "
          f"{repeats} timed repetitions after {warmup} warm-up", flush=True)
    ceilings = {"copy_bytes_per_s": machine.copy_bandwidth(1 << 24 if args.quick else 1 << 30),
                "matmul_flops_per_s": machine.matmul_rate()}
    print(f"copy bandwidth {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s, float32 matmul "
          f"{ceilings['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s", flush=True)
    results, errors = [], []
    record = {"machine": describe(machine), "load": {"before": before}, "ceilings": ceilings, "results": results,
              "errors": errors,
              "started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
              "quick": args.quick, "compile": compile_torch, "repeats": repeats, "complete": False}
    stem = f"{datetime.datetime.fromtimestamp(started):%Y%m%d-%H%M%S}-{device}" + ("-quick" if args.quick else "")
    for group in args.only or list(GROUPS) + list(COUNTS):
        if group in COUNTS:
            _count_group(group, machine, args.quick, record, errors)
            report.write(record, args.out, stem, plots=False)
            continue
        for case in _cases(group, machine, args.quick, compile_torch, errors):
            try:
                rows = run_case(machine, case, repeats, warmup, ceilings, usable(machine, case, errors))
            except Exception as error:  # noqa: BLE001 (a failing case is reported; the others still run)
                traceback.print_exc()
                report_failure(errors, error, group=group, case=case.name, size=case.size, dtype=case.dtype)
                continue
            results.extend(rows)
            summary = ", ".join(f"{r['impl']} {r['seconds'] * 1e3:.3f} ms" for r in rows)
            print(f"  {case.group:11s} {case.name:34s} {case.size:22s} {case.dtype:8s} {summary}", flush=True)
            record["seconds"] = round(time.time() - started, 1)
            report.write(record, args.out, stem, plots=False)      # what is measured survives a killed run
    record["seconds"], record["complete"] = round(time.time() - started, 1), True
    record["load"]["after"] = load_average()
    record["loaded"] = report.loaded(record)
    path, plots = report.write(record, args.out, stem)
    print()
    print(report.markdown(record))
    print(f"\nwritten: {path}" + "".join(f", {p}" for p in plots))
    return record


def _count_group(group, machine, quick, record, errors):
    """A counting group: its dict goes to record[group] and its lines are printed; a failure is reported."""
    started = time.time()
    try:
        record[group] = COUNTS[group](machine, quick)
    except Exception as error:  # noqa: BLE001 (reported; the other groups still run)
        traceback.print_exc()
        report_failure(errors, error, group=group)
        return
    record[group]["seconds"] = round(time.time() - started, 1)
    print("\n".join(step_launches.markdown(record[group])), flush=True)


def _specialise_compiles(torch):
    """torch.compile at its best: the cases compile with dynamic=False (a kernel
    specialised to each shape and dtype), and a function compiled for many shapes
    must not hit dynamo's recompile limit (8), past which it would run eagerly and
    its row would time torch eager under torch.compile's name."""
    import torch._dynamo
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit",
                 "accumulated_cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 1024))


def _cases(group, machine, quick, compile_torch, errors):
    """The group's cases; one that fails while being set up ends its group, reported."""
    generator = GROUPS[group](machine, quick, compile_torch)
    while True:
        try:
            case = next(generator)
        except StopIteration:
            return
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            report_failure(errors, error, group=group, case="(setting up the next case)")
            return
        yield case


if __name__ == "__main__":
    main()
