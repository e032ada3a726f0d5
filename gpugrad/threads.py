"""torch.set_num_threads / get_num_threads, on the CPU threads gpugrad has:
those of the BLAS library behind NumPy's matrix products (matmul, linear,
convolutions), set through threadpoolctl.  NumPy's elementwise loops and
reductions run on one thread whatever the setting; there is no inter-op pool.
``backend.matmul`` still runs small products on one thread (see
``backend.SMALL_MATMUL_FLOPS``) and restores this count after them."""

import numbers

import threadpoolctl


def _blas_controllers():
    return [c for c in threadpoolctl.ThreadpoolController().lib_controllers if c.user_api == "blas"]


def set_num_threads(num_threads):
    """Use ``num_threads`` threads in every loaded BLAS library (NumPy's, SciPy's)."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, numbers.Integral):
        raise RuntimeError(f"set_num_threads expects an int, but got {type(num_threads).__name__}")
    if num_threads <= 0:
        raise RuntimeError("set_num_threads expects a positive integer")
    threadpoolctl.threadpool_limits(limits=int(num_threads), user_api="blas")


def get_num_threads():
    """The threads of NumPy's BLAS (1 where threadpoolctl finds no BLAS)."""
    controllers = _blas_controllers()
    numpy_own = [c for c in controllers if "numpy" in c.filepath]
    chosen = numpy_own or controllers
    return max((c.num_threads for c in chosen), default=1)


__all__ = ["set_num_threads", "get_num_threads"]
