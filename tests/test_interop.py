"""Other libraries take gpugrad tensors where they take torch's: matplotlib reads
them through ``__array__`` (the same artists as from torch tensors), NumPy refuses
a tensor that requires grad with torch's error, ``float()`` and ``int()`` refuse
several elements with torch's ValueError, NumPy converts them as it converts
torch's."""

import numpy
import pytest

import gpugrad

torch = pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _draw(lib, x, y, image):
    """Every artist's data from the common plotting calls, as float64 arrays."""
    figure, axes = plt.subplots()
    try:
        line, = axes.plot(lib.tensor(x), lib.tensor(y))
        points = axes.scatter(lib.tensor(x), lib.tensor(y))
        counts, edges, _ = axes.hist(lib.tensor(y), bins=7)
        picture = axes.imshow(lib.tensor(image))
        bars = axes.bar(lib.tensor(x), lib.tensor(y))
        return [numpy.asarray(line.get_xydata(), dtype=numpy.float64),
                numpy.asarray(points.get_offsets(), dtype=numpy.float64),
                numpy.asarray(counts, dtype=numpy.float64), numpy.asarray(edges, dtype=numpy.float64),
                numpy.asarray(picture.get_array(), dtype=numpy.float64),
                numpy.array([b.get_height() for b in bars], dtype=numpy.float64)]
    finally:
        plt.close(figure)


def test_matplotlib_draws_gpugrad_tensors_as_torchs(rng):
    x = numpy.sort(rng.standard_normal(20))
    y = rng.standard_normal(20)
    image = rng.random((5, 6))
    for ours, theirs in zip(_draw(gpugrad, x, y, image), _draw(torch, x, y, image), strict=True):
        numpy.testing.assert_array_equal(ours, theirs)


def test_numpy_refuses_a_tensor_that_requires_grad_as_with_torch():
    for lib in (gpugrad, torch):
        with pytest.raises(RuntimeError, match=r"Can't call numpy\(\) on Tensor that requires grad"):
            numpy.asarray(lib.ones(3, requires_grad=True) * 2)
        numpy.testing.assert_array_equal(numpy.asarray((lib.ones(3, requires_grad=True) * 2).detach()), [2.0] * 3)


@pytest.mark.parametrize("convert", [float, int])
def test_python_scalars_of_one_element_only(convert):
    for lib in (gpugrad, torch):
        assert convert(lib.tensor([[2.5]])) == convert(2.5)
        with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
            convert(lib.ones(3))
        with pytest.raises(ValueError, match="only one element tensors can be converted to Python scalars"):
            convert(lib.ones(0))


def test_numpy_converts_as_it_converts_torchs(rng):
    data = rng.standard_normal((3, 4)).astype(numpy.float32)
    for make in (lambda lib: lib.tensor(data), lambda lib: lib.tensor(data).t(), lambda lib: lib.tensor(data)[:, ::2]):
        ours, theirs = numpy.asarray(make(gpugrad)), numpy.asarray(make(torch))
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        numpy.testing.assert_array_equal(ours, theirs)
        numpy.testing.assert_array_equal(numpy.asarray(make(gpugrad), dtype=numpy.float64),
                                         numpy.asarray(make(torch), dtype=numpy.float64))
