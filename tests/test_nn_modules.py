"""gpugrad/nn/modules against torch.nn with identical weights (float64),
state_dict round trips, errors, and flat memory over a long training loop."""

import gc
import math

import numpy
import pytest
import torch
from conftest import EMULATED, assert_close, assert_forward_backward, make_pair, to_torch, torch_device

import gpugrad
from gpugrad import nn
from gpugrad.autograd import gradgradcheck
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
    theirs = theirs.to(torch_device(device))
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
        (nn.L1Loss(reduction="none")(gx, gy), torch.nn.L1Loss(reduction="none")(tx, ty)),
        (nn.SmoothL1Loss(beta=0.5)(gx, gy), torch.nn.SmoothL1Loss(beta=0.5)(tx, ty)),
        (nn.HuberLoss(delta=0.3)(gx, gy), torch.nn.HuberLoss(delta=0.3)(tx, ty)),
        (nn.KLDivLoss(reduction="batchmean")(gpugrad.log_softmax(gx, 1), gy),
         torch.nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(tx, 1), ty)),
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
    """The CuPy pool's used bytes are the same after step 100 and step 10,000
    (1,000 under the emulator, where a step takes ~0.2 s: a leak of any size
    per step shows there as well)."""
    import cupy
    last = 1_000 if EMULATED else 10_000
    gpugrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 10)).cuda()
    optimizer = gpugrad.optim.Adam(model.parameters(), lr=1e-3)
    x = gpugrad.randn(256, 64, device="cuda")
    t = gpugrad.randint(0, 10, (256,), device="cuda")
    used = {}
    for step in range(1, last + 1):
        loss = nn.functional.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (100, last):
            gc.collect()
            cupy.cuda.Device().synchronize()
            used[step] = cupy.get_default_memory_pool().used_bytes()
    assert used[100] == used[last] > 0


def _cnn(lib):
    n = lib.nn
    return n.Sequential(
        n.Conv2d(3, 8, 3, padding=1), n.BatchNorm2d(8), n.ReLU(inplace=True), n.MaxPool2d(2),
        n.Conv2d(8, 6, (3, 2), stride=(1, 2), bias=False), n.AvgPool2d(2, ceil_mode=True), n.Flatten(),
        n.Unflatten(1, (6, -1)), n.Conv1d(6, 4, 2), n.BatchNorm1d(4), n.Hardtanh(), n.MaxPool1d(2), n.AvgPool1d(1),
        n.Flatten())


@pytest.mark.parametrize("training", [True, False])
def test_cnn_matches_torch_with_identical_weights(rng, device, training):
    """Conv1d/2d, BatchNorm1d/2d, max and average pooling as modules: outputs,
    parameter gradients and running statistics match torch after three steps."""
    torch.manual_seed(0)
    theirs = _cnn(torch).double()
    ours = _cnn(gpugrad).double().to(device)
    theirs = theirs.to(torch_device(device))
    copy_weights(ours, theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.train(training)
    theirs.train(training)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 16, 18))
        out, tout = ours(gpugrad.tensor(x, device=device)), theirs(to_torch(x, device=device))
        assert_close(out, tout, 1e-10)
        (out ** 2).sum().backward()
        (tout ** 2).sum().backward()
    theirs_params = dict(theirs.named_parameters())
    for name, param in ours.named_parameters():
        # a conv bias before batch norm has a gradient of zero up to rounding: floor 1
        assert_close(param.grad, theirs_params[name].grad, 1e-10, floor=1.0)
    theirs_state = theirs.state_dict()
    for name, value in ours.state_dict().items():
        assert_close(value, theirs_state[name], 1e-12)
    assert int(ours[1].num_batches_tracked) == (3 if training else 0)


def test_batch_norm_options_match_torch(rng):
    for options in ({"affine": False}, {"track_running_stats": False}, {"momentum": None}, {"eps": 0.1}):
        ours, theirs = nn.BatchNorm1d(3, **options).double(), torch.nn.BatchNorm1d(3, **options).double()
        for _ in range(3):
            x = rng.standard_normal((5, 3))
            assert_close(ours(gpugrad.tensor(x)), theirs(torch.tensor(x)), 1e-12)
        ours.eval()
        theirs.eval()
        x = rng.standard_normal((5, 3))
        assert_close(ours(gpugrad.tensor(x)), theirs(torch.tensor(x)), 1e-12)
        assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.BatchNorm1d(3)(gpugrad.randn(2, 3, 4, 5))


def test_module_and_parameter_containers():
    """ModuleDict, ParameterList and ParameterDict register what they hold, in
    order, under torch's state_dict names."""
    layers = {}
    for lib in (gpugrad, torch):
        n = lib.nn

        class Net(n.Module):
            def __init__(self):
                super().__init__()
                self.heads = n.ModuleDict({"b": n.Linear(2, 3), "a": n.Linear(2, 1)})
                self.scales = n.ParameterList([n.Parameter(lib.ones(2)), n.Parameter(lib.zeros(3))])
                self.extra = n.ParameterDict({"w": n.Parameter(lib.ones(1))})
                self.heads["c"] = n.Linear(2, 2)
                self.scales.append(n.Parameter(lib.ones(4)))
                self.extra.update({"v": n.Parameter(lib.zeros(2))})

        net = Net()
        layers[lib.__name__] = ([(k, tuple(v.shape)) for k, v in net.state_dict().items()], list(net.heads.keys()),
                                len(net.scales), "w" in net.extra, len(list(net.parameters())))
        del net.heads["a"]
        assert list(net.heads.keys()) == ["b", "c"]
        assert net.scales[-1].shape == (4,) and net.extra["v"].shape == (2,)
    assert layers["gpugrad"] == layers["torch"]


def test_assigning_a_plain_tensor_to_a_parameter_raises():
    layer = nn.Linear(2, 3)
    with pytest.raises(TypeError, match=r"cannot assign '.*' as parameter 'weight' "
                                        r"\(gpugrad.nn.Parameter or None expected\)"):
        layer.weight = gpugrad.zeros(3, 2)
    assert isinstance(layer.weight, nn.Parameter) and "weight" in dict(layer.named_parameters())
    layer.weight = nn.Parameter(gpugrad.zeros(3, 2))
    assert dict(layer.named_parameters())["weight"].abs().sum().item() == 0
    layer.bias = None
    assert "bias" not in dict(layer.named_parameters())
    assert layer(gpugrad.ones(1, 2)).tolist() == [[0.0, 0.0, 0.0]]


def test_inplace_activation_modules(rng):
    values = rng.uniform(-2, 2, (3, 4))
    for name in ("ReLU", "ReLU6", "ELU", "LeakyReLU", "Hardtanh", "SELU", "Hardswish", "Hardsigmoid", "SiLU",
                 "Mish", "Threshold"):
        x, tx = gpugrad.tensor(values), torch.tensor(values)
        args = (0.2, -1.0) if name == "Threshold" else ()
        module, tmodule = getattr(nn, name)(*args, inplace=True), getattr(torch.nn, name)(*args, inplace=True)
        assert module(x) is x and tmodule(tx) is tx
        assert_close(x, tx, 1e-12)
        if name not in ("Hardswish", "Hardsigmoid"):      # torch leaves inplace out of these two
            assert repr(module) == repr(tmodule)


def test_bilinear_matches_torch(rng, device):
    ours = gpugrad.nn.Bilinear(3, 4, 5).double().to(device)
    theirs = torch.nn.Bilinear(3, 4, 5).double()
    theirs.load_state_dict({k: torch.from_numpy(v.detach().cpu().numpy()) for k, v in ours.state_dict().items()})
    theirs = theirs.to(torch_device(device))
    assert repr(ours) == repr(theirs)
    a, ta = make_pair(rng, (2, 6, 3), device=device)
    b, tb = make_pair(rng, (2, 6, 4), device=device)
    assert_forward_backward(rng, ours(a, b), theirs(ta, tb), [(a, ta), (b, tb)], 1e-10)
    for p, q in zip(ours.parameters(), theirs.parameters()):
        assert_close(p.grad, q.grad, 1e-10, floor=1.0)
    x, y = make_pair(rng, (3,), device=device)[0], make_pair(rng, (4,), device=device)[0]
    assert tuple(gpugrad.nn.functional.bilinear(x, y, ours.weight).shape) == (5,)
    w = ours.weight.detach().requires_grad_()
    assert gradgradcheck(lambda p, q, r: gpugrad.nn.functional.bilinear(p, q, r, None) ** 2, (a[0], b[0], w))
    bound = 1 / 3 ** 0.5
    fresh = gpugrad.nn.Bilinear(3, 4, 50)
    assert float(fresh.weight.abs().max()) <= bound and float(fresh.bias.abs().max()) > 0.8 * bound
    assert gpugrad.nn.Bilinear(3, 4, 5, bias=False).bias is None
    for first, second, message in (((2, 3), (3, 4), "input batch dimensions do not match at dim 0: got 2 and 3"),
                                   ((2, 2), (2, 4), "input1 size does not match weight size: got 2 but expected 3"),
                                   ((2, 3), (2, 5), "input2 size does not match weight size: got 5 but expected 4")):
        with pytest.raises(RuntimeError, match=message):
            gpugrad.nn.functional.bilinear(gpugrad.ones(*first), gpugrad.ones(*second), gpugrad.ones(5, 3, 4))


def test_registering_a_name_of_another_kind_is_refused_as_torch():
    """register_buffer('weight', ...) over a Parameter was accepted (issue 25): torch's KeyError, and its
    checks of the name; nn.Linear(2.5, 3) built a layer (sizes are ints only)."""
    for lib in (torch, gpugrad):
        module = lib.nn.Linear(2, 3)
        with pytest.raises(KeyError, match="attribute 'weight' already exists"):
            module.register_buffer("weight", lib.ones(3, 2))
        with pytest.raises(KeyError, match="attribute 'forward' already exists"):
            module.register_buffer("forward", lib.ones(3, 2))
        norm = lib.nn.BatchNorm1d(3)
        with pytest.raises(KeyError, match="attribute 'running_mean' already exists"):
            norm.register_parameter("running_mean", lib.nn.Parameter(lib.ones(3)))
        with pytest.raises(KeyError, match="attribute 'weight' already exists"):
            module.add_module("weight", lib.nn.ReLU())
        with pytest.raises(KeyError, match="contain"):
            module.register_buffer("a.b", None)
        with pytest.raises(KeyError, match="empty string"):
            module.register_parameter("", None)
        with pytest.raises(TypeError, match="name should be a string"):
            module.register_buffer(3, None)
        module.register_buffer("weight_copy", lib.ones(3, 2))
        module.register_buffer("weight_copy", None)          # re-registering its own kind is fine
        assert module.weight_copy is None
    with pytest.raises(TypeError, match="a size must be a sequence of ints"):
        gpugrad.nn.Linear(2.5, 3)             # torch: TypeError from empty() (it built a 2.5-wide layer)
    with pytest.raises(TypeError):
        torch.nn.Linear(2.5, 3)
