"""The kernel loader: each kernels/*.cu is compiled once per device by NVRTC
(``cupy.RawModule``) and its template instantiations are looked up by name.

``INSTANTIATIONS`` is the one list of what each file instantiates; the
compile check (tests/test_kernels_compile.py) reads the same list, so what is
checked without a GPU is exactly what runs on one.
"""

import functools
import itertools
import pathlib
from importlib import resources

from gpugrad import backend

COMPILE_OPTIONS = ("--std=c++17",)

# Template arguments by dtype name.
FLOAT_TYPES = {"float16": "__half", "bfloat16": "__nv_bfloat16", "float32": "float", "float64": "double"}
INDEX_TYPES = {"int32": "int", "int64": "long long"}
APPLY_MODES = {"lse_grad": 0, "softmax": 1, "log_softmax": 2}
# Row clusters (sm_90 only; launch.row_cluster picks the size): blocks per cluster (8, the most a portable
# cluster holds: rows up to 8 x 224 KB stay on chip) and the element types that have them (double rows split)
CLUSTER_SIZES = (8,)
CLUSTER_TYPES = ("float", "__half", "__nv_bfloat16")


def _expand(template, **choices):
    keys = list(choices)
    return [template.format(**dict(zip(keys, values))) for values in itertools.product(*choices.values())]


_T = list(FLOAT_TYPES.values())
_I = list(INDEX_TYPES.values())
INSTANTIATIONS = {
    "logsumexp.cu": _expand("logsumexp_forward<{t}>", t=_T)
                    + _expand("logsumexp_forward<{t}, {c}>", t=CLUSTER_TYPES, c=CLUSTER_SIZES)
                    + _expand("apply_stats<{t}, {mode}>", t=_T, mode=APPLY_MODES.values())
                    + _expand("logsumexp_span_forward<{t}>", t=_T),
    "softmax.cu": _expand("softmax_forward<{t}, {log}>", t=_T, log=("false", "true"))
                  + _expand("softmax_forward<{t}, {log}, {c}>", t=CLUSTER_TYPES, log=("false", "true"), c=CLUSTER_SIZES)
                  + _expand("softmax_backward<{t}, {log}>", t=_T, log=("false", "true"))
                  + _expand("softmax_backward<{t}, {log}, {c}>", t=CLUSTER_TYPES, log=("false", "true"),
                            c=CLUSTER_SIZES)
                  + _expand("softmax_span_{way}<{t}, {log}>", way=("forward", "backward"), t=_T, log=("false", "true")),
    "cross_entropy.cu": _expand("cross_entropy_forward<{t}, {i}>", t=_T, i=_I)
                        + _expand("cross_entropy_forward<{t}, {i}, {c}>", t=CLUSTER_TYPES, i=_I, c=CLUSTER_SIZES)
                        + _expand("cross_entropy_backward<{t}, {i}>", t=_T, i=_I)
                        + _expand("cross_entropy_span_{way}<{t}, {i}>", way=("forward", "backward"), t=_T, i=_I)
                        + _expand("check_indices<{i}>", i=_I),
    "optimizers.cu": _expand("{k}<{t}>", k=("sgd_step", "adam_step", "rmsprop_step", "adagrad_step"), t=_T)
                     + ["increment_steps"],
    "foreach.cu": _expand("{k}<{t}>", k=("norm_partials", "scale_by_norm", "unscale_check", "clamp_values"), t=_T),
    "layer_norm.cu": _expand("{k}<{t}>", k=("layer_norm_forward", "layer_norm_backward"), t=_T),
    "attention.cu": _expand("attention_softmax_forward<{t}, {mask}>", t=_T, mask=(0, 1, 2))
                    + _expand("attention_softmax_backward<{t}>", t=_T),
    "elementwise.cu": _expand("{k}<{t}, {tanh}>", k=("gelu_forward", "gelu_backward", "gelu_backward_bias"), t=_T,
                              tanh=("false", "true"))
                      + _expand("output_backward<{t}, {sigmoid}>", t=_T, sigmoid=("false", "true"))
                      + _expand("{k}<{t}>", k=("column_sums", "dropout_apply", "sigmoid_forward"), t=_T),
}


def kernel_dir():
    """kernels/ beside the package in a source tree, else the installed copy."""
    tree = pathlib.Path(__file__).resolve().parents[2] / "kernels"
    if (tree / "common.cuh").is_file():
        return tree
    return pathlib.Path(str(resources.files("gpugrad.kernels")))


def source(filename):
    return (kernel_dir() / filename).read_text()


def options():
    return COMPILE_OPTIONS + (f"-I{kernel_dir()}",)


@functools.lru_cache(maxsize=None)
def _module(filename, device_id):
    cp = backend.cupy_module()
    with cp.cuda.Device(device_id):
        module = cp.RawModule(code=source(filename), options=options(),
                              name_expressions=INSTANTIATIONS[filename])
        module.compile()
    return module


@functools.lru_cache(maxsize=None)
def _function(filename, name, device_id):
    return _module(filename, device_id).get_function(name)


def get_function(filename, name, device_id):
    """The compiled kernel ``name`` (a name expression of INSTANTIATIONS) on a device."""
    if name not in INSTANTIATIONS[filename]:
        raise KeyError(f"{name} is not instantiated by {filename}")
    return _function(filename, name, device_id)
