"""Optimizers with torch.optim's names and update rules."""

from gpugrad.optim import lr_scheduler
from gpugrad.optim.adam import Adam, AdamW
from gpugrad.optim.optimizer import Optimizer
from gpugrad.optim.rmsprop import Adagrad, RMSprop
from gpugrad.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "lr_scheduler"]
