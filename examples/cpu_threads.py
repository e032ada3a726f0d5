"""How many BLAS threads the examples' matrix products get on the CPU.

OpenBLAS starts one thread per core and spins them on every product.  On a
machine whose cores are busy with other work those threads wait for a
scheduler tick at each product: on a loaded 2-core machine the GPT example
trained 2.2-4.6x more steps on one thread than on two.  So the count is the
cores this process may actually run on (its CPU affinity, capped by a cgroup
CPU quota), shared among the processes of a data-parallel run on this
machine, less the cores the 1-minute load average says are already busy; at
least one.  An explicit ``--threads N``, or OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS / MKL_NUM_THREADS in the environment, is taken as it is.
"""

import contextlib
import math
import os
import pathlib

import threadpoolctl

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
# processes of a data-parallel run on this machine: torchrun's, MPICH's, Open MPI's variables
LOCAL_WORLD_VARIABLES = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def cgroup_cpu_quota(root="/"):
    """The CPU quota of this process's cgroup in cores (cgroup v2 ``cpu.max`` or v1
    ``cpu.cfs_quota_us / cpu.cfs_period_us``), or None where there is none."""
    root = pathlib.Path(root)
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        path = path.lstrip("/")
        if controllers == "":                                      # v2: one unified hierarchy
            for folder in (root / "sys/fs/cgroup" / path, root / "sys/fs/cgroup"):
                quota = _read_words(folder / "cpu.max")
                if quota and quota[0] != "max":
                    quotas.append(int(quota[0]) / int(quota[1]))
                    break
        elif "cpu" in controllers.split(","):                       # v1: the cpu controller's mount
            for folder in (root / "sys/fs/cgroup" / controllers / path, root / "sys/fs/cgroup" / controllers):
                quota, period = _read_words(folder / "cpu.cfs_quota_us"), _read_words(folder / "cpu.cfs_period_us")
                if quota and period and int(quota[0]) > 0:
                    quotas.append(int(quota[0]) / int(period[0]))
                    break
    return min(quotas) if quotas else None


def _read_words(path):
    try:
        return path.read_text().split()
    except OSError:
        return None


def available_cores(root="/"):
    """(cores, why): the processors this process may run on, capped by its cgroup's CPU quota."""
    try:
        cores, why = len(os.sched_getaffinity(0)), "CPU affinity"
    except AttributeError:                                        # not on Linux
        cores, why = os.cpu_count() or 1, "processors"
    quota = cgroup_cpu_quota(root)
    if quota is not None and quota < cores:
        cores, why = max(1, math.floor(quota)), f"cgroup CPU quota {quota:g}"
    return cores, why


def choose(cores, load, processes=1):
    """BLAS threads for one of ``processes`` processes sharing ``cores`` while the rest of the
    machine keeps ``load`` cores busy: the idle share, rounded, at least 1."""
    share = cores / max(1, processes)
    idle = share - load / max(1, processes)
    return max(1, min(math.floor(share), round(idle)))


@contextlib.contextmanager
def blas_threads(requested=None, library=None, environ=None, load=None):
    """Within the block NumPy's BLAS runs on the threads chosen as the module says (or
    ``requested``), and so does ``library``'s own pool where it has ``set_num_threads``
    (torch, for the example's torch twin); restored after.  Yields a line saying how many
    and why."""
    environ = os.environ if environ is None else environ
    pinned = [f"{name}={environ[name]}" for name in THREAD_VARIABLES if environ.get(name)]
    if requested is None and pinned:
        blas = threadpoolctl.ThreadpoolController().select(user_api="blas").lib_controllers
        yield f"{blas[0].num_threads if blas else '?'} BLAS threads, set by {pinned[0]}"
        return
    if requested is not None:
        threads, why = requested, "set by --threads"
    else:
        cores, source = available_cores()
        load = os.getloadavg()[0] if load is None else load
        processes = next((int(environ[name]) for name in LOCAL_WORLD_VARIABLES if environ.get(name)), 1)
        threads = choose(cores, load, processes)
        why = (f"{cores} cores by {source}, load average {load:.1f}"
               + (f", {processes} processes" if processes > 1 else "") + "; --threads N to choose")
    own = getattr(library, "set_num_threads", None)
    before = library.get_num_threads() if own is not None else None
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        if own is not None:
            own(threads)
        try:
            yield f"{threads} BLAS thread{'s' if threads != 1 else ''}: {why}"
        finally:
            if own is not None:
                own(before)
