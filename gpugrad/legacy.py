"""torch's legacy tensor types: ``FloatTensor([1, 2])``, ``LongTensor(3)``,
``isinstance(x, FloatTensor)``.  Each builds a tensor of its dtype (on the
CPU) the way ``Tensor(...)`` does."""

from gpugrad import dtypes
from gpugrad.tensor import Tensor


class _LegacyType(type):
    def __call__(cls, *args, device=None):
        return Tensor(*args, dtype=cls.dtype, device=device)

    def __instancecheck__(cls, value):
        return isinstance(value, Tensor) and value.dtype == cls.dtype and value.is_cpu


def _legacy(name, dtype):
    return _LegacyType(name, (), {"dtype": dtype, "__doc__": f"The {dtypes.dtype_name(dtype)} tensor type "
                                                             f"(torch.{name}): a factory and an isinstance check."})


FloatTensor = _legacy("FloatTensor", dtypes.float32)
DoubleTensor = _legacy("DoubleTensor", dtypes.float64)
HalfTensor = _legacy("HalfTensor", dtypes.float16)
BFloat16Tensor = _legacy("BFloat16Tensor", dtypes.bfloat16)
LongTensor = _legacy("LongTensor", dtypes.int64)
IntTensor = _legacy("IntTensor", dtypes.int32)
ShortTensor = _legacy("ShortTensor", dtypes.int16)
ByteTensor = _legacy("ByteTensor", dtypes.uint8)
BoolTensor = _legacy("BoolTensor", dtypes.bool_)
