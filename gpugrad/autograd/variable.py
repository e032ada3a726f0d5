"""autograd.Variable: since torch 0.4 a plain Tensor.  ``Variable(t,
requires_grad=...)`` returns a new leaf sharing ``t``'s data (``t.detach()``
with requires_grad set) and ``isinstance(x, Variable)`` holds for every
Tensor, as in torch."""

import warnings

from gpugrad.tensor import Tensor


class _VariableMeta(type):
    def __instancecheck__(cls, other):
        return isinstance(other, Tensor)


class Variable(metaclass=_VariableMeta):
    """``Variable(data, requires_grad=False, volatile=False)`` -> a Tensor."""

    def __new__(cls, data, requires_grad=False, volatile=False):
        if not isinstance(data, Tensor):
            raise TypeError(f"Variable data has to be a tensor, but got {type(data).__name__}")
        if volatile:
            warnings.warn("volatile was removed and now has no effect. Use `with torch.no_grad():` instead.",
                          UserWarning, stacklevel=2)
        return data.detach().requires_grad_(requires_grad)
