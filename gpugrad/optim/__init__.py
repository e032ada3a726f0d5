"""Optimizers with torch.optim's names and update rules."""

from gpugrad.optim import lr_scheduler
from gpugrad.optim.adadelta import Adadelta
from gpugrad.optim.adam import (
    Adam,
    AdamW,
)
from gpugrad.optim.adamax import Adamax
from gpugrad.optim.lbfgs import LBFGS
from gpugrad.optim.nadam import (
    NAdam,
    RAdam,
)
from gpugrad.optim.optimizer import Optimizer
from gpugrad.optim.rmsprop import (
    Adagrad,
    RMSprop,
)
from gpugrad.optim.sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "LBFGS",
    "lr_scheduler",
]
