"""gpugrad/utils/data: datasets, samplers and the DataLoader, as torch.utils.data."""

import os
import pathlib
import random as python_random
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy
import pytest
import torch

import gpugrad
from gpugrad.utils.data import (
    BatchSampler,
    ConcatDataset,
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    SubsetRandomSampler,
    TensorDataset,
    WeightedRandomSampler,
    default_collate,
    random_split,
)


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"x": numpy.array([i, i * i], dtype=numpy.float32), "label": i % 3, "name": f"item{i}"}


def test_tensor_dataset_and_batches_like_torch():
    x = numpy.arange(20.0, dtype=numpy.float32).reshape(10, 2)
    y = numpy.arange(10)
    ours = DataLoader(TensorDataset(gpugrad.tensor(x), gpugrad.tensor(y)), batch_size=4)
    theirs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(x), torch.tensor(y)),
                                         batch_size=4)
    assert len(ours) == len(theirs) == 3
    for (xb, yb), (txb, tyb) in zip(ours, theirs):
        assert xb.tolist() == txb.tolist() and yb.tolist() == tyb.tolist() and yb.dtype == gpugrad.int64
    assert len(DataLoader(TensorDataset(gpugrad.tensor(x)), batch_size=4, drop_last=True)) == 2


def test_default_collate_as_torch():
    batch = [Squares(4)[i] for i in range(3)]
    ours = default_collate(batch)
    theirs = torch.utils.data.default_collate(batch)
    assert ours["x"].tolist() == theirs["x"].tolist() and ours["label"].tolist() == theirs["label"].tolist()
    assert ours["label"].dtype == gpugrad.int64 and ours["name"] == theirs["name"]
    floats = default_collate([1.5, 2.5])
    assert floats.dtype == gpugrad.float64 and floats.tolist() == [1.5, 2.5]
    pairs = default_collate([(1, 2.0), (3, 4.0)])
    assert [p.tolist() for p in pairs] == [[1, 3], [2.0, 4.0]]


def test_shuffle_with_a_generator_is_reproducible_and_a_permutation():
    data = TensorDataset(gpugrad.arange(50))
    first = [b[0].tolist() for b in DataLoader(data, batch_size=8, shuffle=True,
                                               generator=gpugrad.Generator().manual_seed(7))]
    again = [b[0].tolist() for b in DataLoader(data, batch_size=8, shuffle=True,
                                               generator=gpugrad.Generator().manual_seed(7))]
    assert first == again
    flat = [i for batch in first for i in batch]
    assert sorted(flat) == list(range(50)) and flat != list(range(50))


def test_samplers_collate_fn_and_errors():
    data = TensorDataset(gpugrad.arange(10))
    loader = DataLoader(data, batch_size=3, sampler=SequentialSampler(data), collate_fn=lambda b: len(b))
    assert list(loader) == [3, 3, 3, 1]
    assert list(BatchSampler(range(5), 2, drop_last=True)) == [[0, 1], [2, 3]]
    subset = sorted(SubsetRandomSampler([1, 5, 7]))
    assert subset == [1, 5, 7]
    weighted = list(WeightedRandomSampler([0.0, 1.0, 0.0], 20))
    assert weighted == [1] * 20
    drawn = list(RandomSampler(range(4), replacement=True, num_samples=100,
                               generator=gpugrad.Generator().manual_seed(1)))
    assert len(drawn) == 100 and set(drawn) <= {0, 1, 2, 3}
    with pytest.raises(ValueError, match="mutually exclusive with shuffle"):
        DataLoader(data, sampler=SequentialSampler(data), shuffle=True)
    with pytest.raises(ValueError, match="batch_sampler option is mutually exclusive"):
        DataLoader(data, batch_sampler=BatchSampler(range(10), 2, False), batch_size=3)
    batches = [b[0].tolist() for b in DataLoader(data, batch_sampler=BatchSampler(range(10), 4, False))]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert [x[0].item() for x in DataLoader(data, batch_size=None)][:3] == [0, 1, 2]


def test_subset_concat_and_random_split():
    data = TensorDataset(gpugrad.arange(10))
    both = ConcatDataset([Subset(data, [1, 2]), Subset(data, [5])]) + Subset(data, [9])
    assert len(both) == 4 and [both[i][0].item() for i in range(4)] == [1, 2, 5, 9] and both[-1][0].item() == 9
    parts = random_split(data, [0.5, 0.3, 0.2], generator=gpugrad.Generator().manual_seed(0))
    assert [len(p) for p in parts] == [5, 3, 2]
    seen = sorted(p[i][0].item() for p in parts for i in range(len(p)))
    assert seen == list(range(10))
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(data, [3, 3])


def test_iterable_dataset_and_workers():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter(range(7))

        def __len__(self):
            return 7
    assert [b.tolist() for b in DataLoader(Stream(), batch_size=3)] == [[0, 1, 2], [3, 4, 5], [6]]
    data = Squares(11)
    serial = [b["x"].tolist() for b in DataLoader(data, batch_size=4)]
    parallel = [b["x"].tolist() for b in DataLoader(data, batch_size=4, num_workers=2)]
    assert serial == parallel


class _WhoLoads(Dataset):
    """Each sample says which worker loaded it and a draw from that worker's streams."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        info = gpugrad.utils.data.get_worker_info()
        if info is None:
            return [index, -1, 0, 0, 0.0]
        assert isinstance(info.dataset, _WhoLoads)
        return [index, info.id, info.num_workers, info.seed, gpugrad.rand(()).item()]


def test_get_worker_info_inside_workers_only():
    data = _WhoLoads()
    assert gpugrad.utils.data.get_worker_info() is None
    assert [row[1] for row in DataLoader(data, batch_size=None)] == [-1] * 8
    rows = [[v.item() for v in sample] for batch in DataLoader(data, batch_size=2, num_workers=2)
            for sample in zip(*batch)]
    assert [int(r[0]) for r in rows] == list(range(8))
    assert {int(r[1]) for r in rows} == {0, 1} and {int(r[2]) for r in rows} == {2}
    seeds = {int(r[1]): int(r[3]) for r in rows}
    assert seeds[1] == seeds[0] + 1                       # base seed + worker id, as torch
    draws = [r[4] for r in rows]
    assert len(set(draws)) == len(draws)                  # the workers' streams differ
    assert gpugrad.utils.data.get_worker_info() is None


# -- worker processes: seeding, prefetching, persistence (torch's semantics) ---------------------------

class _Draws(Dataset):
    """Each sample: one draw from Python's random, NumPy's global generator and gpugrad's."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return [python_random.random(), numpy.random.rand(), gpugrad.rand(()).item()]


def _draws(loader):
    return [[round(float(v), 12) for v in sample] for batch in loader for sample in zip(*batch)]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_draw_their_own_numbers_and_new_ones_each_epoch(workers):
    """Every stream (Python, NumPy, gpugrad) differs between workers and epochs;
    a seeded loader generator replays them."""
    loader = DataLoader(_Draws(), batch_size=2, num_workers=workers)
    first, second = _draws(loader), _draws(loader)
    for stream in range(3):
        column = [row[stream] for row in first]
        assert len(set(column)) == len(column), (stream, column)          # no two workers alike
        assert {row[stream] for row in second}.isdisjoint(column)          # nor two epochs
    seeded = [_draws(DataLoader(_Draws(), batch_size=2, num_workers=workers,
                                generator=gpugrad.Generator().manual_seed(11))) for _ in range(2)]
    assert seeded[0] == seeded[1]
    persistent = DataLoader(_Draws(), batch_size=2, num_workers=workers, persistent_workers=True)
    epochs = [_draws(persistent) for _ in range(2)]
    assert {row[1] for row in epochs[0]}.isdisjoint(row[1] for row in epochs[1])   # the streams go on


class _Halves:
    """torch's documented pattern: each worker takes its share of the range."""

    def __init__(self, start, end, get_worker_info):
        self.start, self.end, self.get_worker_info = start, end, get_worker_info

    def __iter__(self):
        info = self.get_worker_info()
        if info is None:
            return iter(range(self.start, self.end))
        per = -(-(self.end - self.start) // info.num_workers)
        lo = self.start + info.id * per
        return iter(range(lo, min(lo + per, self.end)))


class _OurHalves(_Halves, IterableDataset):
    pass


class _TheirHalves(_Halves, torch.utils.data.IterableDataset):
    pass


@pytest.mark.parametrize("workers,batch_size,drop_last", [(2, 3, False), (1, 2, True), (2, None, False)])
def test_iterable_datasets_split_by_worker_info_as_torch(workers, batch_size, drop_last):
    ours = DataLoader(_OurHalves(3, 20, gpugrad.utils.data.get_worker_info), batch_size=batch_size,
                      num_workers=workers, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(_TheirHalves(3, 20, torch.utils.data.get_worker_info), batch_size=batch_size,
                                         num_workers=workers, drop_last=drop_last)
    assert [getattr(b, "tolist", lambda b=b: b)() for b in ours] == [getattr(b, "tolist", lambda b=b: b)()
                                                                      for b in theirs]


def _init_seeds(worker_id):
    info = gpugrad.utils.data.get_worker_info()
    assert info.id == worker_id
    gpugrad.manual_seed(1000 + worker_id)          # a worker_init_fn may reseed; it runs after the loader's seeding


def test_worker_init_fn_runs_in_each_worker_after_the_seeding():
    loader = DataLoader(_WhoLoads(), batch_size=2, num_workers=2, worker_init_fn=_init_seeds)
    rows = [[v.item() for v in sample] for batch in loader for sample in zip(*batch)]
    for worker_id in (0, 1):
        draws = [r[4] for r in rows if int(r[1]) == worker_id]
        expected = gpugrad.rand(len(draws), generator=gpugrad.Generator().manual_seed(1000 + worker_id)).tolist()
        assert draws == pytest.approx(expected, abs=1e-7)


class _Logged(torch.utils.data.Sampler):
    """A batch sampler that counts the batches the loader has asked for."""

    def __init__(self, batches, log):
        self.batches, self.log = batches, log

    def __iter__(self):
        for b in range(self.batches):
            self.log.append(b)
            yield [2 * b, 2 * b + 1]

    def __len__(self):
        return self.batches


@pytest.mark.parametrize("workers,prefetch", [(2, 3), (1, 1), (2, 1)])
def test_prefetch_factor_asks_the_sampler_as_torch(workers, prefetch):
    """When each batch reaches the loop, as many batches have been asked of the sampler as in torch."""
    data = list(range(40))
    seen = {}
    for name, module in (("ours", gpugrad.utils.data), ("theirs", torch.utils.data)):
        log = []
        loader = module.DataLoader(data, batch_sampler=_Logged(12, log), num_workers=workers,
                                   prefetch_factor=prefetch)
        seen[name] = [(b.tolist(), len(log)) for b in loader]
    assert seen["ours"] == seen["theirs"]
    assert seen["ours"][0][1] == workers * prefetch + 1          # the batch handed out was replaced first
    unordered = DataLoader(data, batch_size=4, num_workers=2, in_order=False)
    assert sorted(i for b in unordered for i in b.tolist()) == data


class _Pids(Dataset):
    def __len__(self):
        return 6

    def __getitem__(self, index):
        return os.getpid()


def test_persistent_workers_live_across_epochs_and_after_a_break():
    persistent = DataLoader(_Pids(), batch_size=2, num_workers=2, persistent_workers=True)
    epochs = []
    for _ in range(2):
        epochs.append({p for b in persistent for p in b.tolist()})
    for b in persistent:                      # a broken-off epoch: what it left in flight is dropped
        break
    epochs.append({p for b in persistent for p in b.tolist()})
    assert len(epochs[0]) == 2 and epochs[0] == epochs[1] == epochs[2] and os.getpid() not in epochs[0]
    assert len([b for b in persistent]) == 3
    fresh = DataLoader(_Pids(), batch_size=2, num_workers=2)
    assert {p for b in fresh for p in b.tolist()}.isdisjoint(p for b in fresh for p in b.tolist())


def test_workers_started_by_forkserver():
    """The workers' parent is then the fork server, not this process: they must not take that for its death."""
    data = TensorDataset(gpugrad.arange(10))
    loader = DataLoader(data, batch_size=4, num_workers=2, multiprocessing_context="forkserver",
                        persistent_workers=True)
    for _ in range(2):
        assert [b[0].tolist() for b in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_loader_arguments_checked_as_torch():
    data = list(range(4))
    for kwargs in [dict(timeout=-1), dict(prefetch_factor=2), dict(num_workers=1, prefetch_factor=-1),
                   dict(persistent_workers=True), dict(num_workers=-1)]:
        with pytest.raises(ValueError) as theirs:
            torch.utils.data.DataLoader(data, **kwargs)
        with pytest.raises(ValueError) as ours:
            DataLoader(data, **kwargs)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError, match="replacement should be a boolean"):
        RandomSampler(data, replacement=1)


def test_random_sampler_with_replacement_draws_lazily():
    tracemalloc.start()
    try:
        sampler = iter(RandomSampler(range(10), replacement=True, num_samples=10**15))
        drawn = [next(sampler) for _ in range(1000)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000 and set(drawn) == set(range(10))
    assert len(list(RandomSampler(range(3), replacement=True, num_samples=70))) == 70
    twelve = list(RandomSampler(range(5), num_samples=12))            # two permutations and a part of a third
    assert sorted(twelve[:10]) == sorted(list(range(5)) * 2) and len(set(twelve[10:])) == 2


def test_pin_memory_without_a_gpu_warns_as_torch():
    if gpugrad.cuda.is_available():
        pytest.skip("a GPU is there: pinning happens (test_pin_memory_pins_on_the_gpu)")
    with pytest.warns(UserWarning, match="no accelerator is found") as ours:
        batches = [b.tolist() for b in DataLoader(list(range(4)), batch_size=2, pin_memory=True)]
    assert batches == [[0, 1], [2, 3]]
    with pytest.warns(UserWarning) as theirs:
        list(torch.utils.data.DataLoader(list(range(4)), batch_size=2, pin_memory=True))
    assert str(ours[0].message) == str(theirs[0].message)


@pytest.mark.cuda
def test_pin_memory_pins_on_the_gpu():
    import cupy
    batches = list(DataLoader(TensorDataset(gpugrad.arange(6.0)), batch_size=4, pin_memory=True, num_workers=1))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5]]
    owner = batches[0][0].array
    while isinstance(owner, (numpy.ndarray, memoryview)):
        owner = owner.base if isinstance(owner, numpy.ndarray) else owner.obj
    assert isinstance(owner, cupy.cuda.PinnedMemoryPointer)             # page-locked host memory
    assert batches[0][0].cuda().tolist() == [0, 1, 2, 3]


class _Sleepy(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        time.sleep(3 if index == 2 else 0)
        return index


def test_timeout_raises_as_torch():
    loader = DataLoader(_Sleepy(), batch_size=1, num_workers=1, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="DataLoader timed out after 0.5 seconds"):
        list(loader)
    assert time.monotonic() - started < 2.5


def test_a_worker_exception_is_raised_with_its_type_and_traceback():
    class Bad(Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, index):
            if index == 3:
                raise KeyError(f"no sample {index}")
            return index
    iterator = iter(DataLoader(Bad(), batch_size=2, num_workers=2))
    assert next(iterator).tolist() == [0, 1]
    with pytest.raises(KeyError, match="Caught KeyError in DataLoader worker process 1") as error:
        next(iterator)
    assert "no sample 3" in str(error.value) and "__getitem__" in str(error.value)
    assert next(iterator).tolist() == [4, 5]            # the loop may go on, as torch's


# -- worker processes under failure (each scenario in a subprocess: a regression fails, never hangs) ------

SCENARIOS = pathlib.Path(__file__).resolve().parent / "dataloader_scenarios.py"


def _alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _scenario(tmp_path, name):
    pidfile = tmp_path / "pids"
    child = subprocess.Popen([sys.executable, str(SCENARIOS), name, str(pidfile)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    return child, pidfile


def _pids(pidfile):
    return [int(p) for p in pidfile.read_text().split()] if pidfile.exists() else []


def test_workers_are_shut_down_on_every_way_out_of_a_loop(tmp_path):
    """The epoch's end, break, an exception caught around the loop, garbage collection: no worker is
    left; a worker killed by SIGKILL or SIGTERM, or one that exits, raises at once, naming it."""
    child, pidfile = _scenario(tmp_path, "in_process")
    try:
        out, err = child.communicate(timeout=60)
    finally:                                     # a hung scenario (today's bug) must not outlive the test
        child.kill()
        child.wait(10)
        for pid in _pids(pidfile):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    lines = out.splitlines()
    assert child.returncode == 0, out + err
    for how in ("exhausted", "break", "caught", "gc", "SIGKILL", "SIGTERM"):
        assert f"{how} workers left 0" in lines, out
    for name, signal_name in (("SIGKILL", "Killed"), ("SIGTERM", "Terminated")):
        line = next(line for line in lines if line.startswith(f"{name} raised after"))
        assert float(line.split()[3]) < 3.0, line
        assert re.search(rf"DataLoader worker 1 \(pid \d+\) is killed by signal: {signal_name} \({name}\)", line)
    assert any(re.match(r"exit raised: DataLoader worker 0 \(pid \d+\) exited unexpectedly with exit code 3", line)
               for line in lines), out


@pytest.mark.parametrize("name,end", [("uncaught", "raising"), ("exit_mid_epoch", "exiting"),
                                      ("parent_killed", "ready")])
def test_workers_never_outlive_their_parent(tmp_path, name, end):
    """The loop raises uncaught, the interpreter exits mid-epoch, or the parent is SIGKILLed while
    its workers are inside a 30 s item: the workers are gone within seconds and the parent's
    output reaches its end (a reader of it does not hang)."""
    child, pidfile = _scenario(tmp_path, name)
    try:
        assert child.stdout.readline().strip() == end
        if name == "parent_killed":
            child.send_signal(signal.SIGKILL)
        started = time.monotonic()
        reader = threading.Thread(target=child.stdout.read, daemon=True)      # EOF once every holder is gone
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "the parent's stdout is still held open after 10 s"
        pids = _pids(pidfile)
        assert len(pids) == 2
        while any(_alive(p) for p in pids) and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert not any(_alive(p) for p in pids)
        assert time.monotonic() - started < 8
    finally:
        child.kill()
        child.wait(10)
        for pid in _pids(pidfile):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
