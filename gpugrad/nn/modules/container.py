"""Containers: Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict."""

import collections

from gpugrad.nn.modules.module import Module, Parameter
from gpugrad.tensor import Tensor


class _ModuleSequence(Module):
    """The list protocol of Sequential and ModuleList (modules under the keys '0', '1', ...)."""

    def _from_slice(self, items):
        raise NotImplementedError

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._from_slice(list(self._modules.items())[index])
        return list(self._modules.values())[index]

    def __setitem__(self, index, module):
        self.add_module(list(self._modules)[index], module)

    def __delitem__(self, index):
        keys = list(self._modules)
        for key in (keys[index] if isinstance(index, slice) else [keys[index]]):
            del self._modules[key]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def insert(self, index, module):
        modules = list(self._modules.values())
        modules.insert(index, module)
        self._modules.clear()
        for i, m in enumerate(modules):
            self.add_module(str(i), m)
        return self


class Sequential(_ModuleSequence):
    """Modules applied in order: Sequential(a, b, c)(x) == c(b(a(x)))."""

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], collections.OrderedDict):
            for name, module in args[0].items():
                self.add_module(name, module)
        else:
            for index, module in enumerate(args):
                self.add_module(str(index), module)

    def _from_slice(self, items):
        return Sequential(collections.OrderedDict(items))

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input


class ModuleList(_ModuleSequence):
    """A list of modules whose parameters the parent module sees."""

    def __init__(self, modules=None):
        super().__init__()
        for module in modules or ():
            self.append(module)

    def _from_slice(self, items):
        return ModuleList([module for _, module in items])

    def __delitem__(self, index):
        super().__delitem__(index)
        modules = list(self._modules.values())
        self._modules.clear()
        for i, m in enumerate(modules):        # a list renumbers its entries
            self.add_module(str(i), m)

    def __add__(self, other):
        return ModuleList(list(self) + list(other))


class _Table:
    """The dict protocol of ModuleDict and ParameterDict over one of the
    module's tables (``_store``: '_modules' or '_parameters')."""

    _store = None

    def _table(self):
        return getattr(self, self._store)

    def __getitem__(self, key):
        return self._table()[key]

    def __delitem__(self, key):
        del self._table()[key]

    def __len__(self):
        return len(self._table())

    def __iter__(self):
        return iter(self._table())

    def __contains__(self, key):
        return key in self._table()

    def keys(self):
        return self._table().keys()

    def values(self):
        return self._table().values()

    def items(self):
        return self._table().items()

    def pop(self, key):
        return self._table().pop(key)

    def clear(self):
        self._table().clear()

    def update(self, values):
        for key, value in (values.items() if hasattr(values, "items") else values):
            self[key] = value


class ModuleDict(_Table, Module):
    """A dict of modules (insertion-ordered) whose parameters the parent module sees."""

    _store = "_modules"

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __setitem__(self, key, module):
        self.add_module(key, module)


def _as_parameter(value):
    if isinstance(value, Parameter) or value is None:
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"ParameterList/ParameterDict hold Parameters or Tensors, got {type(value).__name__}")


class ParameterList(Module):
    """A list of parameters a module sees (plain tensors are wrapped as Parameters)."""

    def __init__(self, values=None):
        super().__init__()
        for value in values or ():
            self.append(value)

    def append(self, value):
        self.register_parameter(str(len(self)), _as_parameter(value))
        return self

    def extend(self, values):
        for value in values:
            self.append(value)
        return self

    def __getitem__(self, index):
        values = list(self._parameters.values())
        if isinstance(index, slice):
            return ParameterList(values[index])
        return values[index]

    def __setitem__(self, index, value):
        self.register_parameter(list(self._parameters)[index], _as_parameter(value))

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def extra_repr(self):
        return "\n".join(f"({i}): Parameter containing: [{p.type()} of size {'x'.join(map(str, p.shape))}]"
                         for i, p in enumerate(self))


class ParameterDict(_Table, Module):
    """A dict of parameters a module sees (plain tensors are wrapped as Parameters)."""

    _store = "_parameters"

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __setitem__(self, key, value):
        self.register_parameter(key, _as_parameter(value))
