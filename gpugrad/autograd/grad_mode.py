"""Thread-local switch that says whether ops record the autograd graph.

``no_grad``, ``enable_grad`` and ``set_grad_enabled`` work as context managers
and as decorators, as in torch.
"""

import functools
import threading


class _State(threading.local):
    enabled = True


_state = _State()


def is_grad_enabled():
    """True when new ops record the graph in this thread."""
    return _state.enabled


class _GradMode:
    """Base of the context managers: set a mode on entry, restore it on exit."""

    mode = True

    def __enter__(self):
        self._previous = _state.enabled
        _state.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return func(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager / decorator: ops inside record no graph and their
    results do not require grad."""
    mode = False


class enable_grad(_GradMode):
    """Context manager / decorator: record the graph, also inside ``no_grad``."""
    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(mode)``: sets the mode at once (as a function call)
    and restores the previous one when used as a context manager."""

    def __init__(self, mode):
        self.mode = bool(mode)
        self._previous = _state.enabled
        _state.enabled = self.mode

    def __enter__(self):
        return self

    def __call__(self, func):
        _state.enabled = self._previous   # as a decorator, the call above must not stick
        mode = self.mode

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return func(*args, **kwargs)
        return wrapper
