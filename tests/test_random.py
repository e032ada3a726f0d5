"""gpugrad/random.py: generators, seeding and the sampling functions."""


import gpugrad


def test_manual_seed_is_reproducible():
    gpugrad.manual_seed(123)
    a = gpugrad.randn(5).tolist()
    gpugrad.manual_seed(123)
    assert gpugrad.randn(5).tolist() == a
