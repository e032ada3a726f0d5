"""DataLoader: batches from a dataset, with torch's arguments and collation."""

import collections.abc
import dataclasses
import multiprocessing
import numbers
import random as python_random

import numpy

from gpugrad import backend, dtypes
from gpugrad import random as gpugrad_random
from gpugrad.creation import as_tensor, tensor
from gpugrad.ops.shape import stack
from gpugrad.tensor import Tensor
from gpugrad.utils.data.dataset import IterableDataset
from gpugrad.utils.data.sampler import BatchSampler, RandomSampler, SequentialSampler


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


_worker_state = {}


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """What a DataLoader worker process knows of itself (torch's fields):
    ``id`` (0 to num_workers - 1), ``num_workers``, ``seed`` (of this worker's
    gpugrad and Python random streams) and its copy of the ``dataset``."""

    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info():
    """This worker's :class:`WorkerInfo` inside a DataLoader worker process
    (from ``worker_init_fn`` on), None in the main process."""
    return _worker_state.get("info")


def _worker_start(dataset, collate_fn, worker_init_fn, counter, num_workers, base_seed):
    with counter.get_lock():
        worker_id = counter.value
        counter.value += 1
    # each worker its own random streams, as torch (forked workers would otherwise repeat the parent's)
    seed = base_seed + worker_id
    gpugrad_random.manual_seed(seed)
    python_random.seed(seed)
    _worker_state.update(dataset=dataset, collate_fn=collate_fn,
                         info=WorkerInfo(worker_id, num_workers, seed, dataset))
    if worker_init_fn is not None:
        worker_init_fn(worker_id)


def _worker_fetch(indices):
    dataset, collate_fn = _worker_state["dataset"], _worker_state["collate_fn"]
    return collate_fn([dataset[i] for i in indices])


class DataLoader:
    """Batches of ``dataset``: ``batch_size`` samples (None: no batching),
    ``shuffle`` (a RandomSampler drawing from ``generator``) or a ``sampler``
    / ``batch_sampler`` of one's own, ``drop_last``, ``collate_fn``
    (default_collate), and ``num_workers`` processes that load batches in
    parallel (forked, in order)."""

    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None, num_workers=0,
                 collate_fn=None, pin_memory=False, drop_last=False, timeout=0, worker_init_fn=None,
                 multiprocessing_context=None, generator=None, *, prefetch_factor=None, persistent_workers=False,
                 pin_memory_device="", in_order=True):
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable "
                             "multiprocessing.")
        self.dataset, self.num_workers, self.timeout = dataset, num_workers, timeout
        self.worker_init_fn, self.generator, self.pin_memory = worker_init_fn, generator, pin_memory
        self.prefetch_factor = 2 if prefetch_factor is None and num_workers else prefetch_factor
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
        if sampler is None and not isinstance(dataset, IterableDataset):
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and sampler is not None:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size, self.drop_last = batch_size, drop_last
        self.sampler, self.batch_sampler = sampler, batch_sampler
        self.collate_fn = collate_fn if collate_fn is not None else (
            default_collate if batch_size is not None or batch_sampler is not None else default_convert)
        self.multiprocessing_context = multiprocessing_context

    def __len__(self):
        if isinstance(self.dataset, IterableDataset):
            length = len(self.dataset)
            if self.batch_size is None:
                return length
            return length // self.batch_size if self.drop_last else -(-length // self.batch_size)
        return len(self.batch_sampler) if self.batch_sampler is not None else len(self.sampler)

    def _iterable_batches(self):
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __iter__(self):
        if isinstance(self.dataset, IterableDataset):
            return self._iterable_batches()
        if self.batch_sampler is None:
            return (self.collate_fn(self.dataset[i]) for i in self.sampler)
        if self.num_workers == 0:
            return (self.collate_fn([self.dataset[i] for i in indices]) for indices in self.batch_sampler)
        return self._parallel()

    def _parallel(self):
        context = self.multiprocessing_context or multiprocessing.get_context("fork")
        if isinstance(context, str):
            context = multiprocessing.get_context(context)
        counter = context.Value("i", 0)
        base_seed = int(gpugrad_random.randint(0, 2 ** 62, (), generator=self.generator).item())
        with context.Pool(self.num_workers, initializer=_worker_start,
                          initargs=(self.dataset, self.collate_fn, self.worker_init_fn, counter, self.num_workers,
                                    base_seed)) as pool:
            results = pool.imap(_worker_fetch, iter(self.batch_sampler), chunksize=1)
            for batch in results:
                yield batch
