"""SGD with momentum, dampening, Nesterov momentum and weight decay."""

from gpugrad.optim.optimizer import Optimizer, check_foreach_fused
from gpugrad.tensor import Tensor


class SGD(Optimizer):
    """Stochastic gradient descent with torch's update rule:

        g = grad + weight_decay * p
        b = g (first step), else momentum * b + (1 - dampening) * g
        g = g + momentum * b (nesterov), else b
        p = p - lr * g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, foreach=None, differentiable=False, fused=None):
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        check_foreach_fused(foreach, fused, differentiable)
        if differentiable:
            raise NotImplementedError("SGD(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                                      foreach=foreach, fused=fused))

    multi_tensor_kernel = "sgd_step"

    def multi_tensor_row(self, param, grad, state, group):
        buf, first = None, False
        if group["momentum"] != 0:
            if state.get("momentum_buffer") is None:
                # written with the gradient by the kernel (zeros should the step be skipped)
                state["momentum_buffer"] = Tensor._make(param.xp.zeros_like(param.array))
                first = True
            buf = state["momentum_buffer"].array
        return ((param.array, grad.array, buf),
                (group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                 float(group["nesterov"]), float(group["maximize"]), float(first)))

    def update(self, param, grad, state, group):
        lr, momentum = group["lr"], group["momentum"]
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                state["momentum_buffer"] = Tensor._make(grad.copy())
                buf = state["momentum_buffer"].array
            else:
                buf = buf.array
                buf *= momentum
                buf += (1 - group["dampening"]) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= lr * grad
