"""Start a data-parallel job: ``python -m gpugrad.distributed.run --nproc-per-node 4 script.py [args]``.

With MPI's ``mpiexec`` (MPICH's wheel puts one beside this Python) the
processes are started by it, and ``init_process_group`` takes rank and world
size from MPI (either backend).  Without one (or with ``--no-mpi``) they are
started here with torchrun's environment variables (RANK, LOCAL_RANK,
WORLD_SIZE, MASTER_ADDR, MASTER_PORT): the nccl backend then meets over a TCP
store.  If one process fails, the others are stopped and the exit code is
the failing one's.  A rank that formed a process group and vanished without
leaving it (``os._exit(0)`` in the middle of training) fails the job too,
although its exit status is 0 and mpiexec reports success.  Each process gets its share of the CPU cores for its
BLAS and OpenMP threads (OMP_NUM_THREADS, unless already set), as torchrun
does: N processes each spinning the machine's full thread pool run slower
than one.
"""

import argparse
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gpugrad.distributed.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1, help="processes to start")
    parser.add_argument("--no-mpi", action="store_true", help="start the processes here, torchrun-style")
    parser.add_argument("--master-port", type=int, default=None)
    parser.add_argument("script")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def find_mpiexec():
    """MPI's launcher: the one beside this Python (pip's MPICH) first, then PATH."""
    beside = pathlib.Path(sys.executable).with_name("mpiexec")
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def thread_environment(nproc, environ=None):
    """The environment for one of ``nproc`` processes on this machine: the
    cores this process may run on (its CPU affinity, not every processor of the
    machine) shared out to BLAS and OpenMP thread pools (OMP_NUM_THREADS and
    OPENBLAS_NUM_THREADS), unless the user set OMP_NUM_THREADS."""
    env = dict(os.environ if environ is None else environ)
    if "OMP_NUM_THREADS" not in env:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = str(max(1, cores // max(1, nproc)))
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = threads
    return env


def vanished_ranks(folder):
    """The ranks that formed a process group and never left it (see gpugrad.distributed._run_marker)."""
    names = os.listdir(folder)
    started = {int(n[4:-8]) for n in names if n.startswith("rank") and n.endswith(".started")}
    ended = {int(n[4:-6]) for n in names if n.startswith("rank") and n.endswith(".ended")}
    return sorted(started - ended)


def _report(ranks):
    sys.stderr.write(f"gpugrad.distributed.run: rank(s) {', '.join(map(str, ranks))} ended without leaving the "
                     "process group (a process that left through os._exit, or that MPI stopped after another "
                     "did): the job failed\n")
    return 1


def main(argv=None):
    args = parse_args(argv)
    command = [sys.executable, args.script, *args.args]
    mpiexec = None if args.no_mpi else find_mpiexec()
    with tempfile.TemporaryDirectory(prefix="gpugrad-run-") as folder:
        base = dict(thread_environment(args.nproc_per_node), GPUGRAD_RUN_DIR=folder)
        if mpiexec is not None:
            code = subprocess.call([mpiexec, "-n", str(args.nproc_per_node), *command], env=base)
            vanished = vanished_ranks(folder) if code == 0 else []
            return _report(vanished) if vanished else code
        return _launch_here(args, command, base, folder)


def _launch_here(args, command, base, folder):
    port = str(args.master_port or _free_port())
    processes = {}
    for rank in range(args.nproc_per_node):
        env = dict(base, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(args.nproc_per_node),
                   LOCAL_WORLD_SIZE=str(args.nproc_per_node), MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        processes[subprocess.Popen(command, env=env)] = rank
    code = 0
    while processes:
        for p in list(processes):
            status = p.poll()
            if status is None:
                continue
            rank = processes.pop(p)
            if status == 0 and rank in vanished_ranks(folder):
                status = _report([rank])
            if status != 0 and code == 0:
                code = status
                for other in processes:           # one failed: stop the rest, as torchrun does
                    other.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    return code


if __name__ == "__main__":
    sys.exit(main())
