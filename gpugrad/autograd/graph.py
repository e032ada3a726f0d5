"""Graph pieces that need no Tensor: the leaf's accumulation node and hook handles."""


class RemovableHandle:
    """What ``register_hook`` returns: ``handle.remove()`` takes the hook out."""

    __slots__ = ("_hooks", "_hook")

    def __init__(self, hooks, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self):
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
        return False


class AccumulateGrad:
    """The graph node of a leaf that requires grad: the engine adds what reaches
    it to the leaf's ``.grad`` (after the leaf's hooks), or hands it to
    ``autograd.grad``.  ``variable`` is the leaf."""

    __slots__ = ("variable", "__weakref__")
    _edges = ()
    next_functions = ()
    _num_outputs = 1
    _pre_hooks = None
    _retained = None
    _hooked = True                # the engine's check for hooks: a leaf's are on its variable (leaf_hooks)
    _sequence_nr = float("inf")   # runs as soon as it is ready, as in torch

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


def increment_version(tensor):
    """torch.autograd.graph.increment_version: mark ``tensor`` as changed in
    place outside autograd's view (a node that saved it raises at backward)."""
    tensor.increment_version()
