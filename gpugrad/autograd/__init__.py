"""Reverse-mode automatic differentiation (torch.autograd's names): backward,
grad, Function, the grad modes, and the tools built on them
(``functional``: jacobian, hessian, vjp, jvp, hvp, vhp; gradcheck)."""

from gpugrad.autograd import functional, graph
from gpugrad.autograd.engine import backward, grad
from gpugrad.autograd.function import Function
from gpugrad.autograd.grad_mode import (
                                        enable_grad,
                                        inference_mode,
                                        is_grad_enabled,
                                        is_inference_mode_enabled,
                                        no_grad,
                                        set_grad_enabled,
)
from gpugrad.autograd.gradcheck import GradcheckError, gradcheck, gradgradcheck
from gpugrad.autograd.variable import Variable

__all__ = ["Function", "backward", "grad", "no_grad", "enable_grad", "set_grad_enabled", "inference_mode",
           "is_grad_enabled", "is_inference_mode_enabled", "functional", "graph", "gradcheck", "gradgradcheck",
           "GradcheckError", "Variable"]
