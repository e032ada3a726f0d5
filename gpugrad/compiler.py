"""torch.compile as the identity.  gpugrad runs every op eagerly (its
kernels are compiled once, per op); there is no graph capture to compile, so
``gpugrad.compile(model)`` returns ``model`` itself and says so once per
process with a UserWarning.  Also torch.compiler's ``disable`` (the identity)
and ``is_compiling`` (False)."""

import warnings

_warned = False


def compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None, options=None, name=None,
            disable=False, **kwargs):
    """``model`` unchanged (a module or a function); as a decorator with or
    without arguments (``@compile``, ``@compile(mode="max-autotune")``)."""
    global _warned
    if not _warned and not disable:
        _warned = True
        warnings.warn("gpugrad.compile returns the model unchanged: gpugrad runs eagerly and has no compiler",
                      UserWarning, stacklevel=2)
    if model is None:
        return lambda function: function
    if not callable(model):
        raise AssertionError(f"A callable function is expected, but {type(model)} is provided.")
    return model


def disable(fn=None, recursive=True, *, reason=None):
    """The identity (nothing is compiled to be excluded from)."""
    if fn is None:
        return lambda function: function
    return fn


def is_compiling():
    """False: nothing is ever compiled."""
    return False


__all__ = ["compile", "disable", "is_compiling"]
