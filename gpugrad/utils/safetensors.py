"""The safetensors format with safetensors.torch's four functions, for
gpugrad tensors: ``save_file(tensors, filename, metadata=None)``,
``load_file(filename, device="cpu")``, ``save(tensors, metadata=None)``
(bytes) and ``load(data)``.  ``gpugrad.save(state_dict, "m.safetensors")``
and ``gpugrad.load`` read and write the same files; torch reads them with
``safetensors.torch.load_file``.  Writing a file is atomic, as gpugrad.save is."""

from gpugrad import serialization

__all__ = ["save", "save_file", "load", "load_file"]


def save(tensors, metadata=None):
    """The bytes of a safetensors file holding ``tensors`` (a dict of names to tensors)."""
    return serialization.safetensors_bytes(tensors, metadata)


def save_file(tensors, filename, metadata=None):
    """Write ``tensors`` (a dict of names to tensors) to ``filename`` (atomically)."""
    data = serialization.safetensors_bytes(tensors, metadata)
    serialization.write_atomically(filename, lambda handle: handle.write(data))


def load(data):
    """{name: tensor} (on the CPU) from the bytes of a safetensors file."""
    return serialization.safetensors_tensors(bytes(data), None)


def load_file(filename, device="cpu"):
    """{name: tensor} on ``device`` from a safetensors file."""
    with open(filename, "rb") as handle:
        return serialization.safetensors_tensors(handle.read(), device, str(filename))
