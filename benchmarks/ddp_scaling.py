"""Data-parallel scaling of the GPT example: tokens/s of examples/train_gpt.py
--ddp with 1, 2, ... processes (one GPU each with NCCL on a multi-GPU
machine; CPU processes with MPI elsewhere), a fixed number of steps each.

    python -m benchmarks.ddp_scaling --max-processes 8 --size small --steps 200    # on an 8-GPU machine
    python -m benchmarks.ddp_scaling --max-processes 2 --size tiny --steps 100 --device cpu

Prints one line per world size: tokens/s in all, per process, and the
scaling efficiency against one process (weak scaling: the batch per process
is fixed)."""

import argparse
import pathlib
import re
import subprocess
import sys
import tempfile

from gpugrad.distributed import run as launcher

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-processes", type=int, default=2)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--device", default=None, help="cpu to force MPI on the CPU")
    args = parser.parse_args(argv)
    mpiexec = launcher.find_mpiexec()
    if mpiexec is None:
        raise SystemExit("no mpiexec: pip install mpi4py mpich")
    base = None
    with tempfile.TemporaryDirectory() as out:
        for n in range(1, args.max_processes + 1):
            command = [mpiexec, "-n", str(n), sys.executable, str(ROOT / "examples" / "train_gpt.py"), "--ddp",
                       "--size", args.size, "--steps", str(args.steps), "--eval-interval", str(10 ** 9),
                       "--quiet", "--sample", "", "--out", out]
            if args.device:
                command += ["--device", args.device]
            done = subprocess.run(command, capture_output=True, text=True, check=True,
                                  env=launcher.thread_environment(n))
            tokens = float(re.search(r"\(([\d,]+) tokens/s\)", done.stdout).group(1).replace(",", ""))
            base = base or tokens
            print(f"{n} process(es): {tokens:,.0f} tokens/s in all, {tokens / n:,.0f} per process, "
                  f"efficiency {tokens / (base * n):.0%}", flush=True)


if __name__ == "__main__":
    main()
