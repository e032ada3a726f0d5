"""Optimizer: parameter groups, per-parameter state, zero_grad, state_dict."""

import copy

import numpy

from gpugrad import backend
from gpugrad.tensor import Tensor


class Optimizer:
    """Base class: ``params`` is an iterable of tensors or of dicts (parameter
    groups with their own hyper-parameters); ``defaults`` fill in the rest."""

    def __init__(self, params, defaults):
        self.defaults = defaults
        self.state = {}
        self.param_groups = []
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        for group in params:
            self.add_param_group(group)

    def add_param_group(self, group):
        group = dict(group)
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
        from gpugrad.nn.utils import zero_grad_
        zero_grad_(self._params(), set_to_none)

    def step(self, closure=None):
        raise NotImplementedError

    @staticmethod
    def _evaluate(closure):
        """The loss from ``closure`` (which recomputes it with grad enabled), or None."""
        if closure is None:
            return None
        from gpugrad.autograd.grad_mode import enable_grad
        with enable_grad():
            return closure()

    # -- state -------------------------------------------------------------------------
    def _params(self):
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self):
        """{'state': {index: {name: value}}, 'param_groups': [...]} with parameters as indices."""
        index = {id(p): i for i, p in enumerate(self._params())}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {k: (Tensor._make(v.copy()) if _is_array(v) else v) for k, v in s.items()}
                 for p, s in ((p, self.state[p]) for p in self._params() if p in self.state)}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        params = self._params()
        self.state = {params[int(key)]: {k: _restore(v, params[int(key)]) for k, v in values.items()}
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


def _is_array(value):
    return isinstance(value, numpy.ndarray) or backend.is_cupy_array(value)


def _restore(value, param):
    """A state entry as an array on the parameter's device (floats in its dtype), owned."""
    if isinstance(value, Tensor) or _is_array(value):
        data = backend.to_device(value.data if isinstance(value, Tensor) else value, param.device)
        if data.dtype.kind == "f":
            data = data.astype(param.dtype, copy=False)
        return data.copy()
    return copy.deepcopy(value)
