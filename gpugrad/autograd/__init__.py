"""Reverse-mode automatic differentiation (torch.autograd's names): backward,
grad, Function, the grad modes, and the tools built on them
(``functional``: jacobian, hessian, vjp, jvp, hvp, vhp; ``gradient_check``:
gradcheck, gradgradcheck).

The package spans layers: ``grad_mode`` and ``graph`` sit below Tensor
(tensor.py imports them, and so runs this file), the rest above it (they
import Tensor, the tools the ops too).  So this file imports only the two
below Tensor; the names of the others are loaded on first use
(``__getattr__``, PEP 562), and no import of a module of gpugrad goes round
in a circle through here.
"""

import importlib

from gpugrad.autograd import graph
from gpugrad.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)

# name -> the submodule that defines it (None: the name is the submodule)
_ABOVE_TENSOR = {
    "Function": "function",
    "backward": "engine",
    "grad": "engine",
    "functional": None,
    "gradcheck": "gradient_check",
    "gradgradcheck": "gradient_check",
    "GradcheckError": "gradient_check",
    "Variable": "variable",
}

__all__ = [
    "Function",
    "backward",
    "grad",
    "no_grad",
    "enable_grad",
    "set_grad_enabled",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "functional",
    "graph",
    "gradcheck",
    "gradgradcheck",
    "GradcheckError",
    "Variable",
]


def __getattr__(name):
    if name not in _ABOVE_TENSOR:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_ABOVE_TENSOR[name] or name}")
    value = module if _ABOVE_TENSOR[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_ABOVE_TENSOR))
