"""gpugrad: a define-by-run autograd library on NumPy (CPU) and CuPy (CUDA)
with PyTorch's API names.

    import gpugrad
    x = gpugrad.randn(4, 3, requires_grad=True)
    loss = gpugrad.logsumexp(x, dim=1).sum()
    loss.backward()
    x.grad
"""

from gpugrad import autograd, dtypes
from gpugrad.autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from gpugrad.backend import device, get_default_device, set_default_device
from gpugrad.creation import (arange, as_tensor, empty, empty_like, eye, from_dlpack, from_numpy,
                              full, full_like, linspace, ones, ones_like, rand, rand_like, randint,
                              randn, randn_like, randperm, tensor, zeros, zeros_like)
from gpugrad.dtypes import (bool_ as bool, double, float16, float32, float64, get_default_dtype, half,
                            int8, int16, int32, int64, long, set_default_dtype, short, uint8)
from gpugrad.dtypes import float32 as float  # noqa: A001  (torch.float is float32)
from gpugrad.dtypes import int32 as int  # noqa: A001  (torch.int is int32)
from gpugrad.ops.elementwise import (abs, add, clamp, cos, div, eq, erf, exp, expm1, ge, gelu, gt,
                                     isfinite, isinf, isnan, le, log, log1p, logical_not, lt,
                                     masked_fill, maximum, minimum, mul, ne, neg, pow, relu, rsqrt,
                                     sigmoid, sign, sin, sqrt, sub, tan, tanh, where)
from gpugrad.ops.elementwise import clamp as clip
from gpugrad.ops.linalg import bmm, dot, matmul, mm, outer
from gpugrad.ops.reduction import (all, amax, amin, any, argmax, argmin, log_softmax, logsumexp,
                                   max, mean, min, norm, prod, softmax, std, sum, var)
from gpugrad.ops.shape import (cat, chunk, flatten, gather, permute, reshape, split, squeeze,
                               stack, transpose, unbind, unsqueeze)
from gpugrad.random import manual_seed, seed
from gpugrad.tensor import Tensor
from gpugrad import cuda, nn, optim, viz  # noqa: E402
from gpugrad.serialization import load, save  # noqa: E402

Size = tuple
concat = concatenate = cat
divide = true_divide = div
multiply = mul
subtract = sub
negative = neg

__version__ = "0.1.0"
