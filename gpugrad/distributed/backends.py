"""The engines under gpugrad.distributed: MPI (mpi4py) for CPU arrays and for
rendezvous, NCCL (CuPy's ``cupy.cuda.nccl``) for GPU arrays.

Every collective takes a C-contiguous array and works in place, and returns
a :class:`Work`.  MPI starts a non-blocking operation; ``wait`` polls it up to
the timeout, so a rank that died or stopped calling collectives gives the
others a clear error instead of a hang.  NCCL enqueues on a communication
stream that first waits for the current stream; ``wait`` makes the current
stream wait for the communication (no host sync), as torch's NCCL backend does.
"""

import platform
import time

import numpy

from gpugrad import backend, dtypes

SUM, PRODUCT, MIN, MAX, AVG = "sum", "product", "min", "max", "avg"


class DistributedTimeout(RuntimeError):
    """A collective did not complete within the process group's timeout."""


class Work:
    """A started collective: ``wait()`` blocks until it is done (MPI) or orders the
    current stream after it (NCCL); ``is_completed()`` asks without waiting."""

    def __init__(self, wait, test=None, finish=None):
        self._wait, self._test, self._finish, self._done = wait, test, finish, False

    def wait(self, timeout=None):
        if not self._done:
            self._wait()
            if self._finish is not None:
                self._finish()
            self._done = True
        return True

    def is_completed(self):
        return self._done or (self._test() if self._test is not None else False)


def _contiguous_host(array, compute_dtype):
    """A C-contiguous NumPy array MPI can read and write, and how to put its result back."""
    staged = backend.is_cupy_array(array) or not array.flags.c_contiguous or array.dtype != compute_dtype
    if not staged:
        return array, None
    host = numpy.ascontiguousarray(backend.to_device(array, backend.CPU), dtype=compute_dtype)

    def back():
        array[...] = backend.to_device(host.astype(array.dtype), backend.device_of(array))
    return host, back


# the tag of the messages on an MPIBackend's second communicator that say a rank is leaving
_LEAVING = 7
# how long a collective that a leaving rank may still have completed is given to finish
_LEAVING_GRACE_SECONDS = 2.0


class MPIBackend:
    name = "mpi"

    def __init__(self, comm, timeout):
        from mpi4py import MPI  # the optional dependency, imported with the backend
        self.MPI, self.comm, self.timeout = MPI, comm, float(timeout)
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._ops = {SUM: MPI.SUM, AVG: MPI.SUM, PRODUCT: MPI.PROD, MIN: MPI.MIN, MAX: MPI.MAX}
        # a communicator of its own for the notes of ranks that leave, so that they never meet a collective
        self.exits = comm.Dup() if self.size > 1 else None
        self.left, self._notes = {}, []

    def _compute_dtype(self, dtype):
        # MPI has no half types: they travel as float32 (exact: every half value is a float32)
        return numpy.dtype(numpy.float32) if dtype in (dtypes.float16, dtypes.bfloat16) else dtype

    def _read_notes(self):
        """Record the ranks that said they are leaving (see :meth:`leave`)."""
        status = self.MPI.Status()
        while self.exits is not None and self.exits.Iprobe(source=self.MPI.ANY_SOURCE, tag=_LEAVING, status=status):
            note = bytearray(status.Get_count(self.MPI.BYTE))
            self.exits.Recv([note, self.MPI.BYTE], source=status.Get_source(), tag=_LEAVING)
            self.left[status.Get_source()] = note.decode("utf-8", "replace")
        return self.left

    def _wait(self, request, what):
        deadline = time.monotonic() + self.timeout
        polls, grace = 0, None
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                raise DistributedTimeout(
                    f"gpugrad.distributed: {what} on rank {self.rank} timed out after {self.timeout:.0f} s waiting "
                    f"for the other ranks of {self.size} (one of them may have failed, or stopped calling "
                    "collectives in the same order)")
            polls += 1
            if polls > 200:
                time.sleep(0.0005)
            if polls % 200 == 0 and (self.left or self._read_notes()):
                grace = now + _LEAVING_GRACE_SECONDS if grace is None else grace
                if now > grace:                  # what they left undone will not be done
                    rank, why = next(iter(self.left.items()))
                    raise RuntimeError(f"gpugrad.distributed: rank {rank} of {self.size} left the job ({why}) while "
                                       f"rank {self.rank} waits for it in {what}; the job cannot go on")

    def leave(self, why):
        """Tell the other ranks that this one is leaving (its process is exiting, or it left the
        group): one of them waiting for it in a collective raises at once instead of hanging."""
        if self.exits is None:
            return
        note = why.encode("utf-8")[:200]
        self._notes += [self.exits.Isend([note, self.MPI.BYTE], dest=r, tag=_LEAVING)
                        for r in range(self.size) if r != self.rank]

    def exit_together(self, timeout):
        """At exit, after :meth:`leave`: wait (up to ``timeout`` s) until every other rank has left
        too (exiting, or through destroy_process_group); False if one has not."""
        deadline = time.monotonic() + timeout
        while self.exits is not None and len(self._read_notes()) < self.size - 1:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def all_reduce(self, array, op):
        host, back = _contiguous_host(array, self._compute_dtype(array.dtype))
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self._ops[op])

        def finish():
            if op == AVG:
                host[...] = host / self.size
            if back is not None:
                back()
        return Work(lambda: self._wait(request, "all_reduce"), request.Test, finish)

    def broadcast(self, array, src):
        host, back = _contiguous_host(array, self._compute_dtype(array.dtype))
        request = self.comm.Ibcast(host, root=src)
        return Work(lambda: self._wait(request, "broadcast"), request.Test, back)

    def all_gather(self, out, array):
        """out: (size, *array.shape), contiguous, of array's dtype."""
        dtype = self._compute_dtype(array.dtype)
        host, _ = _contiguous_host(array, dtype)
        gathered, back = _contiguous_host(out, dtype)
        request = self.comm.Iallgather(host, gathered)
        return Work(lambda: self._wait(request, "all_gather"), request.Test, back)

    def barrier(self):
        request = self.comm.Ibarrier()
        return Work(lambda: self._wait(request, "barrier"), request.Test)

    def abort(self, code=1):
        self.comm.Abort(code)

    def close(self):
        pass


class NCCLBackend:
    name = "nccl"

    def __init__(self, rank, size, unique_id, device_id, timeout):
        from cupy.cuda import nccl  # CuPy's bindings, imported with the backend (CuPy is optional)
        cp = backend.cupy_module()
        self.cp, self.nccl, self.rank, self.size, self.timeout = cp, nccl, rank, size, float(timeout)
        self.device_id = device_id
        with cp.cuda.Device(device_id):
            self.comm = nccl.NcclCommunicator(size, unique_id, rank)
            self.stream = cp.cuda.Stream(non_blocking=True)
        self._types = {numpy.dtype(numpy.float16): nccl.NCCL_FLOAT16, numpy.dtype(numpy.float32): nccl.NCCL_FLOAT32,
                       numpy.dtype(numpy.float64): nccl.NCCL_FLOAT64, numpy.dtype(numpy.int32): nccl.NCCL_INT32,
                       numpy.dtype(numpy.int64): nccl.NCCL_INT64, numpy.dtype(numpy.uint8): nccl.NCCL_UINT8,
                       numpy.dtype(numpy.int8): nccl.NCCL_INT8}
        if hasattr(nccl, "NCCL_BFLOAT16"):
            self._types[dtypes.bfloat16] = nccl.NCCL_BFLOAT16
        self._ops = {SUM: nccl.NCCL_SUM, PRODUCT: nccl.NCCL_PROD, MIN: nccl.NCCL_MIN, MAX: nccl.NCCL_MAX,
                     AVG: getattr(nccl, "NCCL_AVG", nccl.NCCL_SUM)}

    @staticmethod
    def unique_id():
        from cupy.cuda import nccl  # see __init__
        return nccl.get_unique_id()

    @staticmethod
    def id_bytes(unique_id):
        """NCCL's unique id (CuPy's tuple of C chars) as the bytes the TCP store carries."""
        return bytes(c % 256 for c in unique_id)

    @staticmethod
    def id_from_bytes(data):
        """CuPy's tuple of C chars from :meth:`id_bytes` (char is unsigned on ARM, POWER and s390)."""
        if len(data) != 128:
            raise RuntimeError(f"the store handed over an NCCL unique id of {len(data)} bytes, not 128")
        if platform.machine().lower().startswith(("arm", "aarch64", "ppc", "s390")):
            return tuple(data)
        return tuple(b - 256 if b > 127 else b for b in data)

    def _type(self, array):
        if not backend.is_cupy_array(array):
            raise RuntimeError("the nccl backend works on CUDA tensors; this one is on the CPU (use the mpi backend)")
        if not array.flags.c_contiguous:
            raise RuntimeError("the nccl backend needs contiguous tensors")
        kind = self._types.get(array.dtype)
        if kind is None:
            raise RuntimeError(f"the nccl backend has no {dtypes.dtype_name(array.dtype)}")
        return kind

    def _launch(self, array, enqueue):
        """Run ``enqueue(stream)`` on the communication stream after the current
        stream's work; the returned Work orders the current stream after it."""
        cp = self.cp
        current = cp.cuda.get_current_stream()
        self.stream.wait_event(current.record())
        enqueue(self.stream.ptr)
        done = self.stream.record()
        # CuPy's Event says whether it has completed through its ``done`` property (it has no query())
        return Work(lambda: cp.cuda.get_current_stream().wait_event(done), lambda: done.done)

    def all_reduce(self, array, op):
        kind = self._type(array)
        native_avg = op != AVG or hasattr(self.nccl, "NCCL_AVG")

        def enqueue(stream):
            self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, kind, self._ops[op], stream)
        work = self._launch(array, enqueue)
        if not native_avg:
            work._finish = lambda: array.__itruediv__(self.size)
        return work

    def broadcast(self, array, src):
        kind = self._type(array)
        return self._launch(array, lambda stream: self.comm.bcast(array.data.ptr, array.size, kind, src, stream))

    def all_gather(self, out, array):
        kind = self._type(array)
        return self._launch(array, lambda stream: self.comm.allGather(array.data.ptr, out.data.ptr, array.size, kind,
                                                                      stream))

    def barrier(self):
        token = self.cp.zeros(1, dtype=numpy.float32)
        work = self.all_reduce(token, SUM)
        return Work(lambda: (work.wait(), self.stream.synchronize()))

    def abort(self, code=1):
        self.comm.abort()

    def close(self):
        self.comm.destroy()
