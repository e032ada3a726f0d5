"""Data-parallel training across processes, with torch.distributed's names.

Two engines do the communication: MPI through ``mpi4py`` (CPU tensors, and
CUDA tensors staged through the host; ``pip install mpi4py mpich`` gives a
working ``mpiexec``) and NCCL through CuPy (CUDA tensors, on a communication
stream ordered after the current one).  A process group is formed by
``init_process_group``: its rank and world size come from MPI when the
processes were started by ``mpiexec`` (``python -m gpugrad.distributed.run``
does that), or from torchrun-style environment variables (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), in which case NCCL's unique
id goes through a :class:`TCPStore`.

Collectives work in place on tensors: ``all_reduce``, ``broadcast``,
``all_gather``, ``barrier``.  Each one waits at most the group's ``timeout``
for the other ranks and then raises :class:`DistributedTimeout`; an uncaught
exception on one rank aborts the MPI job, so the others end too.  A rank
whose process exits (status 0 or not) or that leaves the group while the
others still train tells them so (mpi backend): one waiting for it in a
collective raises within seconds, naming it, and the job fails; at a normal
end every rank waits for the others to leave too.  Under
``python -m gpugrad.distributed.run`` even a rank that vanishes without
Python's exit (``os._exit(0)``, which MPICH's mpiexec reports as a success
after killing the others) fails the job.
"""

import atexit
import contextlib
import datetime
import os
import sys
import time
import traceback

from gpugrad import backend as arrays
from gpugrad.distributed import backends as engines
from gpugrad.distributed.backends import (
    AVG,
    MAX,
    MIN,
    PRODUCT,
    SUM,
    DistributedTimeout,
    Work,
)
from gpugrad.distributed.store import TCPStore
from gpugrad.tensor import Tensor

__all__ = [
    "init_process_group",
    "destroy_process_group",
    "is_initialized",
    "is_available",
    "get_rank",
    "get_world_size",
    "get_backend",
    "all_reduce",
    "broadcast",
    "all_gather",
    "barrier",
    "ReduceOp",
    "Work",
    "TCPStore",
    "DistributedTimeout",
    "is_mpi_available",
    "is_nccl_available",
]

DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)


class ReduceOp:
    """How all_reduce combines: SUM, PRODUCT, MIN, MAX, AVG."""

    SUM, PRODUCT, MIN, MAX, AVG = SUM, PRODUCT, MIN, MAX, AVG


class _World:
    engine = None          # MPIBackend or NCCLBackend
    rank = 0
    size = 1
    store = None
    previous_hook = None
    timeout = DEFAULT_TIMEOUT.total_seconds()
    exit_hook = False      # _leave_at_exit registered


_world = _World()


def is_available():
    return True


def is_mpi_available():
    try:
        import mpi4py  # noqa: F401  (optional: probed, not used)
    except ImportError:
        return False
    return True


def is_nccl_available():
    if not arrays.cuda_available():
        return False
    try:
        from cupy.cuda import nccl  # CuPy is optional: probed here
    except ImportError:
        return False
    return nccl.available if hasattr(nccl, "available") else True


def is_initialized():
    return _world.engine is not None


def _require():
    if _world.engine is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")
    return _world.engine


def _seconds(timeout):
    if timeout is None:
        return DEFAULT_TIMEOUT.total_seconds()
    return timeout.total_seconds() if isinstance(timeout, datetime.timedelta) else float(timeout)


def _mpi_world():
    """MPI's COMM_WORLD when mpi4py is there (a singleton world without mpiexec)."""
    try:
        from mpi4py import MPI  # optional: only when a group is formed
    except ImportError:
        return None
    return MPI.COMM_WORLD


def _rendezvous_address(init_method):
    """(host, port) of the TCP rendezvous named by ``init_method``."""
    if init_method is None or init_method == "env://":
        return os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500"))
    if isinstance(init_method, str) and init_method.startswith("tcp://"):
        host, _, port = init_method[len("tcp://"):].rpartition(":")
        if host and port.isdigit():
            return host.strip("[]"), int(port)
    raise ValueError(f"init_method {init_method!r}: gpugrad understands 'env://' and 'tcp://host:port'")


def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                       device_id=None):
    """Form the default process group.  ``backend``: "nccl" (CUDA tensors),
    "mpi" (CPU tensors; "gloo" is taken as "mpi"), or None (nccl when CUDA is
    usable, else mpi).  ``timeout`` (a timedelta or seconds, 30 minutes by
    default) bounds every collective's wait for the other ranks.
    ``init_method``: "env://" (the default: MASTER_ADDR and MASTER_PORT) or
    "tcp://host:port", where the nccl backend meets when MPI did not start
    the processes."""
    if _world.engine is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    name = backend or ("nccl" if is_nccl_available() else "mpi")
    name = "mpi" if name == "gloo" else name
    if name not in ("mpi", "nccl"):
        raise ValueError(f"Invalid backend: '{name}' (gpugrad has 'nccl' and 'mpi')")
    seconds = _seconds(timeout)
    address = _rendezvous_address(init_method)
    env_rank, env_size = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    comm = _mpi_world()
    if name == "mpi":
        if comm is None:
            raise RuntimeError("the mpi backend needs mpi4py (pip install 'gpugrad[distributed]', which brings "
                               "mpi4py and MPICH's mpiexec)")
        if env_size is not None and int(env_size) != comm.Get_size():
            raise RuntimeError(f"WORLD_SIZE={env_size} but MPI sees {comm.Get_size()} process(es): the mpi backend "
                               "needs its processes started by mpiexec (python -m gpugrad.distributed.run does)")
        engine = engines.MPIBackend(comm, seconds)
    else:
        if comm is not None and comm.Get_size() > 1:          # started by mpiexec: MPI is the rendezvous
            group_rank, group_size = comm.Get_rank(), comm.Get_size()
            uid = engines.NCCLBackend.unique_id() if group_rank == 0 else None
            uid = comm.bcast(uid, root=0)
        else:
            group_rank = rank if rank >= 0 else int(env_rank or 0)
            group_size = world_size if world_size > 0 else int(env_size or 1)
            if group_size > 1:
                store = store or TCPStore(*address, group_size, is_master=group_rank == 0, timeout=seconds)
                if group_rank == 0:
                    store.set("nccl_unique_id", engines.NCCLBackend.id_bytes(engines.NCCLBackend.unique_id()))
                uid = engines.NCCLBackend.id_from_bytes(store.get("nccl_unique_id"))
                _world.store = store
            else:
                uid = engines.NCCLBackend.unique_id()
        local = int(os.environ.get("LOCAL_RANK", group_rank))
        device = device_id if device_id is not None else local % backend_device_count()
        engine = engines.NCCLBackend(group_rank, group_size, uid, device, seconds)
    _world.engine, _world.rank, _world.size, _world.timeout = engine, engine.rank, engine.size, seconds
    if engine.size > 1 and comm is not None and comm.Get_size() > 1:
        _install_abort_hook(comm)
    if not _world.exit_hook:
        atexit.register(_leave_at_exit)
        _world.exit_hook = True
    _run_marker("started")


def _run_marker(what):
    """Under python -m gpugrad.distributed.run (GPUGRAD_RUN_DIR), note that this rank started or
    ended cleanly: the launcher fails a job whose rank vanished without ending (os._exit in the
    middle of training), which MPI's launcher would report as a success."""
    folder = os.environ.get("GPUGRAD_RUN_DIR")
    if folder and _world.engine is not None:
        with contextlib.suppress(OSError):
            with open(os.path.join(folder, f"rank{_world.rank}.{what}"), "w"):
                pass


def _leave_at_exit():
    """A rank whose process exits while still in the group tells the others (one waiting for it
    raises at once: the job fails instead of hanging or ending as a success), then waits for
    them to leave too: a rank that leaves early ends the job with an error."""
    engine = _world.engine
    if engine is None:
        return
    if not hasattr(engine, "leave"):         # nccl: no host-side channel to tell the others
        _run_marker("ended")
        return
    engine.leave("its process is exiting")
    if engine.exit_together(_world.timeout):
        _run_marker("ended")
        return
    sys.stderr.write(f"[gpugrad.distributed rank {engine.rank} of {engine.size}] exiting, but the other ranks did not "
                     f"end within {_world.timeout:.0f} s; aborting the job\n")
    sys.stderr.flush()
    engine.abort(1)


def backend_device_count():
    cp = arrays.cupy_module()
    return cp.cuda.runtime.getDeviceCount()


def _install_abort_hook(comm):
    """An uncaught exception on this rank prints its traceback and aborts the
    MPI job, so the other ranks do not wait for it."""
    previous = sys.excepthook
    _world.previous_hook = previous

    def hook(kind, value, tb):
        sys.stderr.write(f"[gpugrad.distributed rank {comm.Get_rank()} of {comm.Get_size()}] uncaught "
                         f"{kind.__name__}; aborting the job\n")
        traceback.print_exception(kind, value, tb)
        sys.stderr.flush()
        # mpiexec forwards output asynchronously and drops what it has not read when the job
        # is aborted: give it a moment to pass this traceback on
        time.sleep(0.5)
        comm.Abort(1)
    sys.excepthook = hook


def destroy_process_group(group=None):
    """Leave the default process group (a later init_process_group may form a new one)."""
    _group(group)
    engine = _require()
    if hasattr(engine, "leave"):
        engine.leave("it called destroy_process_group")
    _run_marker("ended")
    engine.close()
    if _world.store is not None:
        _world.store.close()
    if _world.previous_hook is not None:
        sys.excepthook = _world.previous_hook
    _world.engine, _world.rank, _world.size, _world.store, _world.previous_hook = None, 0, 1, None, None


def get_rank(group=None):
    _group(group)
    _require()
    return _world.rank


def get_world_size(group=None):
    _group(group)
    _require()
    return _world.size


def get_backend(group=None):
    _group(group)
    return _require().name


def _group(group):
    if group is not None:
        raise NotImplementedError("gpugrad.distributed has the default group only (group=None)")


def _array(tensor, name):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(tensor).__name__}")
    return tensor.array


def _finish(work, async_op, tensors):
    for t in tensors:
        t.increment_version()
    if async_op:
        return work
    work.wait()
    return None


def all_reduce(tensor, op=ReduceOp.SUM, group=None, async_op=False):
    """Combine ``tensor`` over the ranks, in place (every rank gets the result)."""
    _group(group)
    engine = _require()
    if op not in (SUM, PRODUCT, MIN, MAX, AVG):
        raise ValueError(f"all_reduce: unknown op {op!r}")
    return _finish(engine.all_reduce(_array(tensor, "all_reduce"), op), async_op, [tensor])


def broadcast(tensor, src, group=None, async_op=False):
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor``."""
    _group(group)
    engine = _require()
    if not 0 <= src < _world.size:
        raise ValueError(f"broadcast: src {src} is not a rank of a world of {_world.size}")
    return _finish(engine.broadcast(_array(tensor, "broadcast"), src), async_op, [tensor])


def all_gather(tensor_list, tensor, group=None, async_op=False):
    """Fill ``tensor_list`` (one tensor per rank, of ``tensor``'s shape) with every rank's ``tensor``."""
    _group(group)
    engine = _require()
    array = _array(tensor, "all_gather")
    if len(tensor_list) != _world.size or any(t.shape != tensor.shape for t in tensor_list):
        raise ValueError(f"all_gather: expected {_world.size} tensors of shape {list(tensor.shape)}")
    xp = arrays.xp_for(array)
    out = xp.empty((_world.size,) + array.shape, dtype=array.dtype)
    work = engine.all_gather(out, xp.ascontiguousarray(array))

    def scatter():
        for i, t in enumerate(tensor_list):
            t.array[...] = out[i]
    work._finish = (lambda previous=work._finish: (previous() if previous else None, scatter()))
    return _finish(work, async_op, tensor_list)


def barrier(group=None, async_op=False, device_ids=None):
    """Wait until every rank has called barrier."""
    _group(group)
    return _finish(_require().barrier(), async_op, [])
