"""Memory over a long run of the GPT example on the CPU: examples/train_gpt.py
(tiny) for 10,000 steps, with the process's resident memory (RSS), its live
Python objects and its live autograd nodes taken at every evaluation (the
same point of the training loop each time).

    python scripts/soak_memory.py                     # 10,000 steps, batch 8, an evaluation every 500
    python scripts/soak_memory.py --steps 2000 --eval-interval 250

Other options go to train_gpt.py.  Exits with status 1 if memory grows: RSS
at the end more than 8 MiB above its level at the second evaluation (after
warm-up: allocator pools, caches), or more live objects or graph nodes than
then.  GPU memory over the same run: scripts/gpu_session.sh memory.
"""

import argparse
import gc
import importlib.util
import pathlib
import sys
import time

from gpugrad.autograd.function import Function

ROOT = pathlib.Path(__file__).resolve().parents[1]


def rss_mib():
    """The resident set size of this process (Linux /proc; ru_maxrss is a peak, not the current level)."""
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def live():
    gc.collect()
    objects = gc.get_objects()
    return len(objects), sum(1 for o in objects if isinstance(o, Function))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--eval-interval", type=int, default=500)
    args, rest = parser.parse_known_args(argv)
    spec = importlib.util.spec_from_file_location("train_gpt", ROOT / "examples" / "train_gpt.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    rows, started = [], time.perf_counter()
    evaluate = example.evaluate

    def measured(*a, **k):
        objects, nodes = live()
        rows.append((args.eval_interval * (len(rows) + 1), rss_mib(), objects, nodes, time.perf_counter() - started))
        step, rss, objects, nodes, seconds = rows[-1]
        print(f"step {step:6d}: RSS {rss:8.1f} MiB, {objects:7d} live objects, {nodes:3d} graph nodes "
              f"({seconds:.0f} s)", flush=True)
        return evaluate(*a, **k)

    example.evaluate = measured
    example.main(["--device", "cpu", "--size", "tiny", "--steps", str(args.steps), "--batch-size",
                  str(args.batch_size), "--eval-interval", str(args.eval_interval), "--eval-batches", "2",
                  "--quiet", "--sample", "", *rest])
    if len(rows) < 3:
        print("too few evaluations to judge (use more --steps or a smaller --eval-interval)")
        return 1
    base, last = rows[1], rows[-1]
    grew = last[1] - base[1]
    print(f"RSS from step {base[0]} to step {last[0]}: {base[1]:.1f} -> {last[1]:.1f} MiB ({grew:+.1f} MiB; "
          f"the whole run {min(r[1] for r in rows):.1f}-{max(r[1] for r in rows):.1f}); live objects "
          f"{base[2]} -> {last[2]}, graph nodes {base[3]} -> {last[3]}")
    flat = grew <= 8 and last[2] <= base[2] and last[3] <= base[3]
    print("memory is flat" if flat else "MEMORY GROWS")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
