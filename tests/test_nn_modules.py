"""gpugrad/nn/modules against torch.nn with identical weights (float64),
state_dict round trips, errors, and flat memory over a long training loop."""

import gc
import math

import numpy
import pytest
import torch
from conftest import assert_close, to_torch

import gpugrad
from gpugrad import nn
from gpugrad.autograd.function import Function


def copy_weights(ours, theirs):
    """Give our module torch's parameters (same names, same values)."""
    state = {k: gpugrad.tensor(v.detach().cpu().numpy(), device=ours_device(ours))
             for k, v in theirs.state_dict().items()}
    ours.load_state_dict(state)


def ours_device(module):
    return next(iter(module.parameters())).device


def build_pair(device):
    torch.manual_seed(0)
    theirs = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.LayerNorm(16), torch.nn.Linear(16, 16),
        torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(16, 8), torch.nn.Sigmoid(),
        torch.nn.Linear(8, 5)).double()
    ours = nn.Sequential(
        nn.Linear(6, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 16), nn.Tanh(), nn.Dropout(0.2),
        nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 5)).double().to(device)
    if device == "cuda":
        theirs = theirs.cuda()
    copy_weights(ours, theirs)
    return ours, theirs


def test_mlp_matches_torch_with_identical_weights(rng, device):
    ours, theirs = build_pair(device)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal((10, 6))
    t = rng.integers(0, 5, 10)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)(ours(gpugrad.tensor(x, device=device)),
                                                    gpugrad.tensor(t, device=device))
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=0.1)(theirs(to_torch(x, device=device)),
                                                           to_torch(t, device=device))
    assert_close(loss, tloss, 1e-10)
    loss.backward()
    tloss.backward()
    theirs_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        assert_close(param.grad, theirs_params[name].grad, 1e-10)


def test_state_dict_keys_and_round_trip(rng):
    ours, theirs = build_pair("cpu")
    assert list(ours.state_dict()) == list(theirs.state_dict())
    clone = nn.Sequential(*[type(m)(*args) for m, args in zip(
        ours, [(6, 16), (), (16,), (16, 16), (), (0.2,), (16, 8), (), (8, 5)])]).double()
    clone.load_state_dict(ours.state_dict())
    x = gpugrad.tensor(rng.standard_normal((3, 6)))
    ours.eval()
    clone.eval()
    assert_close(clone(x), ours(x), 0)


def test_load_state_dict_reports_every_problem():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    state = model.state_dict()
    state["1.weight"] = gpugrad.zeros(5, 4)
    state["extra"] = gpugrad.zeros(1)
    del state["0.bias"]
    with pytest.raises(RuntimeError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "Missing key(s) in state_dict: '0.bias'" in message
    assert "Unexpected key(s) in state_dict: 'extra'" in message
    assert "size mismatch for 1.weight: copying a param with shape [5, 4]" in message
    result = model.load_state_dict({k: v for k, v in model.state_dict().items() if k != "0.bias"}, strict=False)
    assert result.missing_keys == ["0.bias"]


def test_module_api():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ModuleList([nn.Linear(4, 4), nn.Dropout(0.5)]),
                          nn.Flatten(), nn.Embedding(5, 2, padding_idx=0))
    assert len(list(model.parameters())) == 5
    assert [name for name, _ in model.named_children()] == ["0", "1", "2", "3", "4"]
    assert len(list(model.modules())) == 8
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())
    assert "Linear(in_features=3, out_features=4, bias=True)" in repr(model)
    assert model[4].weight[0].abs().sum().item() == 0             # padding row starts at zero
    model.double()
    assert all(p.dtype == gpugrad.float64 for p in model.parameters())
    model[0](gpugrad.randn(2, 3, dtype=gpugrad.float64)).sum().backward()
    assert model[0].weight.grad is not None
    model.zero_grad()
    assert model[0].weight.grad is None


def test_linear_default_initialisation():
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    w = layer.weight.detach().numpy()
    assert numpy.abs(w).max() <= bound and abs(w.std() - bound / math.sqrt(3)) < 0.05 * bound
    assert numpy.abs(layer.bias.detach().numpy()).max() <= bound


def test_bad_input_names_the_shapes():
    layer = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r"Linear\(in_features=3, out_features=2\) got input of shape \[4, 5\]"):
        layer(gpugrad.randn(4, 5))
    with pytest.raises(RuntimeError, match="same dtype, but got: float64 != float32"):
        layer(gpugrad.randn(4, 3, dtype=gpugrad.float64))
    with pytest.raises(IndexError, match="Target 9 is out of bounds"):
        nn.CrossEntropyLoss()(layer(gpugrad.randn(4, 3)), gpugrad.tensor([0, 1, 9, 1]))
    with pytest.raises(RuntimeError, match="normalized_shape"):
        nn.LayerNorm(4)(gpugrad.randn(2, 5))


def test_loss_modules_match_torch(rng, device):
    x = rng.standard_normal((4, 3))
    y = rng.uniform(0, 1, (4, 3))
    t = rng.integers(0, 3, 4)
    w = rng.uniform(0.5, 2.0, 3)
    gx, tx = gpugrad.tensor(x, device=device), to_torch(x, device=device)
    gy, ty = gpugrad.tensor(y, device=device), to_torch(y, device=device)
    gt, tt = gpugrad.tensor(t, device=device), to_torch(t, device=device)
    pairs = [
        (nn.CrossEntropyLoss(weight=gpugrad.tensor(w, device=device), ignore_index=1)(gx, gt),
         torch.nn.CrossEntropyLoss(weight=to_torch(w, device=device), ignore_index=1)(tx, tt)),
        (nn.NLLLoss(reduction="sum")(gpugrad.log_softmax(gx, 1), gt),
         torch.nn.NLLLoss(reduction="sum")(torch.log_softmax(tx, 1), tt)),
        (nn.MSELoss()(gx, gy), torch.nn.MSELoss()(tx, ty)),
        (nn.BCELoss()(gy, (gy > 0.5).double()), torch.nn.BCELoss()(ty, (ty > 0.5).double())),
        (nn.BCEWithLogitsLoss(pos_weight=gpugrad.tensor(w, device=device))(gx, gy),
         torch.nn.BCEWithLogitsLoss(pos_weight=to_torch(w, device=device))(tx, ty)),
    ]
    for ours, theirs in pairs:
        assert_close(ours, theirs, 1e-10)


def _live_nodes():
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), Function))


@pytest.mark.slow
def test_training_memory_is_flat_over_10000_steps():
    """Live graph nodes after step 100 and after step 10,000 are the same."""
    gpugrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    optimizer = gpugrad.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = gpugrad.randn(32, 8)
    t = gpugrad.randint(0, 4, (32,))
    counts = {}
    for step in range(1, 10_001):
        loss = nn.functional.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (100, 10_000):
            gc.collect()
            counts[step] = _live_nodes()
    assert counts[100] == counts[10_000]
    assert counts[10_000] <= 20        # the last step's graph at most
    assert numpy.isfinite(loss.item())


@pytest.mark.cuda
@pytest.mark.slow
def test_training_memory_is_flat_on_the_gpu():
    """The CuPy pool's used bytes are the same after step 100 and step 10,000."""
    import cupy
    gpugrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 10)).cuda()
    optimizer = gpugrad.optim.Adam(model.parameters(), lr=1e-3)
    x = gpugrad.randn(256, 64, device="cuda")
    t = gpugrad.randint(0, 10, (256,), device="cuda")
    used = {}
    for step in range(1, 10_001):
        loss = nn.functional.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (100, 10_000):
            gc.collect()
            cupy.cuda.Device().synchronize()
            used[step] = cupy.get_default_memory_pool().used_bytes()
    assert used[100] == used[10_000]
