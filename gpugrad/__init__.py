"""gpugrad: a define-by-run autograd library on NumPy (CPU) and CuPy (CUDA)
with PyTorch's API names.

    import gpugrad
    x = gpugrad.randn(4, 3, requires_grad=True)
    loss = gpugrad.logsumexp(x, dim=1).sum()
    loss.backward()
    x.grad

The imports below hold no order: every module of the package imports what it
uses itself (``scripts/check_imports.py`` imports each one first, in a process
of its own); ``tensor_methods`` binds Tensor's op methods.
"""

from gpugrad import (
    accelerator,
    amp,
    autograd,
    backends,
    compiler,
    cpu,
    cuda,
    distributed,
    dtypes,
    linalg,
    nn,
    onnx,
    optim,
    return_types,
    tensor_methods,
    utils,
    viz,
)
from gpugrad.amp import (
    autocast,
    get_autocast_dtype,
    is_autocast_enabled,
)
from gpugrad.autograd import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from gpugrad.backend import (
    device,
    get_default_device,
    set_default_device,
)
from gpugrad.backends.cuda import (
    get_float32_matmul_precision,
    set_float32_matmul_precision,
)
from gpugrad.compiler import compile
from gpugrad.creation import (
    arange,
    as_tensor,
    asarray,
    empty,
    empty_like,
    eye,
    from_dlpack,
    from_numpy,
    full,
    full_like,
    linspace,
    logspace,
    ones,
    ones_like,
    tensor,
    zeros,
    zeros_like,
)

# gpugrad.cuda.amp (torch.cuda.amp's deprecated names) sits above gpugrad.amp, which gpugrad.cuda's
# package must not import (tensor.py imports gpugrad.cuda.errors): bound here
from gpugrad.cuda import amp as _cuda_amp
from gpugrad.dims import Size
from gpugrad.dims import numpy_keywords as _numpy_keywords
from gpugrad.dtypes import (
    bfloat16,
    double,
    finfo,
    float16,
    float32,
    float64,
    get_default_dtype,
    half,
    iinfo,
    int8,
    int16,
    int32,
    int64,
    long,
    promote_types,
    result_type,
    set_default_dtype,
    short,
    uint8,
)
from gpugrad.dtypes import (
    bool_ as bool,
)
from gpugrad.dtypes import float32 as float  # torch.float is float32
from gpugrad.dtypes import int32 as int  # torch.int is int32
from gpugrad.legacy import (
    BFloat16Tensor,
    BoolTensor,
    ByteTensor,
    DoubleTensor,
    FloatTensor,
    HalfTensor,
    IntTensor,
    LongTensor,
    ShortTensor,
)
from gpugrad.ops.decomposition import (
    cdist,
    det,
    dist,
    logdet,
    slogdet,
)
from gpugrad.ops.decomposition import (
    inv as inverse,
)
from gpugrad.ops.decomposition import (
    pinv as pinverse,
)
from gpugrad.ops.elementwise import (
    abs,
    absolute,
    add,
    allclose,
    arctan,
    arctan2,
    argwhere,
    atan,
    atan2,
    bitwise_and,
    bitwise_left_shift,
    bitwise_not,
    bitwise_or,
    bitwise_right_shift,
    bitwise_xor,
    ceil,
    clamp,
    clamp_max,
    clamp_min,
    clip,
    clone,
    cos,
    cosh,
    div,
    eq,
    equal,
    erf,
    exp,
    exp2,
    expm1,
    fix,
    floor,
    floor_divide,
    fmax,
    fmin,
    fmod,
    frac,
    ge,
    gelu,
    greater,
    greater_equal,
    gt,
    isclose,
    isfinite,
    isinf,
    isnan,
    isneginf,
    isposinf,
    le,
    lerp,
    less,
    less_equal,
    log,
    log1p,
    log2,
    log10,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    lt,
    masked_fill,
    maximum,
    minimum,
    mul,
    nan_to_num,
    ne,
    neg,
    negative,
    nonzero,
    not_equal,
    pow,
    reciprocal,
    relu,
    remainder,
    round,
    rsqrt,
    rsub,
    sigmoid,
    sign,
    silu,
    sin,
    sinh,
    sqrt,
    square,
    sub,
    tan,
    tanh,
    trunc,
    where,
)
from gpugrad.ops.elementwise import (
    div as divide,
)
from gpugrad.ops.elementwise import (
    div as true_divide,
)
from gpugrad.ops.elementwise import (
    mul as multiply,
)
from gpugrad.ops.elementwise import (
    sub as subtract,
)
from gpugrad.ops.fused.logsumexp import logsumexp
from gpugrad.ops.fused.softmax import (
    log_softmax,
    softmax,
)
from gpugrad.ops.linalg import (
    addmm,
    bmm,
    dot,
    einsum,
    ger,
    inner,
    linear,
    matmul,
    mm,
    mv,
    outer,
)
from gpugrad.ops.out import NAMES as _OUT_NAMES
from gpugrad.ops.out import out_variant as _out_variant
from gpugrad.ops.reduction import (
    all,
    amax,
    amin,
    any,
    argmax,
    argmin,
    argsort,
    count_nonzero,
    cumprod,
    cumsum,
    kthvalue,
    max,
    mean,
    median,
    min,
    norm,
    prod,
    sort,
    std,
    std_mean,
    sum,
    topk,
    var,
    var_mean,
)
from gpugrad.ops.scatter import (
    index_add,
    index_copy,
    index_fill,
    masked_scatter,
    scatter,
    scatter_add,
    scatter_reduce,
)
from gpugrad.ops.search import (
    bucketize,
    histc,
    histogram,
    searchsorted,
    unique,
    unique_consecutive,
)
from gpugrad.ops.shape import (
    as_strided,
    broadcast_tensors,
    broadcast_to,
    cat,
    chunk,
    concat,
    concatenate,
    diag,
    diag_embed,
    diagflat,
    diagonal,
    flatten,
    flip,
    fliplr,
    flipud,
    gather,
    hstack,
    index_select,
    masked_select,
    meshgrid,
    moveaxis,
    movedim,
    narrow,
    permute,
    repeat_interleave,
    reshape,
    roll,
    select,
    split,
    split_with_sizes,
    squeeze,
    stack,
    swapaxes,
    swapdims,
    t,
    take_along_dim,
    tensor_split,
    tile,
    trace,
    transpose,
    tril,
    triu,
    unbind,
    unflatten,
    unsqueeze,
    vstack,
)
from gpugrad.printing import set_printoptions
from gpugrad.random import (
    Generator,
    bernoulli,
    default_generator,
    get_rng_state,
    initial_seed,
    manual_seed,
    multinomial,
    normal,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    seed,
    set_rng_state,
)
from gpugrad.serialization import (
    load,
    save,
)
from gpugrad.tensor import (
    Tensor,
    is_floating_point,
    is_tensor,
)
from gpugrad.threads import (
    get_num_threads,
    set_num_threads,
)

del _cuda_amp


# torch's argument parser's conveniences on the namespace's functions: NumPy's axis= and keepdims= wherever
# a function takes dim and keepdim, and out= on the common ops (ops/out.py)
for _name, _value in list(globals().items()):
    if not _name.startswith("_") and callable(_value) and not isinstance(_value, type) and \
            getattr(_value, "__module__", "").startswith("gpugrad.ops"):
        globals()[_name] = _numpy_keywords(_value)
for _name in _OUT_NAMES:
    globals()[_name] = _out_variant(globals()[_name], _name)
del _name, _value

__version__ = "0.2.0"
