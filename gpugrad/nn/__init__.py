"""Neural-network building blocks with torch.nn's names."""

from gpugrad.nn import functional, init, parallel, utils
from gpugrad.nn.functional import LinearCrossEntropyOptions  # noqa: F401,E402
from gpugrad.nn.modules import *  # noqa: F401,F403
from gpugrad.nn.modules import Module, Parameter  # noqa: F401
