"""gpugrad: a define-by-run autograd library on NumPy (CPU) and CuPy (CUDA)
with PyTorch's API names.

    import gpugrad
    x = gpugrad.randn(4, 3, requires_grad=True)
    loss = gpugrad.logsumexp(x, dim=1).sum()
    loss.backward()
    x.grad
"""

# The order of the first two imports matters: autograd's package brings in the
# core (tensor.py imports autograd.grad_mode and autograd.graph, whose package
# must already be loading), then tensor_methods binds Tensor's op methods.
from gpugrad import autograd  # noqa: I001
from gpugrad import tensor_methods  # noqa: F401
from gpugrad import cuda, dtypes, return_types
from gpugrad.autograd import (enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad,
                              set_grad_enabled)
from gpugrad.backend import device, get_default_device, set_default_device
from gpugrad.creation import (arange, as_tensor, asarray, empty, empty_like, eye, from_dlpack, from_numpy, full,
                              full_like, linspace, logspace, ones, ones_like, tensor, zeros, zeros_like)
from gpugrad.dtypes import (bfloat16, bool_ as bool, double, finfo, float16, float32, float64,  # noqa: A001
                            get_default_dtype, half, iinfo, int8, int16, int32, int64, long, promote_types,
                            result_type, set_default_dtype, short, uint8)
from gpugrad.dtypes import float32 as float  # noqa: A001  (torch.float is float32)
from gpugrad.dtypes import int32 as int  # noqa: A001  (torch.int is int32)
from gpugrad.ops.elementwise import (abs, absolute, add, allclose, argwhere, atan, arctan, bitwise_and,  # noqa: A004
                                     bitwise_left_shift, bitwise_not, bitwise_or, bitwise_right_shift, bitwise_xor,
                                     ceil, clamp, clamp_max, clamp_min, clip, clone, cos, cosh, div, eq, equal, erf,
                                     exp, exp2, expm1, fix, floor, floor_divide, fmax, fmin, fmod, frac, ge, gelu,
                                     greater, greater_equal, gt, isclose, isfinite, isinf, isnan, isneginf, isposinf,
                                     le, lerp, less, less_equal, log, log1p, log2, log10, logical_and, logical_not,
                                     logical_or, logical_xor, lt, masked_fill, maximum, minimum, mul, nan_to_num, ne,
                                     neg, negative, nonzero, not_equal, pow, reciprocal, relu, remainder, round,
                                     rsqrt, rsub, sigmoid, sign, silu, sin, sinh, sqrt, square, sub, tan, tanh,
                                     trunc, where)
from gpugrad.ops.elementwise import div as divide, div as true_divide, mul as multiply, sub as subtract
from gpugrad.ops.fused.logsumexp import logsumexp
from gpugrad.ops.fused.softmax import log_softmax, softmax
from gpugrad.ops.linalg import addmm, bmm, dot, einsum, ger, inner, linear, matmul, mm, mv, outer
from gpugrad.ops.reduction import (all, amax, amin, any, argmax, argmin, argsort, count_nonzero,  # noqa: A004
                                   cumprod, cumsum, kthvalue, max, mean, median, min, norm, prod, sort, std,
                                   std_mean, sum, topk, var, var_mean)
from gpugrad.ops.shape import (broadcast_tensors, broadcast_to, cat, chunk, concat, concatenate, flatten, flip,
                               fliplr, flipud, gather, hstack, index_select, masked_select, movedim, moveaxis,
                               narrow, permute, repeat_interleave, reshape, roll, select, split, split_with_sizes,
                               squeeze, stack,
                               swapaxes, swapdims, t, take_along_dim, tensor_split, tile, transpose, tril, triu,
                               unbind, unflatten, unsqueeze, vstack)
from gpugrad.printing import set_printoptions
from gpugrad.random import (Generator, bernoulli, default_generator, get_rng_state, initial_seed, manual_seed,
                            multinomial, normal, rand, rand_like, randint, randint_like, randn, randn_like,
                            randperm, seed, set_rng_state)
from gpugrad.tensor import Tensor
from gpugrad import nn, optim, utils, viz  # noqa: E402,I001  (built on the names above)
from gpugrad.legacy import (BFloat16Tensor, BoolTensor, ByteTensor, DoubleTensor, FloatTensor,  # noqa: E402
                            HalfTensor, IntTensor, LongTensor, ShortTensor)
from gpugrad.serialization import load, save  # noqa: E402
from gpugrad import amp, distributed  # noqa: E402,I001
from gpugrad.amp import autocast, get_autocast_dtype, is_autocast_enabled  # noqa: E402

from gpugrad.dims import Size  # noqa: E402
# the plumbing at the top of scripts: torch.backends, torch.accelerator, torch.cpu, torch.onnx,
# torch.compile, thread counts (gpugrad.cuda.amp is imported here, once gpugrad.amp is loaded)
from gpugrad import accelerator, backends, compiler, cpu, onnx  # noqa: E402,I001
from gpugrad.cuda import amp as _cuda_amp  # noqa: E402,F401  (binds gpugrad.cuda.amp)
from gpugrad.backends.cuda import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: E402
from gpugrad.compiler import compile  # noqa: E402,A004
from gpugrad.threads import get_num_threads, set_num_threads  # noqa: E402

del _cuda_amp

__version__ = "0.2.0"
