"""save / load: state dicts and checkpoints (nested dicts, lists and tuples
of tensors and plain values) in a NumPy .npz archive, written to exactly the
path given.

Tensors become arrays of the archive; everything else is kept in a JSON
skeleton stored beside them, so loading needs no pickle (``weights_only`` is
accepted: it is always so).  ``map_location`` puts the tensors on another
device (``'cpu'`` loads a GPU checkpoint on a machine without one).
"""

import collections
import json
import os

import numpy

from gpugrad import backend, dtypes
from gpugrad.nn.modules.module import Parameter
from gpugrad.tensor import Tensor

_SKELETON = "__gpugrad_skeleton__"


def _host(array):
    """(host array, stored dtype name): bfloat16 is stored as its uint16 bits."""
    host = backend.to_device(array, backend.CPU)
    if host.dtype == dtypes.bfloat16:
        return host.view(numpy.uint16), "bfloat16"
    return host, host.dtype.name


def _pack(obj, arrays):
    if isinstance(obj, Tensor):
        key = f"t{len(arrays)}"
        arrays[key], dtype = _host(obj.array)
        return {"__tensor__": key, "dtype": dtype, "device": str(obj.device), "requires_grad": obj.requires_grad,
                "parameter": isinstance(obj, Parameter)}
    if backend.is_array(obj):
        key = f"t{len(arrays)}"
        arrays[key], dtype = _host(obj)
        return {"__array__": key, "dtype": dtype}
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays), _pack(v, arrays)] for k, v in obj.items()],
                "ordered": isinstance(obj, collections.OrderedDict)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, numpy.generic):
        return obj.item()
    if isinstance(obj, float) and not numpy.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"gpugrad.save cannot store objects of type {type(obj).__name__}: "
                    "save state dicts of tensors, numbers, strings, lists and dicts")


def _stored(arrays, node):
    array = arrays[node.get("__tensor__", node.get("__array__"))]
    return array.view(dtypes.bfloat16) if node.get("dtype") == "bfloat16" else array


def _unpack(node, arrays, map_location):
    if isinstance(node, list):
        return [_unpack(v, arrays, map_location) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        device = _target_device(node["device"], map_location)
        data = backend.to_device(_stored(arrays, node), device)
        if node.get("parameter"):
            return Parameter(Tensor._make(data), requires_grad=node["requires_grad"])
        return Tensor._make(data).requires_grad_(node["requires_grad"])
    if "__array__" in node:
        return _stored(arrays, node)
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_unpack(v, arrays, map_location) for v in node["__tuple__"])
    if "__dict__" in node:
        pairs = [(_unpack(k, arrays, map_location), _unpack(v, arrays, map_location)) for k, v in node["__dict__"]]
        return collections.OrderedDict(pairs) if node.get("ordered") else dict(pairs)
    raise ValueError("not a gpugrad checkpoint: unknown entry in the skeleton")


def _target_device(saved, map_location):
    if map_location is None:
        return backend.as_device(saved)
    if isinstance(map_location, dict):
        return backend.as_device(map_location.get(saved, saved))
    if callable(map_location):
        raise NotImplementedError("load: map_location as a function is not supported; pass a device or a dict")
    return backend.as_device(map_location)


def save(obj, f, pickle_module=None, pickle_protocol=None, _use_new_zipfile_serialization=True):
    """Write ``obj`` (e.g. ``model.state_dict()``) to the path (or binary
    file) ``f``, exactly as named."""
    if pickle_module is not None:
        raise NotImplementedError("save: gpugrad writes no pickle; pickle_module is not supported")
    arrays = {}
    skeleton = _pack(obj, arrays)
    arrays[_SKELETON] = numpy.frombuffer(json.dumps(skeleton).encode(), dtype=numpy.uint8)
    if isinstance(f, (str, os.PathLike)):
        with open(f, "wb") as handle:
            numpy.savez(handle, **arrays)
    else:
        numpy.savez(f, **arrays)


def load(f, map_location=None, pickle_module=None, *, weights_only=True, mmap=None, **pickle_load_args):
    """Read what :func:`save` wrote; ``map_location`` ('cpu', 'cuda', 'cuda:1',
    or a dict from saved to wanted devices) overrides where tensors go."""
    if pickle_module is not None or pickle_load_args or mmap:
        raise NotImplementedError("load: gpugrad checkpoints hold no pickle and are read whole; pickle_module, "
                                  "pickle options and mmap are not supported")
    with numpy.load(f, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    if _SKELETON not in arrays:
        raise ValueError("not a gpugrad checkpoint (no skeleton entry); was it written by gpugrad.save?")
    skeleton = json.loads(arrays.pop(_SKELETON).tobytes().decode())
    try:
        return _unpack(skeleton, arrays, map_location)
    except RuntimeError as error:
        if "CUDA is not available" in str(error):
            raise RuntimeError(f"{error}; the checkpoint holds CUDA tensors: pass map_location='cpu'") from None
        raise
