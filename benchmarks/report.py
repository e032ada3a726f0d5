"""Results: a JSON record per run, a markdown table, and plots beside the JSON.

A ratio of two times is a verdict only when the measurements hold it up: it is
printed bare when the two implementations' quartile ranges are apart, neither
time's spread exceeds NOISY, and the machine was not loaded; otherwise the
cell says "no verdict" and why (see :func:`verdict`).
"""

import collections
import json
import pathlib

from benchmarks import step_launches

# a time whose spread (half the interquartile range over the median) exceeds this is too noisy for a verdict
NOISY = 0.10
# One colour per implementation in every plot; others get the rest of the palette in order of appearance.
COLOURS = {"gpugrad": "tab:blue", "torch": "tab:orange", "torch (1 thread)": "tab:brown",
           "torch.compile": "tab:green", "array code, fewest passes": "tab:gray", "gpugrad unfused": "tab:cyan",
           "torch linear_cross_entropy": "tab:purple"}
SPARE_COLOURS = ["tab:red", "tab:pink", "tab:olive", "black", "gold", "navy", "lime", "teal", "maroon", "orchid"]


def _ms(seconds):
    return f"{seconds * 1e3:.3f}" if seconds >= 1e-4 else f"{seconds * 1e3:.4f}"


def loaded(record):
    """Why the machine counts as loaded during the run (a sentence), or None.  Before the run
    the 1-minute load average is other processes' work: loaded from half the cores available.
    After it, it includes the suite's own threads (up to one per core): loaded from 1.5 x the
    cores.  None too for a record that has no load (written before it was recorded)."""
    machine, load = record.get("machine", {}), record.get("load") or {}
    cores = machine.get("available_cores")
    if not cores:
        return None
    reasons = []
    if load.get("before") and load["before"][0] >= 0.5 * cores:
        reasons.append(f"load average {load['before'][0]:.1f} before the run")
    if load.get("after") and load["after"][0] >= 1.5 * cores:
        reasons.append(f"{load['after'][0]:.1f} after it")
    return f"{', '.join(reasons)} on {cores} available cores" if reasons else None


def verdict(ours, other, machine_loaded=None):
    """How far the measurements hold up ``other``'s time over ``ours`` (rows with seconds,
    q1, q3, spread): {"ratio", "low", "high", "spread", "flag"}.  low and high bound the ratio
    by the quartiles (other's q1 over our q3, other's q3 over our q1); ``flag`` is None for a
    verdict, else why there is none: "overlap" (the bounds straddle 1), "noisy" (a spread
    above NOISY) or "loaded" (``machine_loaded``: the reason :func:`loaded` gave)."""
    low = other.get("q1", other["seconds"]) / ours.get("q3", ours["seconds"])
    high = other.get("q3", other["seconds"]) / ours.get("q1", ours["seconds"])
    spread = max(ours.get("spread", 0.0), other.get("spread", 0.0))
    flag = "overlap" if low <= 1 <= high else "noisy" if spread > NOISY else "loaded" if machine_loaded else None
    return {"ratio": other["seconds"] / ours["seconds"], "low": low, "high": high, "spread": spread, "flag": flag}


def ratio_cell(result, invert=False):
    """A verdict as a table cell: the bare ratio when it holds, else 'no verdict (...)' with
    the ratio and why; ``invert``: ours over the other's instead of the other's over ours."""
    ratio, low, high, unit = result["ratio"], result["low"], result["high"], "x"
    if invert:
        ratio, low, high, unit = 1 / ratio, 1 / high, 1 / low, ""
    if result["flag"] is None:
        return f"{ratio:.2f}{unit}"
    why = {"overlap": f"quartiles overlap: {low:.2g} to {high:.2g}", "noisy": f"spread ±{100 * result['spread']:.0f}%",
           "loaded": "machine loaded"}[result["flag"]]
    return f"no verdict ({ratio:.3g}{unit}; {why})"


def markdown(record):
    ceilings = record["ceilings"]
    machine = record["machine"]
    busy = loaded(record)
    lines = [f"gpugrad benchmarks on {machine.get('gpu', machine['processor'])} "
             f"({machine['device']}), torch {machine['torch']}",
             "",
             machine_line(record),
             "",
             ] + ([f"**Loaded machine** ({busy}): other work competed for the cores, so no ratio below is a "
                   "verdict.", ""] if busy else []) + [
             f"Ceilings measured in this run: copy {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s "
             f"(read + write), float32 matmul {ceilings['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s."]
    if record["results"]:      # a run of counting groups only (--only launches) has no timed rows
        lines += [""] + _timed(record, busy)
    lines += step_launches.markdown(record.get("launches"))
    if record.get("errors"):
        lines += ["", "Left out (the error each raised):", ""]
        lines += ["- " + " ".join(str(v) for k, v in e.items() if k != "error" and v) + f": {e['error']}"
                  for e in record["errors"]]
    if record.get("complete") is False:
        lines += ["", f"**Incomplete**: the run stopped after {record.get('seconds', 0):.0f} s; these are the cases "
                      "measured until then."]
    return "\n".join(lines)


def _timed(record, busy):
    """The timed rows' tables: times and rates, ratios, cost per node, kernel launches."""
    lines = ["| group | case | size | dtype | impl | time (ms) | spread | GB/s | % of copy | TFLOP/s | peak MB "
             "| gpugrad speedup |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ours = {_key(row): row for row in record["results"] if row["impl"] == "gpugrad"}
    for row in record["results"]:
        gbps = f"{row['gb_per_s']:.0f}" if "gb_per_s" in row else ""
        pct = f"{row['pct_of_copy']:.0f}%" if "pct_of_copy" in row else ""
        tflops = f"{row['tflop_per_s']:.2f}" if "tflop_per_s" in row else ""
        peak = f"{row['peak_bytes'] / 2**20:.0f}" if row.get("peak_bytes") is not None else ""
        speedup = (ratio_cell(verdict(ours[_key(row)], row, busy))
                   if row["impl"] != "gpugrad" and _key(row) in ours else "")
        spread = f"±{100 * row['spread']:.0f}%" if "spread" in row else ""
        lines.append(f"| {row['group']} | {row['case']} | {row['size']} | {row['dtype']} | {row['impl']} | "
                     f"{_ms(row['seconds'])} | {spread} | {gbps} | {pct} | {tflops} | {peak} | {speedup} |")
    lines += ["", "gpugrad speedup = the other implementation's time / gpugrad's time (> 1: gpugrad is faster); "
              "spread = half the interquartile range of the samples, over the median.  A ratio is a verdict only "
              "when the two quartile ranges are apart, both spreads are within "
              f"±{100 * NOISY:.0f}% and the machine was not loaded; otherwise it reads 'no verdict' and why."]
    lines += [""] + ratios(record) + [""] + node_costs(record) + launch_counts(record)
    return lines


def machine_line(record):
    """The machine and its load, in a sentence."""
    machine, load = record["machine"], record.get("load") or {}
    parts = []
    if machine.get("available_cores"):
        parts.append(f"{machine['available_cores']} cores available of {machine.get('cores')}")
    if machine.get("blas"):
        parts.append(", ".join(f"{b['library']} {b['threads']} threads" for b in machine["blas"]))
    if machine.get("torch_threads"):
        parts.append(f"torch {machine['torch_threads']} threads")
    for when in ("before", "after"):
        if load.get(when):
            parts.append(f"load average {when} {' '.join(f'{x:.2f}' for x in load[when])}")
    versions = ", ".join(f"{name} {machine[name]}" for name in ("python", "numpy", "torch", "gpugrad")
                         if machine.get(name))
    commit = machine.get("commit")
    return "Machine: " + "; ".join(parts + [versions] + ([f"commit {commit}"] if commit else [])) + "."


def _key(row):
    return row["group"], row["case"], row["size"], row["dtype"]


def by_case(record, field="seconds"):
    """{case key: {impl: row[field]}} in the record's order (field None: the whole row)."""
    cases = collections.OrderedDict()
    for row in record["results"]:
        cases.setdefault(_key(row), {})[row["impl"]] = row if field is None else row[field]
    return cases


def ratios(record):
    """gpugrad's time over each other implementation's, case by case (< 1: gpugrad is faster),
    where the measurements hold the ratio up (:func:`verdict`)."""
    cases = by_case(record, None)
    busy = loaded(record)
    others = []
    for times in cases.values():
        for impl in times:
            if impl != "gpugrad" and impl not in others:
                others.append(impl)
    lines = ["gpugrad's time / the other's (< 1: gpugrad is faster):", "",
             "| case | size | dtype | " + " | ".join(f"gpugrad / {o}" for o in others) + " |",
             "|---|---|---|" + "---:|" * len(others)]
    for (_, case, size, dtype), times in cases.items():
        if "gpugrad" not in times:
            continue
        cells = [ratio_cell(verdict(times["gpugrad"], times[o], busy), invert=True) if o in times else ""
                 for o in others]
        lines.append(f"| {case} | {size} | {dtype} | " + " | ".join(cells) + " |")
    return lines


def launch_counts(record):
    """Kernel launches per call (GPU cases that count them) and which kernels."""
    rows = [r for r in record["results"] if "launches_per_call" in r or "launches_error" in r]
    if not rows:
        return []
    lines = ["", "Kernel launches per call (CUPTI, through torch's profiler):", "",
             "| case | impl | launches | kernels (per call) |", "|---|---|---:|---|"]
    for r in rows:
        if "launches_error" in r:
            lines.append(f"| {r['case']} | {r['impl']} | | not counted: {r['launches_error']} |")
            continue
        kernels = "; ".join(f"{name[:60]} x{n:g}" for name, n in r["kernels"].items())
        lines.append(f"| {r['case']} | {r['impl']} | {r['launches_per_call']:g} | {kernels} |")
    return lines


def node_costs(record):
    """Cost per graph node from the chain cases: forward = forward / nodes,
    backward = (forward+backward - forward) / nodes (the chain's sum counted)."""
    cases = by_case(record)
    lines = []
    for (group, case, size, dtype), forward in cases.items():
        if group != "overhead" or not case.endswith(": forward"):
            continue
        both = cases.get((group, case.replace(": forward", ": fwd+bwd"), size, dtype))
        if both is None:
            continue
        nodes = int(case.split()[2]) + 1
        if not lines:
            lines = ["Cost per graph node (4x4 tensors), microseconds:", "",
                     "| device | impl | forward | backward |", "|---|---|---:|---:|"]
        for impl, seconds in forward.items():
            if impl in both:
                lines.append(f"| {size} | {impl} | {seconds / nodes * 1e6:.2f} | "
                             f"{(both[impl] - seconds) / nodes * 1e6:.2f} |")
    return lines


def colours(impls):
    """{implementation: colour}: COLOURS for the known ones, the spare colours in order for the others."""
    spare = iter(SPARE_COLOURS)
    palette = {}
    for impl in impls:
        if impl not in palette:
            palette[impl] = COLOURS.get(impl) or next(spare, "black")
    return palette


def write(record, directory, stem, plots=True):
    """The JSON record and the markdown (and with ``plots`` the PNGs): (json path, plot paths)."""
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(record, indent=1))
    (directory / f"{stem}.md").write_text(markdown(record) + "\n")
    return path, plot(record, directory, stem) if plots else []


def plot(record, directory, stem):
    """time vs size per case and implementation; % of copy bandwidth of the loss kernels."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    palette = colours(row["impl"] for row in record["results"])
    series = collections.defaultdict(list)
    for row in record["results"]:
        if row.get("x"):
            series[(row["case"], row["dtype"], row["impl"])].append((row["x"], row["seconds"]))
    cases = sorted({(case, dtype) for case, dtype, _ in series})
    if cases:
        columns = min(4, len(cases))
        rows = -(-len(cases) // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
        for ax, (case, dtype) in zip(axes.flat, cases):
            for (c, d, impl), points in sorted(series.items()):
                if (c, d) == (case, dtype):
                    points.sort()
                    ax.plot([p[0] for p in points], [p[1] * 1e3 for p in points], marker="o", label=impl,
                            color=palette[impl])
            ax.set(title=f"{case} ({dtype})", xlabel="elements", ylabel="ms", xscale="log", yscale="log")
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(cases):]:
            ax.axis("off")
        fig.tight_layout()
        path = directory / f"{stem}-time.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    losses = [r for r in record["results"] if r["group"] == "losses" and "pct_of_copy" in r]
    if losses:
        labels = sorted({(r["case"], r["size"], r["dtype"]) for r in losses},
                        key=lambda k: (k[0], k[2], int(k[1].split("x")[0]) * int(k[1].split("x")[1])))
        impls = sorted({r["impl"] for r in losses})
        fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(labels) * len(impls)), 4.5))
        width = 0.8 / len(impls)
        for i, impl in enumerate(impls):
            values = {(r["case"], r["size"], r["dtype"]): r["pct_of_copy"] for r in losses if r["impl"] == impl}
            ax.bar([j + i * width for j in range(len(labels))], [values.get(k, 0) for k in labels], width,
                   label=impl, color=palette[impl])
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))])
        ax.set_xticklabels([f"{c}\n{s} {d}" for c, s, d in labels], rotation=90, fontsize=6)
        ax.axhline(100, color="black", linewidth=0.8)
        ax.set(ylabel="% of measured copy bandwidth", title="fused losses: achieved / copy bandwidth")
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = directory / f"{stem}-bandwidth.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
