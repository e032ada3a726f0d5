"""gpugrad/random.py: generators, seeding and the sampling functions."""


import numpy
import pytest

import gpugrad


def test_manual_seed_is_reproducible():
    gpugrad.manual_seed(123)
    a = gpugrad.randn(5).tolist()
    gpugrad.manual_seed(123)
    assert gpugrad.randn(5).tolist() == a


def test_generators_are_independent_and_reproducible():
    g = gpugrad.Generator().manual_seed(42)
    first = [gpugrad.rand(3, generator=g).tolist(), gpugrad.randn(2, generator=g).tolist(),
             gpugrad.randint(0, 10, (4,), generator=g).tolist(), gpugrad.randperm(5, generator=g).tolist()]
    gpugrad.manual_seed(0)                          # the default generator does not touch g's stream
    g.manual_seed(42)
    again = [gpugrad.rand(3, generator=g).tolist(), gpugrad.randn(2, generator=g).tolist(),
             gpugrad.randint(0, 10, (4,), generator=g).tolist(), gpugrad.randperm(5, generator=g).tolist()]
    assert first == again and g.initial_seed() == 42
    state = g.get_state()
    after = gpugrad.rand(4, generator=g).tolist()
    g.set_state(state)
    assert gpugrad.rand(4, generator=g).tolist() == after
    assert gpugrad.rand(size=(2, 3)).shape == (2, 3) and gpugrad.randn((2, 3)).shape == (2, 3)


def test_multinomial_normal_and_bernoulli_statistics():
    g = gpugrad.Generator().manual_seed(3)
    weights = gpugrad.tensor([0.0, 1.0, 3.0, 0.0])
    draws = gpugrad.multinomial(weights, 8000, replacement=True, generator=g)
    counts = numpy.bincount(draws.numpy(), minlength=4)
    assert counts[0] == counts[3] == 0 and abs(counts[2] / 8000 - 0.75) < 0.03
    rows = gpugrad.multinomial(gpugrad.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 5.0]]), 2, generator=g)
    assert rows.shape == (2, 2) and sorted(rows[0].tolist()) == [0, 1] and sorted(rows[1].tolist()) == [1, 2]
    with pytest.raises(RuntimeError, match="cannot sample n_sample > prob_dist.size"):
        gpugrad.multinomial(weights, 5)
    with pytest.raises(RuntimeError, match="invalid multinomial distribution"):
        gpugrad.multinomial(gpugrad.tensor([1.0, -1.0]), 1)
    samples = gpugrad.normal(2.0, 3.0, size=(20000,), generator=g)
    assert abs(samples.mean().item() - 2) < 0.1 and abs(samples.std().item() - 3) < 0.1
    elementwise = gpugrad.normal(gpugrad.tensor([0.0, 100.0]), gpugrad.tensor([1e-6, 1e-6]))
    assert elementwise.tolist() == pytest.approx([0.0, 100.0], abs=1e-3)
    coins = gpugrad.bernoulli(gpugrad.full((10000,), 0.25), generator=g)
    assert coins.dtype == gpugrad.float32 and abs(coins.mean().item() - 0.25) < 0.02
    x = gpugrad.zeros(1000)
    x.bernoulli_(0.5, generator=g)
    assert set(x.tolist()) == {0.0, 1.0}


def test_dropout_takes_a_generator():
    g = gpugrad.Generator().manual_seed(1)
    a = gpugrad.nn.functional.dropout(gpugrad.ones(100), 0.5, generator=g)
    g.manual_seed(1)
    assert gpugrad.nn.functional.dropout(gpugrad.ones(100), 0.5, generator=g).tolist() == a.tolist()
    assert set(a.tolist()) == {0.0, 2.0}


def test_sampling_refuses_what_torch_refuses():
    nan = float("nan")
    for bad in (lambda: gpugrad.randn(2, dtype=gpugrad.int64), lambda: gpugrad.rand(2, dtype=gpugrad.bool),
                lambda: gpugrad.randperm(-1), lambda: gpugrad.normal(0.0, nan, (2,)),
                lambda: gpugrad.normal(gpugrad.zeros(2), gpugrad.tensor([1.0, nan])),
                lambda: gpugrad.bernoulli(gpugrad.tensor([0.5, nan])), lambda: gpugrad.zeros(2).bernoulli_(nan),
                lambda: gpugrad.zeros(2).exponential_(0.0), lambda: gpugrad.zeros(2).uniform_(2, 1),
                lambda: gpugrad.multinomial(gpugrad.ones(3), 0)):
        with pytest.raises((RuntimeError, NotImplementedError)):
            bad()
    assert gpugrad.randn(0, dtype=gpugrad.int64).shape == (0,)      # torch runs no kernel for an empty tensor
