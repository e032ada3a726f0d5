"""Neural-network building blocks with torch.nn's names."""

from gpugrad.nn import (
    functional,
    init,
    parallel,
    utils,
)
from gpugrad.nn.modules import *  # noqa: F401,F403
from gpugrad.nn.modules import (  # noqa: F401
    Module,
    Parameter,
)
