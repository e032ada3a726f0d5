"""save / load: state dicts (nested dicts, lists and tuples of tensors and
plain values) in a NumPy .npz file.

Tensors become arrays of the archive; everything else is kept in a JSON
skeleton stored beside them, so loading needs no pickle.  ``map_location``
puts the tensors on another device (``'cpu'`` loads a GPU checkpoint on a
machine without one).
"""

import json

import numpy

from gpugrad import backend
from gpugrad.tensor import Tensor

_SKELETON = "__gpugrad_skeleton__"


def _pack(obj, arrays):
    if isinstance(obj, Tensor):
        key = f"t{len(arrays)}"
        arrays[key] = backend.to_device(obj.data, backend.CPU)
        return {"__tensor__": key, "device": str(obj.device), "requires_grad": obj.requires_grad,
                "parameter": type(obj).__name__ == "Parameter"}
    if isinstance(obj, numpy.ndarray) or backend.is_cupy_array(obj):
        key = f"t{len(arrays)}"
        arrays[key] = backend.to_device(obj, backend.CPU)
        return {"__array__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[_pack(k, arrays), _pack(v, arrays)] for k, v in obj.items()],
                "ordered": type(obj).__name__ == "OrderedDict"}
    if isinstance(obj, tuple):
        return {"__tuple__": [_pack(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, numpy.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"gpugrad.save cannot store objects of type {type(obj).__name__}: "
                    "save state dicts of tensors, numbers, strings, lists and dicts")


def _unpack(node, arrays, map_location):
    if isinstance(node, list):
        return [_unpack(v, arrays, map_location) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        device = backend.as_device(map_location if map_location is not None else node["device"])
        data = backend.to_device(arrays[node["__tensor__"]], device)
        if node.get("parameter"):
            from gpugrad.nn import Parameter
            return Parameter(Tensor._make(data), requires_grad=node["requires_grad"])
        return Tensor._make(data).requires_grad_(node["requires_grad"])
    if "__array__" in node:
        return arrays[node["__array__"]]
    if "__tuple__" in node:
        return tuple(_unpack(v, arrays, map_location) for v in node["__tuple__"])
    if "__dict__" in node:
        import collections
        pairs = [(_unpack(k, arrays, map_location), _unpack(v, arrays, map_location)) for k, v in node["__dict__"]]
        return collections.OrderedDict(pairs) if node.get("ordered") else dict(pairs)
    raise ValueError("not a gpugrad checkpoint: unknown entry in the skeleton")


def save(obj, f):
    """Write ``obj`` (e.g. ``model.state_dict()``) to a path or binary file as .npz."""
    arrays = {}
    skeleton = _pack(obj, arrays)
    arrays[_SKELETON] = numpy.frombuffer(json.dumps(skeleton).encode(), dtype=numpy.uint8)
    numpy.savez(f, **arrays)


def load(f, map_location=None):
    """Read what :func:`save` wrote; ``map_location`` ('cpu', 'cuda', 'cuda:1')
    overrides the device each tensor was saved from."""
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


