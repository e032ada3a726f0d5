"""gpugrad/serialization.py: save / load of state dicts and checkpoints."""

import numpy
import pytest

import gpugrad


def test_save_and_load(tmp_path):
    state = {"w": gpugrad.randn(2, 3), "b": gpugrad.zeros(3, dtype=gpugrad.float64), "step": 7,
             "nested": {"lr": 0.1, 1: [gpugrad.ones(2), (1, "a")]}}
    gpugrad.save(state, tmp_path / "s.npz")
    loaded = gpugrad.load(tmp_path / "s.npz")
    assert loaded["w"].tolist() == state["w"].tolist() and loaded["b"].dtype == gpugrad.float64
    assert loaded["step"] == 7 and loaded["nested"]["lr"] == 0.1
    assert loaded["nested"][1][0].tolist() == [1.0, 1.0] and loaded["nested"][1][1] == (1, "a")
    assert gpugrad.load(tmp_path / "s.npz", map_location="cpu")["w"].device == gpugrad.device("cpu")
    numpy.load(tmp_path / "s.npz")                       # a plain .npz
    with pytest.raises(TypeError, match="cannot store"):
        gpugrad.save({"f": object()}, tmp_path / "bad.npz")


@pytest.mark.cuda
def test_load_onto_another_device(tmp_path):
    model = gpugrad.nn.Linear(3, 2)
    gpugrad.save(model.state_dict(), tmp_path / "m.npz")
    on_gpu = gpugrad.load(tmp_path / "m.npz", map_location="cuda")
    assert on_gpu["weight"].is_cuda
    model.cuda().load_state_dict(on_gpu)
    gpugrad.save(model.state_dict(), tmp_path / "g.npz")
    assert not gpugrad.load(tmp_path / "g.npz", map_location="cpu")["weight"].is_cuda



def test_save_writes_exactly_the_path_given(tmp_path):
    model = gpugrad.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    gpugrad.save(model.state_dict(), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    loaded = gpugrad.load(path, map_location="cpu", weights_only=True)
    other = gpugrad.nn.Linear(3, 2)
    other.load_state_dict(loaded)
    assert other.weight.tolist() == model.weight.tolist()
    with open(tmp_path / "buffer.bin", "wb") as handle:          # a binary file object works too
        gpugrad.save({"w": model.weight}, handle)
    with open(tmp_path / "buffer.bin", "rb") as handle:
        assert isinstance(gpugrad.load(handle)["w"], gpugrad.nn.Parameter)


def test_parameters_bfloat16_and_optimizer_state_round_trip(tmp_path):
    param = gpugrad.nn.Parameter(gpugrad.randn(4))
    opt = gpugrad.optim.AdamW([param], lr=0.1)
    param.sum().backward()
    opt.step()
    state = {"opt": opt.state_dict(), "half": gpugrad.ones(3, dtype=gpugrad.bfloat16) * 1.5,
             "inf": float("inf"), "param": param}
    gpugrad.save(state, tmp_path / "c.pt")
    back = gpugrad.load(tmp_path / "c.pt")
    assert back["half"].dtype == gpugrad.bfloat16 and back["half"].tolist() == [1.5] * 3
    assert back["inf"] == float("inf") and isinstance(back["param"], gpugrad.nn.Parameter)
    fresh = gpugrad.optim.AdamW([gpugrad.nn.Parameter(param.detach().clone())], lr=0.1)
    fresh.load_state_dict(back["opt"])
    saved = opt.state[param]["exp_avg"]
    assert isinstance(saved, gpugrad.Tensor)
    assert next(iter(fresh.state.values()))["exp_avg"].tolist() == saved.tolist()


def test_load_refuses_what_it_cannot_honour(tmp_path):
    gpugrad.save({"a": 1}, tmp_path / "x.pt")
    with pytest.raises(NotImplementedError, match="pickle"):
        gpugrad.load(tmp_path / "x.pt", pickle_module=object())
    numpy.savez(tmp_path / "plain.npz", a=numpy.zeros(2))
    with pytest.raises(ValueError, match="not a gpugrad checkpoint"):
        gpugrad.load(tmp_path / "plain.npz")
