"""The device-side error word: bad indices reported without a host sync.

A kernel that indexes by class or by position (cross-entropy, nll_loss's
target check, embedding's, and the index arrays of x[key], x[key] = v and
index_select, which CuPy would take modulo the size) and meets an index out of
range writes ``[kind, value, bound]`` into a small word instead of asserting
(a device assert would leave the CUDA context unusable).  ``kind`` is 1 for a
class index (outside ``[0, C)`` and not ``ignore_index``), 2 for a position,
3 for a non-finite total norm in ``clip_grad_norm_(error_if_nonfinite=True)``
(``value`` holds the bits of the norm's order, a double).

The word lives in pinned host memory that the GPU writes directly (unified
addressing: every 64-bit CUDA platform), so the host reads it without a copy
and without waiting: at the end of ``backward()`` it is polled (an error a
finished kernel wrote is raised there), and at the synchronising calls users
already make (``item()``, ``tolist()``, ``numpy()``, ``cpu()``,
``cuda.synchronize()``) it is read after their sync, which also waits for the
other streams that launched such kernels (stream-correct).  IndexError names
the value; the word is then cleared and the process goes on.  With
``GPUGRAD_DEBUG=1`` every such launch is synchronised and checked at once.
"""

import os

import numpy

from gpugrad import backend

CLASS_INDEX = 1
POSITION = 2
NONFINITE_NORM = 3
NONFINITE_NORM_MESSAGE = ("The total norm of order {} for gradients from `parameters` is non-finite, so it cannot be "
                          "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
                          "`error_if_nonfinite=False`")

_buffers = {}       # device id -> _Word
_pending = {}       # device id -> {stream pointer: stream} of launches not yet checked after a sync


class _Word:
    """Three int64 [kind, value, bound] a kernel can write and the host can read.
    ``argument`` is what a kernel launch takes for it."""

    def __init__(self, cp, device_id):
        with cp.cuda.Device(device_id):
            self._memory = cp.cuda.alloc_pinned_memory(3 * 8)
        self._host = numpy.frombuffer(self._memory, dtype=numpy.int64, count=3)
        self._host[...] = 0
        self.argument = numpy.uint64(self._memory.ptr)

    def get(self):
        """The word's three values (a copy)."""
        return self._host.copy()

    def fill(self, value):
        self._host[...] = value


def buffer(device_id):
    """The error word of a device (allocated, zeroed, on first use)."""
    word = _buffers.get(device_id)
    if word is None:
        word = _buffers[device_id] = _Word(backend.cupy_module(), device_id)
    return word


def argument(device_id):
    """The error word of a device as a kernel argument."""
    return buffer(device_id).argument


def launched(device_id):
    """Note a launch that may write the word; checks at once under GPUGRAD_DEBUG=1."""
    stream = backend.cupy_module().cuda.get_current_stream()
    _pending.setdefault(device_id, {})[stream.ptr] = stream
    if os.environ.get("GPUGRAD_DEBUG") == "1":
        stream.synchronize()
        raise_recorded(device_id)


def poll(device_id=None):
    """Raise what a kernel has already recorded, without waiting for anything."""
    _raise_from_words(device_id)


def raise_recorded(device_id=None):
    """At a synchronising call (the current stream has been waited for): wait
    for the other streams that launched a checking kernel, then raise what
    was recorded.  A no-op when no such kernel ran since the last call."""
    if not _pending:
        return
    current = backend.cupy_module().cuda.get_current_stream().ptr
    for dev in [d for d in _pending if device_id is None or d == device_id]:
        for pointer, stream in _pending.pop(dev).items():
            if pointer != current:
                stream.synchronize()
    _raise_from_words(device_id)


def _raise_from_words(device_id):
    for dev, word in _buffers.items():
        if device_id is not None and dev != device_id:
            continue
        kind, value, bound = (int(v) for v in word.get())
        if kind:
            word.fill(0)
            if kind == NONFINITE_NORM:
                order = float(numpy.array(value, dtype=numpy.int64).view(numpy.float64))
                raise RuntimeError(NONFINITE_NORM_MESSAGE.format(order) + f" (recorded by a CUDA kernel on cuda:{dev})")
            if kind == POSITION:
                raise IndexError(f"index {value} is out of bounds for a dimension of size {bound} "
                                 f"(recorded by a CUDA kernel on cuda:{dev})")
            raise IndexError(f"Target {value} is out of bounds: class indices must lie in [0, {bound}) or "
                             f"equal ignore_index (recorded by a CUDA kernel on cuda:{dev})")
