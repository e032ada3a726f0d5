"""The device-side error word.

Kernels that index by class (cross-entropy, the nll_loss target check) record
the first out-of-range target in a small int64 buffer per device
([flag, value, classes]) instead of asserting: a device assert would leave the
CUDA context unusable.  Python reads the word lazily, at the next synchronising
read (``item()``, ``numpy()``, ``tolist()``, a copy to the CPU, the end of
``backward()``), or right after each launch when ``GPUGRAD_DEBUG=1``, and
raises IndexError.  The word is cleared when read, so the process goes on.
"""

import os

from gpugrad import backend

_buffers = {}       # device id -> cupy int64 [flag, value, classes]
_pending = set()    # devices with a launch that may have recorded an error since the last read


def buffer(device_id):
    """The error word of a device (allocated, zeroed, on first use)."""
    buf = _buffers.get(device_id)
    if buf is None:
        cp = backend.cupy_module()
        with cp.cuda.Device(device_id):
            buf = cp.zeros(3, dtype=cp.int64)
        _buffers[device_id] = buf
    return buf


def launched(device_id):
    """Note a launch that may set the word; checks at once under GPUGRAD_DEBUG=1."""
    _pending.add(device_id)
    if os.environ.get("GPUGRAD_DEBUG") == "1":
        check()


def check():
    """Raise IndexError for a bad class index recorded by a kernel (a synchronising read)."""
    while _pending:
        device_id = _pending.pop()
        buf = _buffers[device_id]
        cp = backend.cupy_module()
        with cp.cuda.Device(device_id):
            flag, value, classes = (int(v) for v in buf.get())
            if flag:
                buf.fill(0)
                raise IndexError(
                    f"Target {value} is out of bounds: class indices must lie in [0, {classes}) "
                    f"or equal ignore_index (recorded by a CUDA kernel on cuda:{device_id})")
