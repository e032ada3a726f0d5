"""Results: a JSON record per run, a markdown table, and plots beside the JSON."""

import collections
import json
import pathlib


def _ms(seconds):
    return f"{seconds * 1e3:.3f}" if seconds >= 1e-4 else f"{seconds * 1e3:.4f}"


def markdown(record):
    ceilings = record["ceilings"]
    lines = [f"gpugrad benchmarks on {record['machine'].get('gpu', record['machine']['processor'])} "
             f"({record['machine']['device']}), torch {record['machine']['torch']}",
             "",
             f"Ceilings measured in this run: copy {ceilings['copy_bytes_per_s'] / 1e9:.0f} GB/s "
             f"(read + write), float32 matmul {ceilings['matmul_flops_per_s'] / 1e12:.2f} TFLOP/s.",
             "",
             "| group | case | size | dtype | impl | time (ms) | spread | GB/s | % of copy | TFLOP/s | peak MB "
             "| gpugrad speedup |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in record["results"]:
        gbps = f"{row['gb_per_s']:.0f}" if "gb_per_s" in row else ""
        pct = f"{row['pct_of_copy']:.0f}%" if "pct_of_copy" in row else ""
        tflops = f"{row['tflop_per_s']:.2f}" if "tflop_per_s" in row else ""
        peak = f"{row['peak_bytes'] / 2**20:.0f}" if row.get("peak_bytes") is not None else ""
        speedup = f"{row['gpugrad_speedup']:.2f}x" if "gpugrad_speedup" in row else ""
        spread = f"±{100 * row['spread']:.0f}%" if "spread" in row else ""
        lines.append(f"| {row['group']} | {row['case']} | {row['size']} | {row['dtype']} | {row['impl']} | "
                     f"{_ms(row['seconds'])} | {spread} | {gbps} | {pct} | {tflops} | {peak} | {speedup} |")
    lines += ["", "gpugrad speedup = the other implementation's time / gpugrad's time (> 1: gpugrad is faster); "
              "spread = half the interquartile range of the samples, over the median."]
    lines += [""] + ratios(record) + [""] + node_costs(record) + launch_counts(record)
    if record.get("errors"):
        lines += ["", "Left out (the error each raised):", ""]
        lines += ["- " + " ".join(str(v) for k, v in e.items() if k != "error" and v) + f": {e['error']}"
                  for e in record["errors"]]
    if record.get("complete") is False:
        lines += ["", f"**Incomplete**: the run stopped after {record.get('seconds', 0):.0f} s; these are the cases "
                      "measured until then."]
    return "\n".join(lines)


def _by_case(record):
    cases = collections.OrderedDict()
    for row in record["results"]:
        cases.setdefault((row["group"], row["case"], row["size"], row["dtype"]), {})[row["impl"]] = row["seconds"]
    return cases


def ratios(record):
    """gpugrad's time over each other implementation's, case by case (< 1: gpugrad is faster)."""
    cases = _by_case(record)
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
        cells = [f"{times['gpugrad'] / times[o]:.2f}" if o in times else "" for o in others]
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
    cases = _by_case(record)
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
                    ax.plot([p[0] for p in points], [p[1] * 1e3 for p in points], marker="o", label=impl)
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
                   label=impl)
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
