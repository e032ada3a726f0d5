"""Optimizer: parameter groups, per-parameter state, zero_grad, state_dict.

Subclasses implement ``update(param, grad, state, group)`` on raw arrays
(one fused pass per parameter, in place) and the base class walks the
groups: it skips parameters without a gradient, creates the state on first
use, and marks each parameter as changed (its version goes up, so a graph that
saved the old value raises instead of using the new one).

On the GPU, SGD, Adam, AdamW, RMSprop and Adagrad update every parameter of a
dtype in one launch (``multi_tensor_kernel``, kernels/optimizers.cu; torch's
``foreach`` / ``fused`` paths): a subclass gives each parameter's arrays and
numbers (``multi_tensor_row``), and the base class groups them by device and
dtype.  ``foreach=False`` keeps the loop over parameters.
"""

import copy

from gpugrad import backend
from gpugrad.autograd.grad_mode import enable_grad, no_grad
from gpugrad.cuda import multi_tensor
from gpugrad.nn.utils import zero_grad_
from gpugrad.tensor import Tensor


class Optimizer:
    """Base class: ``params`` is an iterable of tensors or of dicts (parameter
    groups with their own hyper-parameters); ``defaults`` fill in the rest.
    ``state[p]`` maps names to Tensors (``opt.state[p]['exp_avg']``)."""

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {params.type()}")
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, param_group):
        """Add a group of parameters (a dict with 'params' and options)."""
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter (to None, or to zeros in place)."""
        zero_grad_(self._params(), set_to_none)

    multi_tensor_kernel = None     # a subclass's step in kernels/optimizers.cu, if it has one
    multi_tensor_step_list = None  # the index of its rows' step counter, if they have one

    def multi_tensor_row(self, param, grad, state, group):
        """(arrays, numbers) of one CUDA parameter for ``multi_tensor_kernel``,
        in the kernel's order; a host step count is advanced here."""
        raise NotImplementedError

    @no_grad()
    def step(self, closure=None):
        """One update of every parameter that has a gradient; returns the
        closure's loss when a closure (which recomputes it) is given."""
        loss = _call(closure)
        self._step(None)
        return loss

    @no_grad()
    def step_unless(self, found_inf, closure=None):
        """``step()``, skipped where the 0-d float32 device array ``found_inf``
        is not 0, without reading it back to the host (GradScaler on the GPU).
        The step counts move to the parameters' device for this (as torch's
        capturable optimizers).  The multi-tensor kernels read the flag
        themselves; elsewhere each update runs on copies of the parameter and
        its state, written back only where ``found_inf`` is 0."""
        loss = _call(closure)
        self._step(found_inf)
        return loss

    def _step(self, found_inf):
        batched = []
        for p, grad, state, group in self._updates():
            if found_inf is not None:
                for name, value in state.items():
                    if isinstance(value, Tensor) and value.device != p.device:
                        state[name] = value.to(p.device)
            if self.multi_tensor_kernel is not None and _batched(p, grad, group):
                batched.append((p, grad, state, group))
            elif found_inf is None:
                self.update(p.array, grad.array, state, group)
                p.increment_version()
            else:
                self._update_unless(found_inf, p, grad, state, group)
        if batched:
            self._multi_tensor_update(batched, found_inf)

    def _update_unless(self, found_inf, p, grad, state, group):
        xp = p.xp
        keep = found_inf == 0
        work = {name: Tensor._make(value.array.copy()) if isinstance(value, Tensor) else value
                for name, value in state.items()}
        param = p.array.copy()
        self.update(param, grad.array, work, group)
        xp.copyto(p.array, param, where=keep)
        for name, value in work.items():
            if not isinstance(value, Tensor):
                continue
            if name in state:
                xp.copyto(state[name].array, value.array, where=keep)
            else:          # created by this update (SGD's momentum buffer): zeros where skipped
                state[name] = Tensor._make(xp.where(keep, value.array, 0).astype(value.dtype))
        p.increment_version()

    def _multi_tensor_update(self, updates, found_inf):
        """The batched updates: one launch per device and dtype."""
        launches = {}
        for p, grad, state, group in updates:
            arrays, numbers = self.multi_tensor_row(p, grad, state, group)
            rows, values = launches.setdefault((p.get_device(), p.dtype), ([], []))
            rows.append(arrays)
            values.append(numbers)
        step_list = self.multi_tensor_step_list
        for rows, values in launches.values():
            device_steps = step_list is not None and any(r[step_list] is not None for r in rows)
            multi_tensor.optimizer_step(self.multi_tensor_kernel, rows, values, found_inf,
                                        step_list if device_steps else None)
        for p, *_ in updates:
            p.increment_version()

    def _updates(self):
        """(parameter, gradient, state, group) for each parameter with a gradient, its
        state created on the first step; a gradient that does not fit raises."""
        for group in self.param_groups:
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_cuda != p.is_cuda or grad.shape != p.shape:
                    raise RuntimeError(f"a gradient of shape {list(grad.shape)} on {grad.device} for a parameter "
                                       f"of shape {list(p.shape)} on {p.device}")
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self.init_state(p, group)
                yield p, grad, state, group

    def init_state(self, param, group):
        """The state of a parameter on its first step (a dict of Tensors)."""
        return {}

    def update(self, param, grad, state, group):
        raise NotImplementedError

    # -- state -------------------------------------------------------------------------
    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{'state': {index: {name: value}}, 'param_groups': [...]} with
        parameters as indices (tensors copied)."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: (v.clone().detach() if isinstance(v, Tensor) else copy.deepcopy(v))
                                for k, v in s.items()}
                 for p, s in ((p, self.state[p]) for p in self._params() if p in self.state)}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what state_dict returned (tensors moved to each parameter's
        device, floating ones cast to its dtype)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        params = self._params()
        self.state = {params[int(key)]: {k: _restore(k, v, params[int(key)]) for k, v in values.items()}
                      for key, values in state_dict["state"].items()}
        for group, loaded in zip(self.param_groups, groups):
            for k, v in loaded.items():
                if k != "params":
                    group[k] = v

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines + [")"])


def _restore(name, value, param):
    """A state entry as a tensor on the parameter's device (floats in its dtype, except 'step'), owned."""
    if isinstance(value, Tensor) or backend.is_array(value):
        tensor = value if isinstance(value, Tensor) else Tensor._make(value)
        dtype = param.dtype if tensor.is_floating_point() and name != "step" else None
        return tensor.to(device=param.device if name != "step" else tensor.device, dtype=dtype).clone()
    return copy.deepcopy(value)


def _batched(param, grad, group):
    """Whether a parameter goes through the multi-tensor kernel: on CUDA,
    contiguous, unless the group asked for the loop (foreach=False, fused unset)."""
    if not param.is_cuda or (group.get("foreach") is False and not group.get("fused")):
        return False
    return param.array.flags.c_contiguous and grad.array.flags.c_contiguous


def check_foreach_fused(foreach, fused, differentiable=False):
    """torch's errors for the implementation flags."""
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")


def device_step(state):
    """The array of a parameter's step counter when it lives on the GPU (the
    kernel reads and increments it there), else None."""
    step = state["step"]
    return step.array if step.is_cuda else None


def host_step(state):
    """Advance a parameter's step counter (on the CPU, as torch keeps it) and
    return its new value as a Python float; 0.0 for a counter on the GPU, which
    the kernel advances."""
    step = state["step"]
    if step.is_cuda:
        return 0.0
    step.array += 1
    return float(step.array)


def check_adam_arguments(lr, betas, eps, weight_decay):
    """torch's ValueErrors for the arguments of the Adam family."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def zeros_state(param):
    """A zero Tensor like a parameter (optimizer state)."""
    return Tensor._make(param.xp.zeros_like(param.array))


def step_counter():
    """The step count of a parameter's state, a float32 0-d tensor on the CPU, as torch keeps it."""
    return Tensor._make(backend.xp_for_device(backend.CPU).zeros((), dtype="float32"))


def step_value(step):
    """A step count for the update's arithmetic: a Python float when it lives on
    the CPU (torch's default), else the device's 0-d array (no host sync)."""
    return float(step) if backend.is_array(step) and not backend.is_cupy_array(step) else step


def _call(closure):
    """The closure's loss, computed with grad on (None without a closure)."""
    if closure is None:
        return None
    with enable_grad():
        return closure()
