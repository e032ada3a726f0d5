"""gpugrad/utils/data: datasets, samplers and the DataLoader, as torch.utils.data."""

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
