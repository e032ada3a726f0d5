"""Adam and AdamW (with AMSGrad), torch's update rules."""

from gpugrad.optim.optimizer import Optimizer, step_counter, step_value, zeros_state


class Adam(Optimizer):
    """Adam (and AMSGrad) with torch's update rule:

        g = grad + weight_decay * p            (Adam: L2 in the gradient)
        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
        p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
    """

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None):
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameters: {betas}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if differentiable:
            raise NotImplementedError(f"{type(self).__name__}(differentiable=True) is not supported")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

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
            if self.decoupled_weight_decay:
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


class AdamW(Adam):
    """Adam with decoupled weight decay (p = p * (1 - lr * weight_decay) before the Adam step)."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 foreach=None, maximize=False, capturable=False, differentiable=False, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         differentiable=differentiable)
