"""gpugrad/serialization.py: save / load of state dicts, checkpoints and
whole objects; saves killed mid-write, truncated and tampered files; the
safetensors format through torch and back."""

import copy
import io
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy
import pytest
import torch
from conftest import assert_close

import gpugrad
from gpugrad.utils import safetensors as gsafetensors


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


@pytest.mark.cuda
def test_load_onto_another_device(tmp_path):
    model = gpugrad.nn.Linear(3, 2)
    gpugrad.save(model.state_dict(), tmp_path / "m.npz")
    on_gpu = gpugrad.load(tmp_path / "m.npz", map_location="cuda")
    assert on_gpu["weight"].is_cuda
    model.cuda().load_state_dict(on_gpu)
    gpugrad.save(model.state_dict(), tmp_path / "g.npz")
    assert not gpugrad.load(tmp_path / "g.npz", map_location="cpu")["weight"].is_cuda
    gpugrad.save(model, tmp_path / "whole.pt")                     # pickled, its tensors' data on the side
    moved = gpugrad.load(tmp_path / "whole.pt", weights_only=False, map_location="cpu")
    assert not moved.weight.is_cuda and moved.weight.tolist() == model.weight.tolist()
    assert gpugrad.load(tmp_path / "whole.pt", weights_only=False).weight.is_cuda
    gpugrad.save(model.state_dict(), tmp_path / "g.safetensors")
    assert gpugrad.load(tmp_path / "g.safetensors", map_location="cuda")["weight"].is_cuda



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
    with pytest.raises(NotImplementedError, match="mmap"):
        gpugrad.load(tmp_path / "x.pt", mmap=True)
    numpy.savez(tmp_path / "plain.npz", a=numpy.zeros(2))
    with pytest.raises(ValueError, match="not a gpugrad checkpoint"):
        gpugrad.load(tmp_path / "plain.npz")


# -- a save killed mid-write ---------------------------------------------------------------------

_SAVER = """
import sys, numpy, gpugrad
path, n = sys.argv[1], int(sys.argv[2])
for version in range(1, 10**6):
    data = gpugrad.from_numpy(numpy.full(n, version, dtype=numpy.float32))
    print(version, flush=True)               # about to write this version
    gpugrad.save({"version": version, "w": data}, path)
"""


def test_a_save_killed_mid_write_leaves_the_previous_file_whole(tmp_path):
    """SIGKILL lands at a random moment of a save over an existing
    checkpoint (16 MB, 4 times): the file loads, as the old version or the new one,
    never half of each; the killed saves' temporary files are the only debris."""
    path = tmp_path / "w.pt"
    n = 4 * 2**20
    gpugrad.save({"version": 0, "w": gpugrad.zeros(n)}, path)
    rng = numpy.random.default_rng()
    interrupted = 0
    for _ in range(4):
        child = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "1"
            started = time.monotonic()
            assert child.stdout.readline().strip() == "2"          # version 1 is written: one save's duration
            time.sleep(rng.uniform(0, time.monotonic() - started))  # somewhere inside the save of version 2
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            last = int(([2] + child.stdout.read().split())[-1])        # the version being written when killed
        finally:
            child.kill()
            child.stdout.close()
        loaded = gpugrad.load(path)
        assert loaded["version"] in (last - 1, last)
        assert loaded["w"].shape == (n,) and (loaded["w"].array == loaded["version"]).all()
        debris = [p for p in tmp_path.iterdir() if p.name != "w.pt"]
        assert all(p.name.startswith(".w.pt.") and p.name.endswith(".tmp") for p in debris)
        interrupted += bool(debris)
        for p in debris:
            p.unlink()
    assert interrupted, "no kill landed inside a save: the test did not test"


def test_save_writes_through_a_file_object_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.pt"
    gpugrad.save({"a": gpugrad.ones(2)}, path)
    gpugrad.save({"a": gpugrad.zeros(2)}, str(path))          # over an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"] and gpugrad.load(path)["a"].tolist() == [0, 0]
    link = tmp_path / "link.pt"
    link.symlink_to(path)
    gpugrad.save({"a": gpugrad.ones(1)}, link)                  # through the link, which stays a link
    assert link.is_symlink() and gpugrad.load(path)["a"].tolist() == [1.0]
    with pytest.raises(FileNotFoundError):
        gpugrad.save({"a": 1}, tmp_path / "missing" / "x.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.pt", "m.pt"]


# -- truncated and tampered files --------------------------------------------------------------------

def _rewrite(path, out, change):
    """A copy of the archive with ``change(name, bytes) -> bytes`` applied to
    each entry (the zip's checksums recomputed: only the content lies)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, change(info.filename, src.read(info.filename)))
    return out


def _skeleton_edit(old, new):
    def change(name, data):
        if name != "__gpugrad_skeleton__.npy":
            return data
        header_end = data.index(b"\n") + 1
        body = data[header_end:].replace(old.encode(), new.encode(), 1)
        header = numpy.lib.format.header_data_from_array_1_0(numpy.frombuffer(body, numpy.uint8))
        buffer = io.BytesIO()
        numpy.lib.format.write_array_header_1_0(buffer, header)
        return buffer.getvalue() + body
    return change


def test_truncated_files_raise_runtime_error(tmp_path, rng):
    path = tmp_path / "c.pt"
    gpugrad.save({"w": gpugrad.randn(64, 32), "step": 3}, path)
    whole = path.read_bytes()
    cuts = sorted({0, 1, 10, 100, len(whole) // 2, len(whole) - 23, len(whole) - 1,
                   *rng.integers(1, len(whole), 6).tolist()})
    for cut in cuts:
        (tmp_path / "cut.pt").write_bytes(whole[:cut])
        with pytest.raises(RuntimeError, match="empty|truncated or corrupted"):
            gpugrad.load(tmp_path / "cut.pt")
    damaged = bytearray(whole)
    damaged[whole.index(b"\x93NUMPY") + 200] ^= 0xFF           # a flipped byte in the first array's data
    (tmp_path / "flip.pt").write_bytes(bytes(damaged))
    with pytest.raises(RuntimeError, match="CRC|corrupted"):
        gpugrad.load(tmp_path / "flip.pt")


@pytest.mark.parametrize("old,new,message", [
    ('"dtype": "float32"', '"dtype": "bfloat16"', "the skeleton says array 't0' is bfloat16, but the archive stores "
                                                   "float32"),
    ('"shape": [6, 4]', '"shape": [4, 6]', "has shape \\(4, 6\\), but the archive stores \\(6, 4\\)"),
    ('"__tensor__": "t0"', '"__tensor__": "t7"', "names an array 't7' the archive does not hold"),
    ('"__tensor__": "t0"', '"__tensor__": "__gpugrad_skeleton__"', "names an array"),
    ('"dtype": "float32"', '"dtype": "object"', "unknown dtype 'object'"),
    ('{"__dict__"', '{"__dict_', "corrupted"),
])
def test_a_skeleton_that_lies_about_the_data_is_refused(tmp_path, old, new, message):
    path = tmp_path / "c.pt"
    gpugrad.save({"w": gpugrad.randn(6, 4), "b": gpugrad.zeros(4, dtype=gpugrad.float64)}, path)
    tampered = _rewrite(path, tmp_path / "t.pt", _skeleton_edit(old, new))
    with pytest.raises(RuntimeError, match=message):
        gpugrad.load(tampered)


def test_an_array_header_that_lies_about_the_data_is_refused(tmp_path):
    path = tmp_path / "c.pt"
    gpugrad.save({"w": gpugrad.randn(6, 4)}, path)
    for old, new, message in [(b"'descr': '<f4'", b"'descr': '<u2'", "holds 96 bytes of data but its header says "
                                                                      "uint16 of shape \\(6, 4\\) \\(48 bytes\\)"),
                              (b"'shape': (6, 4)", b"'shape': (6, 8)", "header says float32 of shape \\(6, 8\\)"),
                              (b"'descr': '<f4'", b"'descr': '|O8'", "holds Python objects")]:
        tampered = _rewrite(path, tmp_path / "t.pt",
                            lambda name, data: data.replace(old, new, 1) if name == "t0.npy" else data)
        with pytest.raises(RuntimeError, match=message):
            gpugrad.load(tampered)


# -- whole objects and weights_only ---------------------------------------------------------------

class Recipe:
    """A user's picklable object."""

    def __init__(self, name, weights):
        self.name, self.weights = name, weights


def test_whole_modules_and_optimizers_round_trip_with_weights_only_false(tmp_path, rng):
    model = gpugrad.nn.Sequential(gpugrad.nn.Linear(3, 5), gpugrad.nn.Tanh(), gpugrad.nn.Linear(5, 2)).double()
    optimizer = gpugrad.optim.AdamW(model.parameters(), lr=0.05)
    x = gpugrad.tensor(rng.standard_normal((4, 3)))
    model(x).sum().backward()
    optimizer.step()
    gpugrad.save({"model": model, "optimizer": optimizer, "epoch": 3, "tags": {"a", "b"}}, tmp_path / "all.pt")
    back = gpugrad.load(tmp_path / "all.pt", weights_only=False)
    assert back["epoch"] == 3 and back["tags"] == {"a", "b"}
    assert_close(back["model"](x), model(x), 0)
    assert back["optimizer"].param_groups[0]["params"][0] is back["model"][0].weight    # shared, as pickled
    assert isinstance(back["model"][0].weight, gpugrad.nn.Parameter) and back["model"][0].weight.requires_grad
    for a, b in zip(optimizer.state.values(), back["optimizer"].state.values()):
        assert a["exp_avg"].tolist() == b["exp_avg"].tolist()
    gpugrad.save(model, tmp_path / "model.pt")                                  # the module alone
    assert_close(gpugrad.load(tmp_path / "model.pt", weights_only=False)(x), model(x), 0)
    gpugrad.save(Recipe("r", [gpugrad.ones(2, dtype=gpugrad.bfloat16)]), tmp_path / "r.pt")
    recipe = gpugrad.load(tmp_path / "r.pt", weights_only=False, map_location="cpu")
    assert recipe.name == "r" and recipe.weights[0].dtype == gpugrad.bfloat16 and recipe.weights[0].tolist() == [1, 1]


def test_weights_only_refuses_pickled_code_as_torch_does(tmp_path):
    gpugrad.save(gpugrad.nn.Linear(2, 2), tmp_path / "ours.pt")
    torch.save(torch.nn.Linear(2, 2), tmp_path / "theirs.pt")
    with pytest.raises(pickle.UnpicklingError) as theirs:
        torch.load(tmp_path / "theirs.pt")
    for call in (lambda: gpugrad.load(tmp_path / "ours.pt"), lambda: gpugrad.load(tmp_path / "ours.pt",
                                                                                  weights_only=True)):
        with pytest.raises(type(theirs.value), match="Weights only load failed") as ours:
            call()
        assert "GLOBAL gpugrad.nn.modules.linear.Linear was not an allowed global" in str(ours.value)
        assert "weights_only` set to `False`" in str(theirs.value) and "weights_only` set to `False`" in str(ours.value)
    gpugrad.save(Recipe("r", [gpugrad.ones(2)]), tmp_path / "r.pt")
    with gpugrad.serialization.safe_globals([Recipe]):                          # allowlisted: loads weights-only
        assert gpugrad.load(tmp_path / "r.pt").weights[0].tolist() == [1, 1]
    assert gpugrad.serialization.get_safe_globals() == []
    with pytest.raises(pickle.UnpicklingError, match="test_serialization.Recipe"):
        gpugrad.load(tmp_path / "r.pt")


def test_weights_only_never_runs_the_pickle(tmp_path):
    """A hand-made checkpoint whose pickle calls os.system: refused before anything runs."""
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    gpugrad.save(Exploit(), tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError, match="GLOBAL posix.system"):
        gpugrad.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_tensor_pickling_and_module_deepcopy_keep_working(rng):
    t = gpugrad.tensor(rng.standard_normal((2, 3)), requires_grad=True)
    back = pickle.loads(pickle.dumps(t))
    assert back.tolist() == t.tolist() and back.requires_grad
    model = gpugrad.nn.Linear(3, 2)
    twin = copy.deepcopy(model)
    assert twin.weight is not model.weight and twin.weight.tolist() == model.weight.tolist()
    assert pickle.loads(pickle.dumps(model)).bias.tolist() == model.bias.tolist()


# -- safetensors ------------------------------------------------------------------------------------

_DTYPES = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]


def _random(rng, dtype, shape):
    values = rng.standard_normal(shape) * 10
    if dtype == "bool":
        return gpugrad.tensor(values > 0)
    return gpugrad.tensor(values).to(getattr(gpugrad, dtype))


def test_safetensors_round_trips_through_torch(tmp_path, rng):
    import safetensors.torch

    ours = {f"{dtype}.{i}": _random(rng, dtype, shape) for dtype in _DTYPES
            for i, shape in enumerate([(3, 4), (), (0, 5), (2, 1, 3)])}
    ours["strided"] = gpugrad.tensor(rng.standard_normal((4, 6)))[:, ::2]
    gpugrad.save(ours, tmp_path / "m.safetensors")
    theirs = safetensors.torch.load_file(tmp_path / "m.safetensors")
    assert sorted(theirs) == sorted(ours)
    for name, value in ours.items():
        expected = torch.from_numpy(numpy.ascontiguousarray(value.float().array if value.dtype == gpugrad.bfloat16
                                                            else value.array))
        if value.dtype == gpugrad.bfloat16:
            assert theirs[name].dtype == torch.bfloat16
            expected = expected.to(torch.bfloat16)
        assert theirs[name].shape == expected.shape and torch.equal(theirs[name], expected), name
    safetensors.torch.save_file({k: v * 2 if v.dtype != torch.bool else ~v for k, v in theirs.items()},
                                tmp_path / "t.safetensors")
    back = gpugrad.load(tmp_path / "t.safetensors")
    for name, value in theirs.items():
        doubled = value * 2 if value.dtype != torch.bool else ~value
        assert str(back[name].dtype).endswith(str(doubled.dtype).split(".")[1]), name
        assert back[name].shape == tuple(doubled.shape)
        assert back[name].float().tolist() == doubled.float().tolist(), name


def test_a_state_dict_moves_between_torch_and_gpugrad_as_safetensors(tmp_path, rng):
    import safetensors.torch

    ours = gpugrad.nn.Sequential(gpugrad.nn.Linear(4, 6), gpugrad.nn.LayerNorm(6), gpugrad.nn.Linear(6, 3))
    theirs = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LayerNorm(6), torch.nn.Linear(6, 3))
    gpugrad.save(ours.state_dict(), tmp_path / "ours.safetensors")
    theirs.load_state_dict(safetensors.torch.load_file(tmp_path / "ours.safetensors"))
    x = rng.standard_normal((5, 4)).astype(numpy.float32)
    assert_close(ours(gpugrad.tensor(x)), theirs(torch.tensor(x)), 1e-6)
    with torch.no_grad():
        theirs[0].weight.mul_(-1)
    safetensors.torch.save_file(theirs.state_dict(), tmp_path / "theirs.safetensors")
    ours.load_state_dict(gsafetensors.load_file(tmp_path / "theirs.safetensors"))
    assert_close(ours(gpugrad.tensor(x)), theirs(torch.tensor(x)), 1e-6)
    data = gsafetensors.save({"a": gpugrad.arange(3)}, metadata={"note": "x"})
    assert safetensors.torch.load(data)["a"].tolist() == gsafetensors.load(data)["a"].tolist() == [0, 1, 2]
    gsafetensors.save_file({"b": gpugrad.ones(2)}, tmp_path / "b.safetensors")
    assert gpugrad.load(tmp_path / "b.safetensors")["b"].tolist() == [1, 1]


def test_safetensors_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="holds tensors only; 'step' is a int"):
        gpugrad.save({"w": gpugrad.ones(2), "step": 3}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="dict of tensors"):
        gpugrad.save([gpugrad.ones(2)], tmp_path / "x.safetensors")
    with pytest.raises(TypeError, match="by strings"):
        gsafetensors.save({1: gpugrad.ones(2)})
    assert not list(tmp_path.iterdir())
    good = gsafetensors.save({"w": gpugrad.ones(4)})
    (tmp_path / "cut.safetensors").write_bytes(good[:-3])
    with pytest.raises(RuntimeError, match="not a valid safetensors file"):
        gpugrad.load(tmp_path / "cut.safetensors")
