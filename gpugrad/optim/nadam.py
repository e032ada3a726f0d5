"""NAdam and RAdam, torch's update rules."""

import numpy

from gpugrad import backend
from gpugrad.optim.optimizer import Optimizer, check_adam_arguments, step_counter, step_value, zeros_state
from gpugrad.tensor import Tensor


def _decay(param, grad, group):
    """The gradient after weight decay: L2 in the gradient, or (decoupled) the parameter shrunk in place."""
    weight_decay = group["weight_decay"]
    if weight_decay == 0:
        return grad
    if group["decoupled_weight_decay"]:
        param *= 1 - group["lr"] * weight_decay
        return grad
    return grad + weight_decay * param


def _moments(grad, state, betas):
    exp_avg, exp_avg_sq = state["exp_avg"].array, state["exp_avg_sq"].array
    exp_avg += (grad - exp_avg) * (1 - betas[0])             # torch's lerp_(grad, 1 - beta1)
    exp_avg_sq *= betas[1]
    exp_avg_sq += (1 - betas[1]) * (grad * grad)
    return exp_avg, exp_avg_sq


class NAdam(Optimizer):
    """Adam with Nesterov momentum (Dozat 2016) and torch's momentum schedule:

        mu_t = beta1 (1 - 0.5 * 0.96^(t * momentum_decay)),  mu_prod = mu_1 ... mu_t
        m, v as Adam;  denom = sqrt(v / (1 - beta2^t)) + eps
        p = p - lr (1 - mu_t) / (1 - mu_prod) g / denom - lr mu_{t+1} / (1 - mu_prod mu_{t+1}) m / denom

    ``decoupled_weight_decay=True`` shrinks p by lr * weight_decay instead (NAdamW).
    ``mu_product`` is kept as torch keeps it, a float32 on the CPU."""

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, momentum_decay=4e-3,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        if not 0.0 <= momentum_decay:
            raise ValueError(f"Invalid momentum_decay value: {momentum_decay}")
        if differentiable:
            raise NotImplementedError("NAdam(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      momentum_decay=momentum_decay, decoupled_weight_decay=decoupled_weight_decay,
                                      maximize=maximize))

    def init_state(self, param, group):
        return {"step": step_counter(), "mu_product": Tensor._make(numpy.ones((), dtype=numpy.float32)),
                "exp_avg": zeros_state(param), "exp_avg_sq": zeros_state(param)}

    def update(self, param, grad, state, group):
        xp = state["exp_avg"].xp
        lr, betas, eps = group["lr"], group["betas"], group["eps"]
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        step = step_value(state["step"].array)
        bias_correction2 = 1 - betas[1] ** step
        grad = _decay(param, grad, group)
        mu = betas[0] * (1.0 - 0.5 * (0.96 ** (step * group["momentum_decay"])))
        mu_next = betas[0] * (1.0 - 0.5 * (0.96 ** ((step + 1) * group["momentum_decay"])))
        mu_product = state["mu_product"].array
        mu_product *= mu
        product = step_value(mu_product)
        exp_avg, exp_avg_sq = _moments(grad, state, betas)
        denom = xp.sqrt(exp_avg_sq / bias_correction2)
        denom += eps
        param += (-lr * (1.0 - mu) / (1.0 - product)) * (grad / denom)
        param += (-lr * mu_next / (1.0 - product * mu_next)) * (exp_avg / denom)

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        for state in self.state.values():        # mu_product stays a float32 on the CPU, as torch's
            if "mu_product" in state:
                state["mu_product"] = Tensor._make(numpy.asarray(
                    backend.to_device(state["mu_product"].array, backend.CPU), dtype=numpy.float32))


class RAdam(Optimizer):
    """Rectified Adam (Liu et al. 2019) with torch's update rule: Adam's moments;
    while the variance's rectification term rho_t <= 5 the step is
    lr * m / (1 - beta1^t) (momentum only), after it that step times
    r_t sqrt(1 - beta2^t) / (sqrt(v) + eps).  ``decoupled_weight_decay=True``
    shrinks p by lr * weight_decay instead (RAdamW)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False):
        check_adam_arguments(lr, betas, eps, weight_decay)
        if differentiable:
            raise NotImplementedError("RAdam(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled_weight_decay=decoupled_weight_decay, maximize=maximize))

    def init_state(self, param, group):
        return {"step": step_counter(), "exp_avg": zeros_state(param), "exp_avg_sq": zeros_state(param)}

    def update(self, param, grad, state, group):
        xp = state["exp_avg"].xp
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        step = step_value(state["step"].array)
        grad = _decay(param, grad, group)
        exp_avg, exp_avg_sq = _moments(grad, state, (beta1, beta2))
        bias_correction1 = 1 - beta1 ** step
        bias_correction2 = 1 - beta2 ** step
        corrected = exp_avg / bias_correction1
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2 ** step) / bias_correction2
        if rho_t > 5.0:
            rect = ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            adaptive = (bias_correction2 ** 0.5) / (xp.sqrt(exp_avg_sq) + eps)
            param -= corrected * lr * adaptive * rect
        else:
            param -= corrected * lr
