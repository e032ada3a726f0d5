"""What runs inside a DataLoader worker process (torch's
``torch.utils.data._utils.worker``): its seeding, :func:`get_worker_info`,
the fetchers that turn indices into batches, and the loop that serves the
parent's index queue.

Each worker seeds Python's ``random``, NumPy's global generator and
gpugrad's CPU generator from the iterator's base seed plus its id, as torch
does, so workers draw different numbers and every epoch new ones.  A worker
dies with its parent (Linux: the kernel kills it when the parent exits, even
by SIGKILL; elsewhere it notices within a second), and leaves when the parent
sends None or sets the done event.
"""

import ctypes
import dataclasses
import os
import queue
import random as python_random
import signal
import sys
import traceback

import numpy

from gpugrad import random as gpugrad_random

# how often an idle worker checks that its parent lives
STATUS_CHECK_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What a DataLoader worker process knows of itself (torch's fields):
    ``id`` (0 to num_workers - 1), ``num_workers``, ``seed`` (of this worker's
    gpugrad and Python random streams) and its copy of the ``dataset``."""

    id: int
    num_workers: int
    seed: int
    dataset: object


_info = None


def get_worker_info():
    """This worker's :class:`WorkerInfo` inside a DataLoader worker process
    (from ``worker_init_fn`` on), None in the main process."""
    return _info


class ExceptionWrapper:
    """An exception raised in a worker, carried to the parent (its traceback as text)."""

    def __init__(self, where):
        kind, value, tb = sys.exc_info()
        self.kind, self.where = kind, where
        self.message = "".join(traceback.format_exception(kind, value, tb))

    def reraise(self):
        """Raise the worker's exception type in the parent, with the worker's traceback (as torch)."""
        message = f"Caught {self.kind.__name__} {self.where}.\nOriginal {self.message}"
        try:
            error = self.kind(message)
        except Exception:
            raise RuntimeError(message) from None
        raise error


@dataclasses.dataclass(frozen=True)
class IterableEnd:
    """A worker's answer once its copy of an IterableDataset is exhausted."""

    worker_id: int


class ResumeIteration:
    """Sent to persistent workers at a new epoch; they answer (it, None)."""


class MapFetcher:
    """Batches of a map-style dataset: ``fetch(indices)``."""

    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.dataset, self.auto_collation, self.collate_fn = dataset, auto_collation, collate_fn

    def fetch(self, index):
        if not self.auto_collation:
            return self.collate_fn(self.dataset[index])
        getitems = getattr(self.dataset, "__getitems__", None)
        return self.collate_fn(getitems(index) if getitems else [self.dataset[i] for i in index])


class IterableFetcher:
    """Batches of an IterableDataset (one pass of its iterator); StopIteration at its end."""

    def __init__(self, dataset, auto_collation, collate_fn, drop_last):
        self.iterator, self.ended = iter(dataset), False
        self.auto_collation, self.collate_fn, self.drop_last = auto_collation, collate_fn, drop_last

    def fetch(self, index):
        if self.ended:
            raise StopIteration
        if not self.auto_collation:
            return self.collate_fn(next(self.iterator))
        data = []
        for _ in index:
            try:
                data.append(next(self.iterator))
            except StopIteration:
                self.ended = True
                break
        if not data or (self.drop_last and len(data) < len(index)):
            raise StopIteration
        return self.collate_fn(data)


def seed_streams(base_seed, worker_id):
    """Seed this worker's Python, NumPy and gpugrad (CPU) streams; returns gpugrad's and Python's seed."""
    seed = base_seed + worker_id
    python_random.seed(seed)
    gpugrad_random.default_generator.manual_seed(seed)
    numpy.random.seed(numpy.random.SeedSequence([worker_id, base_seed]).generate_state(4))
    return seed


def _die_with_parent(parent_pid):
    """Ask the kernel to kill this process when its parent dies (Linux's PR_SET_PDEATHSIG); the
    parent's pid, which an idle worker watches.  ``parent_pid`` is the DataLoader's process (None
    under forkserver, whose server is the parent, and ends when the DataLoader's process does)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)     # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    parent = os.getppid()
    if parent_pid is not None and parent != parent_pid:                   # it died before we asked
        os._exit(0)
    return parent


def worker_loop(iterable, dataset, index_queue, data_queue, done_event, auto_collation, collate_fn, drop_last,
                base_seed, init_fn, worker_id, num_workers, parent_pid):
    """A worker's life: seed, run ``init_fn``, then answer each (idx, indices)
    from ``index_queue`` with (idx, batch) on ``data_queue`` until None."""
    global _info
    try:
        parent_pid = _die_with_parent(parent_pid)
        seed = seed_streams(base_seed, worker_id)
        _info = WorkerInfo(worker_id, num_workers, seed, dataset)
        fetcher_type = IterableFetcher if iterable else MapFetcher
        where = f"in DataLoader worker process {worker_id}"
        init_error, fetcher = None, None
        try:
            if init_fn is not None:
                init_fn(worker_id)
            fetcher = fetcher_type(dataset, auto_collation, collate_fn, drop_last)
        except Exception:
            init_error = ExceptionWrapper(where)
        ended = False
        while True:
            try:
                task = index_queue.get(timeout=STATUS_CHECK_INTERVAL)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    break
                continue
            if isinstance(task, ResumeIteration):
                data_queue.put((task, None))
                ended = False
                if iterable and init_error is None:
                    fetcher = fetcher_type(dataset, auto_collation, collate_fn, drop_last)   # a new pass
                continue
            if task is None:
                break
            if done_event.is_set() or ended:
                continue
            idx, index = task
            if init_error is not None:
                data, init_error = init_error, None
            else:
                try:
                    data = fetcher.fetch(index)
                except Exception as error:
                    if iterable and isinstance(error, StopIteration):
                        data, ended = IterableEnd(worker_id), True
                    else:
                        data = ExceptionWrapper(where)
            data_queue.put((idx, data))
            del data, idx, index, task
    except KeyboardInterrupt:       # Ctrl-C reaches the whole process group: the parent handles it
        pass
    if done_event.is_set():
        data_queue.cancel_join_thread()      # nobody will read what is still queued: do not wait to flush it
        data_queue.close()
