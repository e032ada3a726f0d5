"""save / load: state dicts, checkpoints and whole objects.

Two formats, chosen by the name saved to:

- ``*.safetensors``: a flat dict of tensors (a state dict) in the
  safetensors format, which torch (``safetensors.torch.load_file``), JAX and
  the Hugging Face tools read.
- any other name: a NumPy .npz archive.  Tensors are its arrays; the
  structure around them (dicts, lists, tuples, numbers, strings) is a JSON
  skeleton beside them, so a checkpoint of such values needs no pickle.
  Anything else (a module, an optimizer, an object of one's own) is pickled,
  its tensors' data still stored as arrays of the archive, and loads only
  with ``weights_only=False`` (as torch since 2.6), or with its classes
  allowlisted by :func:`add_safe_globals`.

Saving to a path is atomic: the file is written under a temporary name in
the same folder, flushed to the disk, and renamed over the target, so a
process killed while saving leaves the previous file whole.  Loading checks
what the file says against what it holds (every array's dtype and shape
against the skeleton and its own header, its size against its header, the
archive's checksums) and refuses a mismatch with a RuntimeError instead of
returning garbage.  ``map_location`` puts the tensors on another device
(``'cpu'`` loads a GPU checkpoint on a machine without one).
"""

import collections
import contextlib
import functools
import io
import json
import os
import pickle
import zipfile

import numpy

from gpugrad import backend, dtypes
from gpugrad.nn.modules.module import Parameter
from gpugrad.tensor import Tensor, _rebuild

__all__ = ["save", "load", "add_safe_globals", "clear_safe_globals", "get_safe_globals", "safe_globals"]

_SKELETON = "__gpugrad_skeleton__"
DEFAULT_PROTOCOL = 2
_SAFETENSORS_DTYPES = {"F64": dtypes.float64, "F32": dtypes.float32, "F16": dtypes.float16, "BF16": dtypes.bfloat16,
                       "I64": dtypes.int64, "I32": dtypes.int32, "I16": dtypes.int16, "I8": dtypes.int8,
                       "U8": dtypes.uint8, "BOOL": dtypes.bool_}


# -- writing -------------------------------------------------------------------------------------

def _host(array):
    """(host array, stored dtype name): bfloat16 is stored as its uint16 bits."""
    host = backend.to_device(array, backend.CPU)
    if host.dtype == dtypes.bfloat16:
        return host.view(numpy.uint16), "bfloat16"
    return host, host.dtype.name


def _store(array, arrays):
    """Put ``array`` in the archive: (key, dtype name, shape) for the skeleton."""
    key = f"t{len(arrays)}"
    arrays[key], dtype = _host(array)
    return key, dtype, list(array.shape)


class _NeedsPickle(Exception):
    """Raised by _pack on a value the JSON skeleton cannot hold."""


def _pack(obj, arrays):
    if isinstance(obj, Tensor):
        key, dtype, shape = _store(obj.array, arrays)
        return {"__tensor__": key, "dtype": dtype, "shape": shape, "device": str(obj.device),
                "requires_grad": obj.requires_grad, "parameter": isinstance(obj, Parameter)}
    if backend.is_array(obj) and obj.dtype.kind != "O":
        key, dtype, shape = _store(obj, arrays)
        return {"__array__": key, "dtype": dtype, "shape": shape}
    if type(obj) in (dict, collections.OrderedDict):
        return {"__dict__": [[_pack(k, arrays), _pack(v, arrays)] for k, v in obj.items()],
                "ordered": type(obj) is collections.OrderedDict}
    if type(obj) is tuple:
        return {"__tuple__": [_pack(v, arrays) for v in obj]}
    if type(obj) is list:
        return [_pack(v, arrays) for v in obj]
    if isinstance(obj, numpy.generic) and obj.dtype.kind in "biuf":
        return obj.item()
    if type(obj) is float and not numpy.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    raise _NeedsPickle


class _Pickler(pickle.Pickler):
    """Pickles what the skeleton cannot hold; tensors' data (and any array)
    goes to the archive, named by a persistent id, not into the pickle."""

    def __init__(self, file, protocol, arrays):
        super().__init__(file, protocol)
        self.arrays, self.stored = arrays, {}

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            requires_grad = obj.requires_grad if isinstance(obj, Parameter) else obj.requires_grad and obj.is_leaf
            return _rebuild_tensor, (type(obj), obj.array, str(obj.device), requires_grad)
        return NotImplemented

    def persistent_id(self, obj):
        if not backend.is_array(obj) or obj.dtype.kind == "O":
            return None
        found = self.stored.get(id(obj))
        if found is None:
            found = self.stored[id(obj)] = (("array", *_store(obj, self.arrays)), obj)   # obj: kept alive
        return found[0]


def _rebuild_tensor(cls, array, device, requires_grad):
    """A pickled tensor's rebuild (the archive gave ``array``)."""
    if not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise pickle.UnpicklingError(f"a tensor's record names {cls!r}, which is not a tensor type")
    if issubclass(cls, Parameter):
        return cls(Tensor._make(backend.to_device(array, backend.as_device(device))), requires_grad)
    return _rebuild(cls, array, device, requires_grad)


def _archive(obj, pickle_protocol):
    """The archive's arrays for ``obj``: the skeleton, or a pickle when needed."""
    arrays = {}
    try:
        skeleton = _pack(obj, arrays)
    except _NeedsPickle:
        arrays = {}
        buffer = io.BytesIO()
        _Pickler(buffer, pickle_protocol, arrays).dump(obj)
        key = f"t{len(arrays)}"
        arrays[key] = numpy.frombuffer(buffer.getbuffer(), dtype=numpy.uint8)
        skeleton = {"__pickle__": key}
    arrays[_SKELETON] = numpy.frombuffer(json.dumps(skeleton).encode(), dtype=numpy.uint8)
    return arrays


def safetensors_bytes(tensors, metadata):
    """``tensors`` (a dict of names to tensors) in the safetensors format."""
    from safetensors.numpy import save as serialize  # optional at import: needed only for this format

    if not isinstance(tensors, dict):
        raise TypeError(f"the safetensors format holds a dict of tensors (a state_dict), not a "
                        f"{type(tensors).__name__}")
    host = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"the safetensors format names tensors by strings; got the key {name!r}")
        if not isinstance(value, Tensor):
            raise TypeError(f"the safetensors format holds tensors only; {name!r} is a {type(value).__name__}")
        host[name] = numpy.ascontiguousarray(backend.to_device(value.array, backend.CPU))
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("safetensors metadata is a dict of strings to strings")
    return serialize(host, metadata=metadata)


def _is_path(f):
    return isinstance(f, (str, os.PathLike))


def write_atomically(path, write):
    """Call ``write(handle)`` on a new file that then replaces ``path`` whole:
    a temporary file in the same folder, flushed and fsync'ed, renamed over
    ``path``, and the folder fsync'ed (the rename survives a power cut).
    A process killed at any moment leaves either the old file or the new one."""
    path = os.path.realpath(os.fspath(path))           # through a symlink, as open() would write
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)   # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):                  # not every system can fsync a folder
        directory = os.open(folder or ".", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def save(obj, f, pickle_module=None, pickle_protocol=DEFAULT_PROTOCOL, _use_new_zipfile_serialization=True,
         _disable_byteorder_record=False):
    """Write ``obj`` to ``f``: a path (written atomically: a reader never
    sees half a file) or a binary file object.  A path ending in
    ``.safetensors`` takes a dict of tensors (a state dict) in that format;
    otherwise any object is saved (plain containers of tensors and numbers
    without pickle, others pickled: see the module's docstring)."""
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError("save: gpugrad pickles with the standard pickle module only")
    if _is_path(f) and os.fspath(f).endswith(".safetensors"):
        data = safetensors_bytes(obj, {"format": "pt"})
        write_atomically(f, lambda handle: handle.write(data))
        return
    arrays = _archive(obj, pickle_protocol)
    if _is_path(f):
        write_atomically(f, lambda handle: numpy.savez(handle, **arrays))
    else:
        numpy.savez(f, **arrays)


# -- reading -------------------------------------------------------------------------------------

class _Corrupt(RuntimeError):
    pass


def _read_archive(f):
    """{name: array} of an .npz archive, each entry's header checked against its size and every
    checksum verified; a RuntimeError names what is wrong."""
    arrays = {}
    with zipfile.ZipFile(f) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise _Corrupt(f"unexpected entry {info.filename!r} in the archive")
            with archive.open(info) as member:
                version = numpy.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, fortran, dtype = numpy.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, fortran, dtype = numpy.lib.format.read_array_header_2_0(member)
                else:
                    raise _Corrupt(f"entry {info.filename!r} has an .npy header of version {version}")
                if dtype.hasobject:
                    raise _Corrupt(f"entry {info.filename!r} holds Python objects (a pickle), which gpugrad "
                                   "checkpoints never do")
                size = int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize
                held = info.file_size - member.tell()
                if held != size:
                    raise _Corrupt(f"entry {info.filename!r} holds {held} bytes of data but its header says "
                                   f"{dtype} of shape {tuple(shape)} ({size} bytes)")
                buffer = bytearray(size)
                if member.readinto(buffer) != size or member.read(1):   # reading to the end checks the CRC
                    raise _Corrupt(f"entry {info.filename!r} is shorter than its header says")
            array = numpy.frombuffer(buffer, dtype=dtype)
            arrays[info.filename[:-4]] = array.reshape(shape, order="F" if fortran else "C")
    return arrays


def _checked(arrays, key, dtype, shape):
    """The stored array ``key``, after checking it is what the skeleton says it is."""
    if not isinstance(key, str) or key not in arrays or key == _SKELETON:
        raise _Corrupt(f"the skeleton names an array {key!r} the archive does not hold")
    array = arrays[key]
    try:
        wanted = dtypes.bfloat16 if dtype == "bfloat16" else numpy.dtype(dtype)
    except TypeError:
        wanted = None
    if wanted is None or wanted.kind not in "biufcV":
        raise _Corrupt(f"the skeleton gives array {key!r} an unknown dtype {dtype!r}")
    stored = numpy.dtype(numpy.uint16) if wanted == dtypes.bfloat16 else wanted
    if array.dtype != stored:
        raise _Corrupt(f"the skeleton says array {key!r} is {dtype}, but the archive stores {array.dtype} data")
    if shape is not None and list(array.shape) != list(shape):
        raise _Corrupt(f"the skeleton says array {key!r} has shape {tuple(shape)}, but the archive stores "
                       f"{tuple(array.shape)}")
    return array.view(dtypes.bfloat16) if wanted == dtypes.bfloat16 else array


def _unpack(node, arrays, map_location):
    if isinstance(node, list):
        return [_unpack(v, arrays, map_location) for v in node]
    if not isinstance(node, dict):
        return node
    if "__tensor__" in node:
        stored = _checked(arrays, node["__tensor__"], node.get("dtype"), node.get("shape"))
        data = backend.to_device(stored, _target_device(node["device"], map_location))
        if node.get("parameter"):
            return Parameter(Tensor._make(data), requires_grad=node["requires_grad"])
        return Tensor._make(data).requires_grad_(node["requires_grad"])
    if "__array__" in node:
        return _checked(arrays, node["__array__"], node.get("dtype"), node.get("shape"))
    if "__float__" in node:
        return float(node["__float__"])
    if "__tuple__" in node:
        return tuple(_unpack(v, arrays, map_location) for v in node["__tuple__"])
    if "__dict__" in node:
        pairs = [(_unpack(k, arrays, map_location), _unpack(v, arrays, map_location)) for k, v in node["__dict__"]]
        return collections.OrderedDict(pairs) if node.get("ordered") else dict(pairs)
    raise _Corrupt("unknown entry in the skeleton")


def _target_device(saved, map_location):
    if map_location is None:
        return backend.as_device(saved)
    if isinstance(map_location, dict):
        return backend.as_device(map_location.get(saved, saved))
    if callable(map_location):
        raise NotImplementedError("load: map_location as a function is not supported; pass a device or a dict")
    return backend.as_device(map_location)


# -- pickles: weights_only and the allowlist ---------------------------------------------------------

_safe_globals = {}


def _global_name(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


def add_safe_globals(safe_globals):
    """Allow these classes and functions in a pickle loaded with
    ``weights_only=True`` (entries are objects or ``(object, "module.name")``)."""
    for entry in safe_globals:
        obj, name = entry if isinstance(entry, tuple) else (entry, _global_name(entry))
        _safe_globals[name] = obj


def get_safe_globals():
    """The user's allowlist (add_safe_globals)."""
    return list(_safe_globals.values())


def clear_safe_globals():
    _safe_globals.clear()


@contextlib.contextmanager
def safe_globals(safe_globals):
    """``with safe_globals([...]):`` the allowlist for the block only."""
    before = dict(_safe_globals)
    add_safe_globals(safe_globals)
    try:
        yield
    finally:
        _safe_globals.clear()
        _safe_globals.update(before)


def _default_safe_globals():
    allowed = [Tensor, Parameter, collections.OrderedDict, set, frozenset, complex, slice, range, bytearray]
    return {_global_name(obj): obj for obj in allowed}


def _weights_only_message(detail):
    return ("Weights only load failed. This file can still be loaded, to do so you have two options, do those steps "
            "only if you trust the source of the checkpoint. \n\t(1) Re-running `gpugrad.load` with `weights_only` "
            "set to `False` will likely succeed, but it can result in arbitrary code execution. Do it only if you "
            "got the file from a trusted source.\n\t(2) Alternatively, to load with `weights_only=True` please "
            f"check the recommended steps in the following error message.\n\tWeightsUnpickler error: {detail}")


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, arrays, map_location, weights_only):
        super().__init__(file)
        self.arrays, self.map_location, self.weights_only = arrays, map_location, weights_only

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "array"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return _checked(self.arrays, *pid[1:])

    def find_class(self, module, name):
        if (module, name) == (__name__, "_rebuild_tensor"):
            return functools.partial(_rebuild_mapped, self.map_location)
        if not self.weights_only:
            return super().find_class(module, name)
        found = {**_default_safe_globals(), **_safe_globals}.get(f"{module}.{name}")
        if found is None:
            raise pickle.UnpicklingError(
                f"Unsupported global: GLOBAL {module}.{name} was not an allowed global by default. Please use "
                f"`gpugrad.serialization.add_safe_globals([{module}.{name}])` or the "
                f"`gpugrad.serialization.safe_globals([{module}.{name}])` context manager to allowlist this global "
                "if you trust this class/function.")
        return found


def _rebuild_mapped(map_location, cls, array, device, requires_grad):
    return _rebuild_tensor(cls, array, str(_target_device(device, map_location)), requires_grad)


def _unpickle(data, arrays, map_location, weights_only):
    unpickler = _Unpickler(io.BytesIO(data), arrays, map_location, weights_only)
    if not weights_only:
        return unpickler.load()
    try:
        return unpickler.load()
    except _Corrupt:
        raise
    except Exception as error:
        raise pickle.UnpicklingError(_weights_only_message(error)) from None


# -- load ----------------------------------------------------------------------------------------

def _open_for_reading(f):
    """(binary file object, name for messages, whether we opened it)."""
    if _is_path(f):
        return open(f, "rb"), os.fspath(f), True
    return f, getattr(f, "name", "the file"), False


def _is_safetensors(head):
    """A safetensors file: an 8-byte little-endian header length, then the JSON header."""
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") > 1


def load(f, map_location=None, pickle_module=None, *, weights_only=None, mmap=None, **pickle_load_args):
    """Read what :func:`save` wrote (either format, told apart by content).
    ``map_location`` ('cpu', 'cuda', 'cuda:1', or a dict from saved to
    wanted devices) overrides where tensors go.  ``weights_only`` (True
    unless False is given) refuses a pickled object whose classes are not
    allowlisted, with pickle.UnpicklingError, as torch does.  A truncated or
    corrupted file raises RuntimeError."""
    if pickle_module is not None and pickle_module is not pickle:
        raise NotImplementedError("load: gpugrad unpickles with the standard pickle module only")
    if pickle_load_args or mmap:
        raise NotImplementedError("load: pickle options and mmap are not supported (checkpoints are read whole)")
    weights_only = True if weights_only is None else bool(weights_only)
    handle, name, opened = _open_for_reading(f)
    try:
        start = handle.tell() if handle.seekable() else None
        head = handle.read(16)
        if start is None:
            handle = io.BytesIO(head + handle.read())
        else:
            handle.seek(start)
        if not head:
            raise RuntimeError(f"gpugrad.load: {name} is empty (a save that was interrupted?)")
        if _is_safetensors(head):
            return safetensors_tensors(handle.read(), map_location, name)
        try:
            arrays = _read_archive(handle)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, _Corrupt) as error:
            raise RuntimeError(f"gpugrad.load: {name} is not a readable checkpoint: it is truncated or corrupted "
                               f"({error})") from None
    finally:
        if opened:
            handle.close()
    if _SKELETON not in arrays:
        raise ValueError("not a gpugrad checkpoint (no skeleton entry); was it written by gpugrad.save?")
    try:
        skeleton = json.loads(arrays.pop(_SKELETON).tobytes().decode())
        if isinstance(skeleton, dict) and "__pickle__" in skeleton:
            data = _checked(arrays, skeleton["__pickle__"], "uint8", None).tobytes()
            return _unpickle(data, arrays, map_location, weights_only)
        try:
            return _unpack(skeleton, arrays, map_location)
        except (KeyError, TypeError, AttributeError) as error:
            raise _Corrupt(f"a malformed skeleton ({type(error).__name__}: {error})") from None
    except (_Corrupt, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RuntimeError(f"gpugrad.load: {name} is corrupted: {error}") from None
    except RuntimeError as error:
        if "CUDA is not available" in str(error):
            raise RuntimeError(f"{error}; the checkpoint holds CUDA tensors: pass map_location='cpu'") from None
        raise


def safetensors_tensors(data, map_location, name="the data"):
    """{name: tensor} from the bytes of a safetensors file."""
    import safetensors  # optional at import: needed only for this format

    try:
        entries = safetensors.deserialize(data)
    except Exception as error:          # safetensors' own error type is its Rust binding's
        raise RuntimeError(f"gpugrad.load: {name} is not a valid safetensors file ({error})") from None
    device = _target_device("cpu", map_location)
    tensors = {}
    for key, info in entries:
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise RuntimeError(f"gpugrad.load: tensor {key!r} of {name} is {info['dtype']}, which gpugrad has not "
                               f"(it has {', '.join(_SAFETENSORS_DTYPES)})")
        shape = tuple(info["shape"])
        if len(info["data"]) != int(numpy.prod(shape, dtype=numpy.int64)) * dtype.itemsize:
            raise RuntimeError(f"gpugrad.load: tensor {key!r} of {name} holds {len(info['data'])} bytes, not "
                               f"{dtype} of shape {shape}")
        array = numpy.frombuffer(info["data"], dtype=dtype).reshape(shape)
        tensors[key] = Tensor._make(backend.to_device(array, device))
    return tensors
