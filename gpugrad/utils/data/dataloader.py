"""DataLoader: batches from a dataset, with torch's arguments and collation.

With ``num_workers > 0`` batches are loaded by worker processes (forked by
default), as torch's multiprocessing iterator does: each worker has an index
queue, all answer on one data queue, at most ``prefetch_factor`` batches per
worker are in flight, and the batches come back in the sampler's order
(``in_order=False``: as they arrive).  A worker that dies (killed by a signal,
or exiting) raises a RuntimeError naming it and its signal within a fraction
of a second; ``timeout`` bounds the wait for one batch.  Workers are shut
down on every way out of a loop: the end of an epoch, ``break`` or an
exception (the iterator is dropped), garbage collection, interpreter exit,
and the parent's death (they die with it).  ``persistent_workers`` keeps them
across epochs.
"""

import atexit
import collections.abc
import itertools
import multiprocessing
import numbers
import os
import queue
import signal
import threading
import time
import warnings
import weakref

import numpy

from gpugrad import backend, dtypes
from gpugrad import random as gpugrad_random
from gpugrad.creation import as_tensor, tensor
from gpugrad.ops.shape import stack
from gpugrad.tensor import Tensor
from gpugrad.utils.data import worker
from gpugrad.utils.data.dataset import IterableDataset
from gpugrad.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler
from gpugrad.utils.data.worker import WorkerInfo, get_worker_info  # noqa: F401  (torch.utils.data's names)


def default_convert(data):
    """NumPy arrays (not of strings) to tensors, recursively (batch_size=None)."""
    if isinstance(data, numpy.ndarray) and data.dtype.kind not in "USO":
        return as_tensor(data)
    if isinstance(data, collections.abc.Mapping):
        return type(data)({k: default_convert(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(default_convert(d) for d in data)
    return data


def default_collate(batch):
    """torch's default_collate: tensors and arrays stacked along a new dim 0,
    Python numbers into a tensor (floats float64, ints int64), strings kept
    as a list, and dicts, named tuples and sequences collated field by field."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(batch, 0)
    if backend.is_array(elem) and getattr(elem, "dtype", None) is not None and elem.dtype.kind not in "USO":
        return stack([as_tensor(b) for b in batch], 0)
    if isinstance(elem, numpy.generic) and elem.dtype.kind not in "USO":
        return tensor(numpy.array(batch))
    if isinstance(elem, bool):
        return tensor(batch, dtype=dtypes.bool_)
    if isinstance(elem, numbers.Integral):
        return tensor(batch, dtype=dtypes.int64)
    if isinstance(elem, float):
        return tensor(batch, dtype=dtypes.float64)
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, collections.abc.Mapping):
        return type(elem)({key: default_collate([d[key] for d in batch]) for key in elem})
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return type(elem)(*(default_collate(samples) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        if any(len(b) != len(elem) for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(samples) for samples in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
                    f"found {type(elem)}")



# how often the parent checks its workers while it waits for a batch
_POLL_SECONDS = 0.2
# how long a worker may take to finish its batch at shutdown before it is terminated
_SHUTDOWN_GRACE_SECONDS = 1.0


class _InfiniteConstantSampler:
    """None forever: the 'indices' of an IterableDataset (its workers read their own iterators)."""

    def __iter__(self):
        return itertools.repeat(None)


class DataLoader:
    """Batches of ``dataset``: ``batch_size`` samples (None: no batching),
    ``shuffle`` (a RandomSampler drawing from ``generator``) or a ``sampler``
    / ``batch_sampler`` of one's own, ``drop_last``, ``collate_fn``
    (default_collate), and ``num_workers`` processes that load batches in
    parallel (``multiprocessing_context``: fork by default), seeded as torch's
    (``worker_init_fn(worker_id)`` runs in each, after the seeding),
    ``prefetch_factor`` batches ahead per worker, ``persistent_workers``
    across epochs, ``timeout`` seconds at most for a batch, ``pin_memory``
    (page-locked host memory where a GPU is there; a warning otherwise, as
    torch)."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.dataset, self.num_workers, self.timeout = dataset, num_workers, timeout
        self.prefetch_factor = prefetch_factor
        self.worker_init_fn, self.generator, self.pin_memory = worker_init_fn, generator, pin_memory
        self.pin_memory_device, self.persistent_workers, self.in_order = pin_memory_device, persistent_workers, in_order
        if isinstance(dataset, IterableDataset):
            if shuffle:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle option, "
                                 f"but got shuffle={shuffle}")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler and batch_sampler")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size, drop_last = None, False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with "
                             "drop_last")
        if sampler is None:
            if isinstance(dataset, IterableDataset):
                sampler = _InfiniteConstantSampler()
            else:
                sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_sampler is not None else default_convert)
        self.multiprocessing_context = multiprocessing_context
        self._iterator = None

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None

    @property
    def _index_sampler(self):
        return self.batch_sampler if self.batch_sampler is not None else self.sampler

    def __len__(self):
        if isinstance(self.dataset, IterableDataset):
            length = len(self.dataset)
            if self.batch_size is None:
                return length
            return length // self.batch_size if self.drop_last else -(-length // self.batch_size)
        return len(self._index_sampler)

    def __iter__(self):
        if self.num_workers == 0:
            return _SingleProcessIter(self)
        if not self.persistent_workers:
            return _MultiProcessIter(self)
        if self._iterator is None or self._iterator._shut_down:
            self._iterator = _MultiProcessIter(self)
        else:
            self._iterator._reset(self)
        return self._iterator


class _BaseIter:
    def __init__(self, loader):
        self._iterable = isinstance(loader.dataset, IterableDataset)
        self._auto_collation, self._drop_last = loader._auto_collation, loader.drop_last
        self._collate_fn, self._dataset = loader.collate_fn, loader.dataset
        self._pin_memory = loader.pin_memory and backend.cuda_available()
        if loader.pin_memory and not self._pin_memory:
            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then device pinned "
                          "memory won't be used.", stacklevel=3)
        # one draw from the loader's generator per iterator, as torch (the workers' base seed)
        self._base_seed = int(gpugrad_random.randint(0, 2**63 - 1, (), generator=loader.generator).item())
        self._sampler_iter = iter(loader._index_sampler)

    def __iter__(self):
        return self

    def _finish(self, data):
        return _pin(data) if self._pin_memory else data


class _SingleProcessIter(_BaseIter):
    def __init__(self, loader):
        super().__init__(loader)
        fetcher_type = worker.IterableFetcher if self._iterable else worker.MapFetcher
        self._fetcher = fetcher_type(self._dataset, self._auto_collation, self._collate_fn, self._drop_last)

    def __next__(self):
        return self._finish(self._fetcher.fetch(next(self._sampler_iter)))


_live_iterators = weakref.WeakSet()
_sigchld_installed = False


class _MultiProcessIter(_BaseIter):
    """Batches from worker processes (torch's _MultiProcessingDataLoaderIter, without its pin thread)."""

    def __init__(self, loader):
        super().__init__(loader)
        self._timeout, self._in_order, self._persistent = loader.timeout, loader.in_order, loader.persistent_workers
        self._prefetch = loader.prefetch_factor * loader.num_workers
        context = loader.multiprocessing_context or multiprocessing.get_context("fork")
        if isinstance(context, str):
            context = multiprocessing.get_context(context)
        self._shut_down, self._waiting = False, False
        self._done_event = context.Event()
        self._data_queue = context.Queue()
        self._index_queues, self._workers = [], []
        for worker_id in range(loader.num_workers):
            index_queue = context.Queue()
            index_queue.cancel_join_thread()
            process = context.Process(
                target=worker.worker_loop, daemon=True, name=f"DataLoader worker {worker_id}",
                args=(self._iterable, self._dataset, index_queue, self._data_queue, self._done_event,
                      self._auto_collation, self._collate_fn, self._drop_last, self._base_seed,
                      loader.worker_init_fn, worker_id, loader.num_workers,
                      None if context.get_start_method() == "forkserver" else os.getpid()))
            process.start()
            self._index_queues.append(index_queue)
            self._workers.append(process)
        _live_iterators.add(self)
        _watch_children()
        self._start_epoch()

    # -- bookkeeping of the tasks in flight -------------------------------------------------------
    def _start_epoch(self):
        self._send_idx = self._rcvd_idx = 0
        self._task_worker = {}                  # idx -> worker id of the tasks not yet returned
        self._early = {}                        # idx -> batches that came before their turn
        self._active = [True] * len(self._workers)
        self._cycle = itertools.cycle(range(len(self._workers)))
        for _ in range(self._prefetch):
            self._put_index()

    def _reset(self, loader):
        """A new epoch on the same (persistent) workers."""
        self._sampler_iter = iter(loader._index_sampler)
        for index_queue in self._index_queues:
            index_queue.put(worker.ResumeIteration())
        waiting = len(self._workers)
        while waiting:                                   # what the last epoch left in flight is dropped
            idx, _ = self._get()
            waiting -= isinstance(idx, worker.ResumeIteration)
        self._start_epoch()

    def _put_index(self):
        if len(self._task_worker) >= self._prefetch:
            return
        for _ in range(len(self._workers)):
            worker_id = next(self._cycle)
            if self._active[worker_id]:
                break
        else:
            return
        try:
            index = next(self._sampler_iter)
        except StopIteration:
            return
        self._index_queues[worker_id].put((self._send_idx, index))
        self._task_worker[self._send_idx] = worker_id
        self._send_idx += 1

    def __next__(self):
        while True:
            if self._shut_down:
                raise StopIteration
            # skip the tasks already returned out of order, and those an exhausted worker will not answer
            while self._rcvd_idx < self._send_idx and self._rcvd_idx not in self._early and (
                    self._rcvd_idx not in self._task_worker
                    or not self._active[self._task_worker[self._rcvd_idx]]):
                self._task_worker.pop(self._rcvd_idx, None)
                self._rcvd_idx += 1
            if self._rcvd_idx >= self._send_idx:
                if not self._persistent:
                    self._shutdown()
                raise StopIteration
            if self._rcvd_idx in self._early:
                del self._task_worker[self._rcvd_idx]
                self._rcvd_idx += 1
                return self._process(self._early.pop(self._rcvd_idx - 1))
            idx, data = self._get()
            if isinstance(idx, worker.ResumeIteration):
                continue
            if isinstance(data, worker.IterableEnd):
                self._active[data.worker_id] = False
                del self._task_worker[idx]
                self._put_index()
                continue
            if idx == self._rcvd_idx or not self._in_order:
                del self._task_worker[idx]
                if idx == self._rcvd_idx:
                    self._rcvd_idx += 1
                return self._process(data)
            self._early[idx] = data

    def _process(self, data):
        self._put_index()
        if isinstance(data, worker.ExceptionWrapper):
            data.reraise()
        return self._finish(data)

    # -- waiting for a batch: dead workers and the timeout ------------------------------------------
    def _get(self):
        deadline = time.monotonic() + self._timeout if self._timeout > 0 else None
        while True:
            wait = _POLL_SECONDS if deadline is None else max(0.0, min(_POLL_SECONDS, deadline - time.monotonic()))
            self._waiting = True
            try:
                return self._data_queue.get(timeout=wait)
            except queue.Empty:
                pass
            finally:
                self._waiting = False
            self._check_workers()
            if deadline is not None and time.monotonic() >= deadline:
                raise RuntimeError(f"DataLoader timed out after {self._timeout} seconds")

    def _check_workers(self):
        """Raise if a worker died: which one, and by which signal or exit code."""
        for worker_id, process in enumerate(self._workers):
            code = process.exitcode
            if code is None:
                continue
            self._shutdown()
            if code < 0:
                how = f"is killed by signal: {signal.strsignal(-code)} ({signal.Signals(-code).name})"
            else:
                how = f"exited unexpectedly with exit code {code}"
            raise RuntimeError(f"DataLoader worker {worker_id} (pid {process.pid}) {how}. Its batch is lost; if it "
                               "was killed for memory, try fewer workers or smaller batches.")

    # -- shutting down --------------------------------------------------------------------------
    def _shutdown(self):
        if self._shut_down:
            return
        self._shut_down = True
        _live_iterators.discard(self)
        self._done_event.set()
        for index_queue in self._index_queues:
            try:
                index_queue.put(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + _SHUTDOWN_GRACE_SECONDS
        for process in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in self._workers:
            if process.exitcode is None:
                process.terminate()
                process.join(_SHUTDOWN_GRACE_SECONDS)
            if process.exitcode is None:
                process.kill()
                process.join()
        for index_queue in self._index_queues:
            index_queue.close()
        self._data_queue.cancel_join_thread()
        self._data_queue.close()

    def __del__(self):
        try:
            self._shutdown()
        except Exception:        # at interpreter shutdown modules may be half torn down
            pass


@atexit.register
def _shutdown_all():
    for iterator in list(_live_iterators):
        iterator._shutdown()


def _watch_children():
    """A SIGCHLD handler (main thread, once): a worker that dies while the parent waits for a batch
    raises at once, even when the parent is blocked reading a message the worker left half written."""
    global _sigchld_installed
    if _sigchld_installed or threading.current_thread() is not threading.main_thread() or not hasattr(signal,
                                                                                                     "SIGCHLD"):
        return
    previous = signal.getsignal(signal.SIGCHLD)

    def handler(signum, frame):
        for iterator in list(_live_iterators):
            if iterator._waiting:
                iterator._waiting = False
                iterator._check_workers()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGCHLD, handler)
    _sigchld_installed = True


def _pin(data):
    """``data`` with its CPU tensors copied to page-locked memory (torch's pin_memory of a batch)."""
    if isinstance(data, Tensor):
        return Tensor._make(backend.pinned(data.array)) if data.device.type == "cpu" else data
    if isinstance(data, collections.abc.Mapping):
        return type(data)({k: _pin(v) for k, v in data.items()})
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(_pin(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(_pin(d) for d in data)
    return data
