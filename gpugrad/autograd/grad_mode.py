"""Thread-local switch that says whether ops record the autograd graph.

``no_grad``, ``enable_grad``, ``inference_mode`` and ``set_grad_enabled``
work as context managers and as decorators (``@no_grad()`` and ``@no_grad``),
as in torch.
"""

import functools
import threading


class _State(threading.local):
    enabled = True
    inference = False


_state = _State()


def is_grad_enabled():
    """True when new ops record the graph in this thread."""
    return _state.enabled


def is_inference_mode_enabled():
    """True inside ``inference_mode()``."""
    return _state.inference


class _GradMode:
    """Base of the context managers: set a mode on entry, restore it on exit.
    Usable as ``with no_grad():``, ``@no_grad()`` and ``@no_grad``."""

    mode = True

    def __new__(cls, func=None):
        self = super().__new__(cls)
        if func is None:
            return self
        if not callable(func):
            raise TypeError(f"{cls.__name__}() takes no arguments (got {func!r})")
        return self(func)            # @no_grad without parentheses

    def __enter__(self):
        self._previous = _state.enabled
        _state.enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.enabled = self._previous
        return False

    def __call__(self, func):
        cls = type(self)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with cls():
                return func(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager / decorator: ops inside record no graph and their
    results do not require grad."""
    mode = False


class enable_grad(_GradMode):
    """Context manager / decorator: record the graph, also inside ``no_grad``."""
    mode = True


class inference_mode(_GradMode):
    """``inference_mode(mode=True)``: like ``no_grad`` (gpugrad keeps no extra
    inference-only state); ``inference_mode(False)`` turns both inference mode
    off and grad mode on, as torch's does (even inside ``no_grad``)."""

    def __new__(cls, mode=True):
        self = object.__new__(cls)
        if callable(mode) and not isinstance(mode, bool):
            self.active = True
            return self(mode)            # @inference_mode without parentheses
        self.active = bool(mode)
        return self

    def __init__(self, mode=True):
        pass

    def __enter__(self):
        self._previous = (_state.enabled, _state.inference)
        _state.enabled, _state.inference = not self.active, self.active
        return self

    def __exit__(self, *exc):
        _state.enabled, _state.inference = self._previous
        return False

    def __call__(self, func):
        active = self.active

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with inference_mode(active):
                return func(*args, **kwargs)
        return wrapper


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(mode)``: sets the mode at once (as a function call)
    and restores the previous one when used as a context manager."""

    def __new__(cls, mode):
        return object.__new__(cls)

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
