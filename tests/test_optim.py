"""gpugrad/optim against torch.optim: 20 steps from identical weights agree to
1e-10 in float64; schedulers give the same learning rates; state round trips."""

import numpy
import pytest
import torch
from conftest import assert_close, to_torch

import gpugrad
from gpugrad import nn

OPTIMIZERS = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.02}),
    ("SGD", {"lr": 0.05, "momentum": 0.5, "maximize": True}),
    ("Adam", {"lr": 0.01}),
    ("Adam", {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 0.05}),
    ("Adam", {"lr": 0.01, "amsgrad": True}),
    ("AdamW", {"lr": 0.01}),
    ("AdamW", {"lr": 0.02, "weight_decay": 0.1, "amsgrad": True}),
]


def _models(device):
    torch.manual_seed(1)
    theirs = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    ours = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double().to(device)
    if device == "cuda":
        theirs = theirs.cuda()
    ours.load_state_dict({k: gpugrad.tensor(v.detach().cpu().numpy(), device=device)
                          for k, v in theirs.state_dict().items()})
    return ours, theirs


def _train(ours, theirs, opt, topt, rng, device, steps=20, sched=None, tsched=None):
    for _ in range(steps):
        x = rng.standard_normal((16, 5))
        t = rng.integers(0, 3, 16)
        loss = nn.functional.cross_entropy(ours(gpugrad.tensor(x, device=device)), gpugrad.tensor(t, device=device))
        tloss = torch.nn.functional.cross_entropy(theirs(to_torch(x, device=device)), to_torch(t, device=device))
        opt.zero_grad()
        topt.zero_grad()
        loss.backward()
        tloss.backward()
        opt.step()
        topt.step()
        if sched is not None:
            sched.step()
            tsched.step()
            assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-15)


@pytest.mark.parametrize("name,options", OPTIMIZERS, ids=lambda v: str(v))
def test_twenty_steps_match_torch(rng, device, name, options):
    ours, theirs = _models(device)
    opt = getattr(gpugrad.optim, name)(ours.parameters(), **options)
    topt = getattr(torch.optim, name)(theirs.parameters(), **options)
    _train(ours, theirs, opt, topt, rng, device)
    tparams = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param, tparams[key], 1e-10)


@pytest.mark.parametrize("scheduler,options", [("StepLR", {"step_size": 3, "gamma": 0.5}),
                                               ("CosineAnnealingLR", {"T_max": 7, "eta_min": 0.001})])
def test_schedulers_match_torch(rng, scheduler, options):
    ours, theirs = _models("cpu")
    opt = gpugrad.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9)
    sched = getattr(gpugrad.optim.lr_scheduler, scheduler)(opt, **options)
    tsched = getattr(torch.optim.lr_scheduler, scheduler)(topt, **options)
    _train(ours, theirs, opt, topt, rng, "cpu", steps=20, sched=sched, tsched=tsched)
    tparams = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param, tparams[key], 1e-10)


def test_param_groups_and_zero_grad(rng):
    ours, theirs = _models("cpu")
    groups = [{"params": ours[0].parameters(), "lr": 0.1}, {"params": ours[2].parameters()}]
    tgroups = [{"params": theirs[0].parameters(), "lr": 0.1}, {"params": theirs[2].parameters()}]
    opt = gpugrad.optim.Adam(groups, lr=0.01)
    topt = torch.optim.Adam(tgroups, lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    _train(ours, theirs, opt, topt, rng, "cpu", steps=5)
    tparams = dict(theirs.named_parameters())
    for key, param in ours.named_parameters():
        assert_close(param, tparams[key], 1e-10)
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and p.grad.abs().sum().item() == 0 for p in ours.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in ours.parameters())


def _steps(model, optimizer, seed, steps=3):
    batches = numpy.random.default_rng(seed)
    for _ in range(steps):
        x = gpugrad.tensor(batches.standard_normal((16, 5)))
        t = gpugrad.tensor(batches.integers(0, 3, 16))
        loss = nn.functional.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_state_dict_round_trip_resumes_exactly(tmp_path):
    """Train, checkpoint, train on; a fresh copy loaded from the checkpoint and
    trained on the same batches ends at the same weights."""
    original, _ = _models("cpu")
    opt = gpugrad.optim.Adam(original.parameters(), lr=0.01)
    _steps(original, opt, seed=1, steps=5)
    gpugrad.save({"model": original.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "ckpt.npz")
    _steps(original, opt, seed=2)

    checkpoint = gpugrad.load(tmp_path / "ckpt.npz")
    resumed, _ = _models("cpu")
    resumed.load_state_dict(checkpoint["model"])
    resumed_opt = gpugrad.optim.Adam(resumed.parameters(), lr=0.5)
    resumed_opt.load_state_dict(checkpoint["optimizer"])
    assert resumed_opt.param_groups[0]["lr"] == 0.01
    _steps(resumed, resumed_opt, seed=2)
    x = gpugrad.randn(4, 5, dtype=gpugrad.float64)
    assert_close(resumed(x), original(x), 0)


def test_invalid_hyper_parameters():
    p = [nn.Parameter(gpugrad.zeros(2))]
    with pytest.raises(ValueError, match="Invalid learning rate"):
        gpugrad.optim.SGD(p, lr=-1)
    with pytest.raises(ValueError, match="Nesterov"):
        gpugrad.optim.SGD(p, lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="Invalid beta"):
        gpugrad.optim.Adam(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty parameter list"):
        gpugrad.optim.Adam([])
