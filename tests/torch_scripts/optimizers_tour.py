"""The optimizers and learning-rate schedulers people pick from torch.optim,
each training the same small regression network from the same start, as
comparison notebooks do: SGD (momentum, nesterov), Adagrad, RMSprop
(centered), Adadelta, Adam (amsgrad), AdamW, Adamax, NAdam, RAdam, with
StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts,
CyclicLR, LinearLR, SequentialLR, PolynomialLR and ReduceLROnPlateau;
param groups with their own lr, state_dict round trips, zero_grad
set_to_none.  Small local data from NumPy, float64."""

import copy

import numpy as np
import torch
import torch.nn as nn
from torch import optim
from torch.optim import lr_scheduler

rng = np.random.default_rng(3)
X = torch.from_numpy(rng.uniform(-2, 2, (64, 3)))
y = torch.sin(X[:, :1]) + X[:, 1:2] * X[:, 2:3]
base = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)).double()
with torch.no_grad():
    for p in base.parameters():
        p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, tuple(p.shape))))

setups = [
    ("SGD", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True), lambda o: lr_scheduler.StepLR(o, 5, 0.5)),
    ("Adagrad", lambda ps: optim.Adagrad(ps, lr=0.1), lambda o: lr_scheduler.MultiStepLR(o, [4, 8], 0.3)),
    ("RMSprop", lambda ps: optim.RMSprop(ps, lr=0.01, centered=True), lambda o: lr_scheduler.ExponentialLR(o, 0.9)),
    ("Adadelta", lambda ps: optim.Adadelta(ps, lr=1.0), lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=12)),
    ("Adam", lambda ps: optim.Adam(ps, lr=0.02, amsgrad=True),
     lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)),
    ("AdamW", lambda ps: optim.AdamW(ps, lr=0.02, weight_decay=0.1),
     lambda o: lr_scheduler.CyclicLR(o, 0.001, 0.02, step_size_up=3, cycle_momentum=False)),
    ("Adamax", lambda ps: optim.Adamax(ps, lr=0.05), lambda o: lr_scheduler.LinearLR(o, 0.2, 1.0, total_iters=5)),
    ("NAdam", lambda ps: optim.NAdam(ps, lr=0.02),
     lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.ConstantLR(o, 0.5, total_iters=3),
                                            lr_scheduler.ExponentialLR(o, 0.95)], milestones=[3])),
    ("RAdam", lambda ps: optim.RAdam(ps, lr=0.05), lambda o: lr_scheduler.PolynomialLR(o, total_iters=12, power=2.0)),
    ("SGD+plateau", lambda ps: optim.SGD(ps, lr=0.1), lambda o: lr_scheduler.ReduceLROnPlateau(o, patience=1)),
]
criterion = nn.MSELoss()
for name, make_optimizer, make_scheduler in setups:
    model = copy.deepcopy(base)
    optimizer = make_optimizer([{"params": model[0].parameters()},
                                {"params": model[2].parameters(), "lr": 0.01}])
    scheduler = make_scheduler(optimizer)
    for epoch in range(12):
        for i in range(0, 64, 32):
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(X[i:i + 32]), y[i:i + 32])
            loss.backward()
            optimizer.step()
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(loss.item())
        else:
            scheduler.step()
    state = optimizer.state_dict()
    restored = make_optimizer([{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}])
    restored.load_state_dict(state)
    lrs = [round(group["lr"], 8) for group in optimizer.param_groups]
    print(f"{name:12s} loss {criterion(model(X), y).item():.6f} lrs {lrs} state keys "
          f"{sorted(state['state'].get(0, {}).keys())} restored {restored.param_groups[1]['lr'] == lrs[1]}")
