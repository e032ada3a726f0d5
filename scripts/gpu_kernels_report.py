"""The table of scripts/gpu_kernels.py's Nsight Compute run: per case (public call, shape, dtype), the
kernels between its two markers, their summed time and DRAM bytes, the bytes over the floor
(memtraffic_gpugrad.py's PUBLIC_FLOOR: cross-entropy and logsumexp 2, softmax 5 passes over the
logits) and the floor's bandwidth against a copy bandwidth measured on the same GPU.

    python scripts/gpu_kernels_report.py ncu.csv --copy-gbps 4189
"""
import argparse
import csv
import re
import sys

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gpu_kernels import DTYPES, SHAPES, cases  # noqa: E402

FLOOR = {"F.cross_entropy": 2, "gpugrad.logsumexp": 2, "gpugrad.softmax": 5}
UNITS = {"byte": 1, "kbyte": 1e3, "mbyte": 1e6, "gbyte": 1e9, "nsecond": 1e-9, "usecond": 1e-6,
         "msecond": 1e-3, "second": 1.0}
ITEMSIZE = {"float32": 4, "bfloat16": 2}


def read(path):
    with open(path) as f:
        lines = [line for line in f if line.startswith('"')]     # ncu's own messages are not CSV
    rows = list(csv.reader(lines))
    header, units, body = rows[0], rows[1], rows[2:]
    col = {name: i for i, name in enumerate(header)}

    def value(row, metric):
        text = row[col[metric]].replace(",", "")
        return float(text) * UNITS.get(units[col[metric]].lower(), 1.0) if text else 0.0
    for row in body:
        yield (row[col["Kernel Name"]], value(row, "gpu__time_duration.sum"),
               value(row, "dram__bytes_read.sum"), value(row, "dram__bytes_write.sum"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("csv")
    parser.add_argument("--copy-gbps", type=float, required=True, help="copy bandwidth (read + write) measured")
    args = parser.parse_args()
    per_case, current = {}, None
    for name, seconds, read_bytes, write_bytes in read(args.csv):
        mark = re.search(r"mark<(\d+)>", name)
        if mark:
            i = int(mark.group(1))
            current = i if current != i else None
            per_case.setdefault(i, [])
            continue
        if current is not None:
            per_case[current].append((name, seconds, read_bytes, write_bytes))
    print("| call | shape | dtype | kernels | time (us) | DRAM MB read + written | DRAM / floor | "
          "floor GB/s | % of copy |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for i, (call, rows, cols, dtype) in enumerate(cases()):
        if i not in per_case:
            continue
        kernels = per_case[i]
        seconds = sum(k[1] for k in kernels)
        dram = sum(k[2] + k[3] for k in kernels)
        floor = FLOOR[call.split("(")[0]] * rows * cols * ITEMSIZE[dtype]
        gbps = floor / seconds / 1e9 if seconds else 0.0
        print(f"| `{call}` | {rows}x{cols} | {dtype} | {len(kernels)} | {seconds * 1e6:.1f} | "
              f"{dram / 1e6:.1f} | {dram / floor:.2f} | {gbps:.0f} | {100 * gbps / args.copy_gbps:.0f}% |")
    return 0


if __name__ == "__main__":
    assert SHAPES and DTYPES
    sys.exit(main())
