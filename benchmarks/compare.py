"""Two runs of the suite side by side (e.g. before and after a change), as
gpugrad's time over torch's measured in the same run, and over torch on one
thread:

    python -m benchmarks.compare before.json after.json
"""

import json
import sys

from benchmarks.report import by_case, loaded, node_costs, ratio_cell, verdict


def _ratios(record):
    """{case key: (gpugrad's seconds, {impl: cell of gpugrad's time over impl's})}."""
    times = by_case(record, None)
    busy = loaded(record)
    ratios = {}
    for key, rows in times.items():
        if "gpugrad" in rows:
            ours = rows["gpugrad"]
            ratios[key] = (ours["seconds"], {impl: ratio_cell(verdict(ours, row, busy), invert=True)
                                             for impl, row in rows.items() if impl != "gpugrad"})
    return ratios


def compare(before, after):
    """Markdown: per case, gpugrad's time and its ratio to torch (2 threads and
    1 thread) in each run, where that run's measurements hold it up (else 'no
    verdict' and why); then the cost per graph node of each run."""
    old, new = _ratios(before), _ratios(after)
    lines = ["| case | size | gpugrad ms before | after | gpugrad / torch before | after "
             "| gpugrad / torch (1 thread) before | after |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]

    def cell(entry, impl):
        return entry[1][impl] if entry is not None and impl in entry[1] else ""

    for key, entry in new.items():
        _, case, size, _ = key
        previous = old.get(key)
        lines.append(f"| {case} | {size} | {previous[0] * 1e3 if previous else float('nan'):.3f} | "
                     f"{entry[0] * 1e3:.3f} | {cell(previous, 'torch')} | {cell(entry, 'torch')} | "
                     f"{cell(previous, 'torch (1 thread)')} | {cell(entry, 'torch (1 thread)')} |")
    for name, record in (("before", before), ("after", after)):
        if loaded(record):
            lines += ["", f"The {name} run's machine was loaded ({loaded(record)}): its ratios are no verdicts."]
    lines += ["", "Before:", ""] + node_costs(before) + ["", "After:", ""] + node_costs(after)
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit(__doc__)
    with open(argv[0]) as a, open(argv[1]) as b:
        print(compare(json.load(a), json.load(b)))


if __name__ == "__main__":
    main()
