"""Adamax, torch's update rule."""

from gpugrad.optim.optimizer import Optimizer, check_adam_arguments, step_counter, step_value, zeros_state


class Adamax(Optimizer):
    """Adamax (Adam with the infinity norm) with torch's update rule:

        g = grad + weight_decay * p
        m = beta1 m + (1 - beta1) g;  u = max(beta2 u, |g| + eps)
        p = p - lr / (1 - beta1^t) * m / u
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, foreach=None, *,
                 maximize=False, differentiable=False, capturable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        if differentiable:
            raise NotImplementedError("Adamax(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      maximize=maximize))

    def init_state(self, param, group):
        return {"step": step_counter(), "exp_avg": zeros_state(param), "exp_inf": zeros_state(param)}

    def update(self, param, grad, state, group):
        xp = state["exp_avg"].xp
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        step = step_value(state["step"].array)
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        exp_avg, exp_inf = state["exp_avg"].array, state["exp_inf"].array
        exp_avg += (grad - exp_avg) * (1 - beta1)            # torch's lerp_(grad, 1 - beta1)
        exp_inf *= beta2
        xp.maximum(exp_inf, xp.abs(grad) + eps, out=exp_inf)
        param -= (lr / (1 - beta1 ** step)) * (exp_avg / exp_inf)
