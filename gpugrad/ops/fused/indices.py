"""check_indices: IndexError for an index outside [low, bound) (class indices
of nll_loss, positions of embedding; [-size, size) for an index array of
x[key] and x[key] = v, which CuPy takes modulo the size without a check).  On the CPU it raises at once; on
CUDA a kernel (kernels/cross_entropy.cu, check_indices) records the first bad
value in the error word without a host sync, raised at the next
synchronising read (gpugrad/cuda/errors.py)."""

import numpy

from gpugrad import backend
from gpugrad.cuda import errors, launch
from gpugrad.ops.fused import rows


def check_numpy(index, bound, kind, ignore_index=None, low=0):
    """Raise IndexError, worded by ``kind`` (errors.CLASS_INDEX or
    errors.POSITION), for a value of ``index`` outside [low, bound) other than
    ``ignore_index``."""
    if index.size == 0:
        return
    if kind == errors.POSITION:
        smallest, high = int(index.min()), int(index.max())
        if smallest < low or high >= bound:
            raise IndexError(f"index out of range in self (index {high if high >= bound else smallest}, "
                             f"num_embeddings {bound})")
        return
    bad = (index < low) | (index >= bound)
    if ignore_index is not None:
        bad &= index != ignore_index
    if bool(bad.any()):
        raise IndexError(f"Target {int(index[bad][0])} is out of bounds: class indices must lie in [0, {bound}) "
                         f"or equal ignore_index ({ignore_index})")


def check_cuda(index, bound, kind, ignore_index=None, low=0):
    """Record such a value in the error word: one launch, no sync."""
    cp = backend.cupy_module()
    device_id = index.device.id
    count = index.size
    with cp.cuda.Device(device_id):
        index = cp.ascontiguousarray(index).reshape(-1)
        blocks = max(1, min(-(-count // 256), 4096))
        shape = launch.LaunchShape((blocks, 1), (256, 1), 256, 1)
        launch.launch("cross_entropy.cu", f"check_indices<{launch.index_type(index.dtype)}>", device_id, shape,
                      (index, launch.i64(count), launch.i64(low), launch.i64(bound),
                       launch.i64(0 if ignore_index is None else ignore_index), numpy.int32(ignore_index is not None),
                       launch.i64(kind), launch.i64(bound), errors.argument(device_id)))
    errors.launched(device_id)


def check_indices(index, bound, kind, ignore_index=None, low=0):
    """IndexError for a bad index (on CUDA at the next synchronising read)."""
    rows.pick(check_numpy, check_cuda, index, (0,))(index, bound, kind, ignore_index, low)
