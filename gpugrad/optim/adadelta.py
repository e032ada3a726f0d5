"""Adadelta, torch's update rule."""

from gpugrad.optim.optimizer import Optimizer, step_counter, zeros_state


class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012) with torch's update rule:

        g = grad + weight_decay * p
        v = rho v + (1 - rho) g^2
        delta = sqrt(u + eps) / sqrt(v + eps) * g
        u = rho u + (1 - rho) delta^2
        p = p - lr * delta
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *, capturable=False,
                 maximize=False, differentiable=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable:
            raise NotImplementedError("Adadelta(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize))

    def init_state(self, param, group):
        return {"step": step_counter(), "square_avg": zeros_state(param), "acc_delta": zeros_state(param)}

    def update(self, param, grad, state, group):
        xp = state["square_avg"].xp
        lr, rho, eps = group["lr"], group["rho"], group["eps"]
        state["step"].array += 1
        if group["maximize"]:
            grad = -grad
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        square_avg, acc_delta = state["square_avg"].array, state["acc_delta"].array
        square_avg *= rho
        square_avg += (1 - rho) * (grad * grad)
        std = xp.sqrt(square_avg + eps)
        delta = xp.sqrt(acc_delta + eps)
        delta /= std
        delta *= grad
        acc_delta *= rho
        acc_delta += (1 - rho) * (delta * delta)
        delta *= lr
        param -= delta
