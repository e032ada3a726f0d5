"""torch.backends.cuda: ``matmul.allow_tf32`` and ``is_built``.

``matmul.allow_tf32 = True`` lets CuPy's float32 matrix products (cuBLAS,
every matmul, linear and convolution of gpugrad on the GPU) run in TF32 on
GPUs of compute capability 8.0 or more, as torch's flag does: the operands are
rounded to 10 mantissa bits, the sums kept in float32.  Default False (torch's
default; True when CuPy's own ``CUPY_TF32=1`` is set).  The flag is process-wide in CuPy (``cupy._core._routines_linalg.
set_compute_type``, the switch behind CuPy's ``CUPY_TF32``), so it also applies
to CuPy code outside gpugrad.  On a machine without CUDA it is kept and read
back, and NumPy's products stay float32.  Where the installed CuPy lacks that
switch, setting the flag warns that it cannot apply.

``allow_fp16_reduced_precision_reduction`` and
``allow_bf16_reduced_precision_reduction`` are accepted and read back; cuBLAS's
choice through CuPy is not changed by them.
"""

import importlib.util
import os
import warnings

from gpugrad import backend


def is_built():
    """True when CuPy is installed (gpugrad's CUDA path can run where a GPU is present)."""
    return importlib.util.find_spec("cupy") is not None


class _Matmul:
    """torch.backends.cuda.matmul's switches."""

    def __init__(self):
        # CuPy's own default: TF32 when its environment variable CUPY_TF32 asks for it
        self._allow_tf32 = int(os.environ.get("CUPY_TF32", "0") or 0) > 0
        self.allow_fp16_reduced_precision_reduction = True
        self.allow_bf16_reduced_precision_reduction = True

    @property
    def allow_tf32(self):
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value):
        self._allow_tf32 = bool(value)
        _apply_tf32(self._allow_tf32)

    def __repr__(self):
        return (f"matmul(allow_tf32={self._allow_tf32}, allow_fp16_reduced_precision_reduction="
                f"{self.allow_fp16_reduced_precision_reduction}, allow_bf16_reduced_precision_reduction="
                f"{self.allow_bf16_reduced_precision_reduction})")


def _apply_tf32(allow):
    """Set CuPy's compute type of float32 products; a no-op without CUDA."""
    if not backend.cuda_available():
        return
    cp = backend.cupy_module()
    try:
        # CuPy's switch behind CUPY_TF32 (not public API, hence looked up and guarded)
        from cupy._core import _routines_linalg as linalg
        compute_type = linalg.COMPUTE_TYPE_TF32 if allow else linalg.COMPUTE_TYPE_DEFAULT
        linalg.set_compute_type(cp.float32, compute_type)
    except (ImportError, AttributeError) as error:
        warnings.warn(f"gpugrad.backends.cuda.matmul.allow_tf32 = {allow} cannot apply: this CuPy has no "
                      f"compute-type switch ({error}); float32 products keep CuPy's default", UserWarning,
                      stacklevel=3)


matmul = _Matmul()


_PRECISIONS = ("highest", "high", "medium")
_precision = ["high"]          # what set_float32_matmul_precision last asked for other than 'highest'


def set_float32_matmul_precision(precision):
    """torch.set_float32_matmul_precision: 'highest' keeps float32 products in
    float32; 'high' and 'medium' allow TF32 on CUDA (``matmul.allow_tf32``, as
    torch).  On the CPU NumPy's products stay float32 whatever the setting.  An
    unknown value warns and changes nothing, as torch."""
    if precision not in _PRECISIONS:
        warnings.warn(f"{precision} is not one of 'highest', 'high', or 'medium'; the current "
                      "setFloat32MatmulPrecision call has no effect.", UserWarning, stacklevel=2)
        return
    if precision != "highest":
        _precision[0] = precision
    matmul.allow_tf32 = precision != "highest"


def get_float32_matmul_precision():
    """'highest' while ``matmul.allow_tf32`` is False, else the precision last set ('high' by default)."""
    return _precision[0] if matmul.allow_tf32 else "highest"
