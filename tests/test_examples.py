"""The examples: the training run reaches its accuracy; the classics print
the seed's results."""

import importlib.util
import pathlib

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_digits_short_run_reaches_95_percent(tmp_path, capsys):
    pytest.importorskip("sklearn")
    example = _load("train_digits")
    plot = tmp_path / "curves.png"
    accuracy, history = example.main(["--device", "cpu", "--epochs", "15", "--quiet", "--plot", str(plot),
                                      "--save", str(tmp_path / "w.npz")])
    out = capsys.readouterr().out
    assert "training on cpu" in out and "test accuracy" in out
    assert accuracy >= 0.95
    assert history["loss"][-1] < history["loss"][0] / 2
    assert plot.stat().st_size > 10_000 and (tmp_path / "w.npz").exists()


def test_train_digits_is_reproducible(tmp_path):
    pytest.importorskip("sklearn")
    example = _load("train_digits")
    args = ["--device", "cpu", "--epochs", "2", "--quiet", "--plot", str(tmp_path / "p.png"), "--seed", "3"]
    assert example.main(args)[1] == example.main(args)[1]


def test_classics():
    classics = _load("classics")
    f, dx, dy = classics.gradients_of_f()
    x = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    tf = (x + y.exp()) / (x.log() + (x - y) ** 3)
    tf.backward()
    assert f == pytest.approx(tf.item(), rel=1e-12)
    assert (dx, dy) == (pytest.approx(x.grad.item(), rel=1e-12), pytest.approx(y.grad.item(), rel=1e-12))
    naive, stable, grad = classics.naive_and_stable()
    assert naive == float("inf")
    assert stable == pytest.approx(50.0) and grad == pytest.approx([-1.0, 1.0])


@pytest.mark.cuda
def test_train_digits_on_the_gpu(tmp_path):
    example = _load("train_digits")
    accuracy, history = example.main(["--device", "cuda", "--epochs", "15", "--quiet", "--plot",
                                      str(tmp_path / "c.png")])
    # the CPU over seeds 0-11: 95.8-97.6% and a last epoch's loss of 0.433-0.456 (label smoothing 0.05); the
    # emulated GPU, seed 0: 96.22% and 0.4399 as the CPU.  The H200 before 1133b63 (the span forward's 'mean'
    # gradient held raw logits in part of each span) gave 94.44% and 2.2823: a loss far off is the sign
    assert accuracy >= 0.95 and history["loss"][-1] < 0.5


def test_train_digits_with_mixed_precision_ends_where_float32_does(tmp_path):
    pytest.importorskip("sklearn")
    example = _load("train_digits")
    common = ["--device", "cpu", "--epochs", "15", "--quiet", "--plot", str(tmp_path / "p.png")]
    amp_accuracy, amp = example.main(common + ["--amp"])
    full_accuracy, full = example.main(common)
    assert amp["loss"] != full["loss"]                           # bfloat16 did run
    assert abs(amp["loss"][-1] - full["loss"][-1]) < 0.02 and amp_accuracy >= 0.95
