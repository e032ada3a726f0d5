"""RMSprop and Adagrad, torch's update rules."""

from gpugrad.optim.optimizer import (
    Optimizer,
    check_foreach_fused,
    device_step,
    host_step,
    step_counter,
    step_value,
    zeros_state,
)
from gpugrad.tensor import Tensor


class RMSprop(Optimizer):
    """v = alpha v + (1 - alpha) g^2; (centered: minus the running mean of g,
    squared); p -= lr * g / (sqrt(v) + eps), with optional momentum and weight decay."""

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                 capturable=False, foreach=None, maximize=False, differentiable=False):
        for name, value in (("learning rate", lr), ("epsilon value", eps), ("momentum value", momentum),
                            ("weight_decay value", weight_decay), ("alpha value", alpha)):
            if value < 0:
                raise ValueError(f"Invalid {name}: {value}")
        check_foreach_fused(foreach, None, differentiable)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
                                      centered=centered, maximize=maximize, foreach=foreach))

    def init_state(self, param, group):
        state = {"step": step_counter(), "square_avg": zeros_state(param)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros_state(param)
        if group["centered"]:
            state["grad_avg"] = zeros_state(param)
        return state

    def update(self, param, grad, state, group):
        xp = state["square_avg"].xp
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        alpha = group["alpha"]
        square_avg = state["square_avg"].array
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"].array
            grad_avg += (grad - grad_avg) * (1 - alpha)
            avg = xp.sqrt(square_avg - grad_avg * grad_avg)
        else:
            avg = xp.sqrt(square_avg)
        avg += group["eps"]
        if group["momentum"] > 0:
            buf = state["momentum_buffer"].array
            buf *= group["momentum"]
            buf += grad / avg
            param -= group["lr"] * buf
        else:
            param -= group["lr"] * (grad / avg)

    multi_tensor_kernel = "rmsprop_step"
    multi_tensor_step_list = 5

    def multi_tensor_row(self, param, grad, state, group):
        host_step(state)
        buf = state["momentum_buffer"].array if group["momentum"] > 0 else None
        grad_avg = state["grad_avg"].array if group["centered"] else None
        return ((param.array, grad.array, state["square_avg"].array, buf, grad_avg, device_step(state)),
                (group["lr"], group["alpha"], group["eps"], group["weight_decay"], group["momentum"],
                 float(group["maximize"])))


class Adagrad(Optimizer):
    """sum += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(sum) + eps)."""

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                 foreach=None, *, maximize=False, differentiable=False, fused=None):
        for name, value in (("learning rate", lr), ("lr_decay", lr_decay), ("weight_decay value", weight_decay),
                            ("initial_accumulator_value", initial_accumulator_value), ("epsilon value", eps)):
            if value < 0:
                raise ValueError(f"Invalid {name}: {value}")
        check_foreach_fused(foreach, fused, differentiable)
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value, maximize=maximize,
                                      foreach=foreach, fused=fused))
        for group in self.param_groups:     # torch creates Adagrad's state eagerly
            for p in group["params"]:
                self.state[p] = self.init_state(p, group)

    def init_state(self, param, group):
        total = param.xp.full(param.shape, group["initial_accumulator_value"], dtype=param.dtype)
        return {"step": step_counter(), "sum": Tensor._make(total)}

    def update(self, param, grad, state, group):
        xp = state["sum"].xp
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        step = step_value(state["step"].array)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        total = state["sum"].array
        total += grad * grad
        std = xp.sqrt(total)
        std += group["eps"]
        param -= clr * (grad / std)

    multi_tensor_kernel = "adagrad_step"
    multi_tensor_step_list = 3

    def multi_tensor_row(self, param, grad, state, group):
        step = host_step(state)
        return ((param.array, grad.array, state["sum"].array, device_step(state)),
                (group["lr"], group["lr_decay"], group["weight_decay"], group["eps"],
                 group["lr"] / (1 + (step - 1) * group["lr_decay"]), float(group["maximize"])))
