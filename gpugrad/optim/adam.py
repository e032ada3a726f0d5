"""Adam and AdamW (with AMSGrad), torch's update rules."""

from gpugrad.optim.optimizer import (
    Optimizer,
    check_foreach_fused,
    device_step,
    host_step,
    step_counter,
    step_value,
    zeros_state,
)


class Adam(Optimizer):
    """Adam (and AMSGrad) with torch's update rule:

        g = grad + weight_decay * p            (Adam: L2 in the gradient)
        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None,
                 decoupled_weight_decay=False):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameters: {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        check_foreach_fused(foreach, fused, differentiable)
        if differentiable:
            raise NotImplementedError(f"{type(self).__name__}(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize, foreach=foreach, fused=fused,
                                      decoupled_weight_decay=bool(decoupled_weight_decay)))

    def init_state(self, param, group):
        state = {"step": step_counter(), "exp_avg": zeros_state(param), "exp_avg_sq": zeros_state(param)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros_state(param)
        return state

    def update(self, param, grad, state, group):
        xp = state["exp_avg"].xp
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        weight_decay = group["weight_decay"]
        if group["maximize"]:
            grad = -grad
        state["step"].array += 1
        step = step_value(state["step"].array)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"].array, state["exp_avg_sq"].array
        # in place, through one scratch array
        scratch = xp.subtract(grad, exp_avg)
        scratch *= 1 - beta1
        exp_avg += scratch                                  # torch's lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1 - beta2
        exp_avg_sq += scratch
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"].array
            xp.maximum(second, exp_avg_sq, out=second)
        else:
            second = exp_avg_sq
        denom = xp.sqrt(second, out=scratch)
        denom /= bias_correction2_sqrt
        denom += eps
        xp.divide(exp_avg, denom, out=denom)
        denom *= lr / bias_correction1
        param -= denom

    multi_tensor_kernel = "adam_step"
    multi_tensor_step_list = 5

    def multi_tensor_row(self, param, grad, state, group):
        (beta1, beta2), step = group["betas"], host_step(state)
        amsgrad = state["max_exp_avg_sq"].array if group["amsgrad"] else None
        return ((param.array, grad.array, state["exp_avg"].array, state["exp_avg_sq"].array, amsgrad,
                 device_step(state)),
                (group["lr"], beta1, beta2, group["eps"], group["weight_decay"], 1 - beta1 ** step,
                 (1 - beta2 ** step) ** 0.5, float(group["decoupled_weight_decay"]), float(group["maximize"])))


class AdamW(Adam):
    """Adam with decoupled weight decay (p = p * (1 - lr * weight_decay) before the Adam step)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         differentiable=differentiable, fused=fused, decoupled_weight_decay=True)
