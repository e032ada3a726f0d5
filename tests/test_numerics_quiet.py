"""inf and nan come out as in torch without NumPy's RuntimeWarnings, even
under ``python -W error`` (gpugrad silences the warnings of its own modules
at import, at no cost per op), while the user's own NumPy code keeps NumPy's
warnings."""

import subprocess
import sys

SCRIPT = r"""
import numpy
import gpugrad
import gpugrad.nn.functional as F

x = gpugrad.tensor([0.0, 1e38, -1.0, float("inf"), float("-inf"), float("nan")], requires_grad=True)
y = (x * 1e10).exp() + (x * x).log() / x - x.sqrt() + x.reciprocal()
total = y.sum() + y.mean() + x.prod() + x.var() + (x - x).sum()
total.backward()
logits = gpugrad.tensor([[float("inf"), 1.0], [float("-inf"), float("-inf")], [float("nan"), 0.0]],
                        requires_grad=True)
(F.cross_entropy(logits, gpugrad.tensor([0, 1, 1])) + gpugrad.logsumexp(logits, 1).sum()
 + gpugrad.softmax(logits, 1).sum() + F.mse_loss(logits, -logits)).backward()
special = [0.0, 1e38, -1e38, -1.0, float("inf"), float("-inf"), float("nan"), 1e-45]
unary = ["exp", "log", "sqrt", "rsqrt", "reciprocal", "tanh", "sigmoid", "sin", "cos", "tan", "log1p", "expm1",
         "log2", "log10", "exp2", "erf", "sinh", "cosh", "atan", "abs", "sign", "relu", "floor", "ceil", "round",
         "trunc", "frac", "square", "neg", "sum", "mean", "prod", "var", "std", "norm", "amax", "amin", "max",
         "min", "median", "logsumexp", "softmax", "log_softmax", "cumsum", "cumprod", "nan_to_num", "gelu", "silu"]
for name in unary:
    for dtype in (gpugrad.float32, gpugrad.float64):
        a = gpugrad.tensor(special, dtype=dtype, requires_grad=True)
        args = (0,) if name in ("logsumexp", "softmax", "log_softmax", "cumsum", "cumprod") else ()
        out = getattr(gpugrad, name)(a, *args)
        out.sum().backward()
        g = gpugrad.autograd.grad(getattr(gpugrad, name)(a, *args).sum(), a, create_graph=True)[0]
binary = ["add", "sub", "mul", "div", "pow", "maximum", "minimum", "fmod", "remainder", "floor_divide", "atan2",
          "hypot", "xlogy", "lerp"]
for name in binary:
    if not hasattr(gpugrad, name):
        continue
    a = gpugrad.tensor(special, requires_grad=True)
    b = gpugrad.tensor(special[::-1], requires_grad=True)
    extra = (0.5,) if name == "lerp" else ()
    out = getattr(gpugrad, name)(a, b, *extra)
    if out.requires_grad and name != "floor_divide":     # floor_divide has no derivative (torch's backward raises)
        out.sum().backward()
m = gpugrad.tensor([special[:4], special[4:]], requires_grad=True)
(m @ m.T).sum().backward()
for loss in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy_with_logits",
             "kl_div"):
    inputs = gpugrad.tensor(special, requires_grad=True)
    getattr(F, loss)(inputs, gpugrad.tensor(special[::-1]), reduction="sum").backward()
print("quiet", numpy.isnan(total.item()))
numpy.seterr(all="raise")
print("under seterr(raise)", (x * 1e10).exp().tolist()[1])
numpy.seterr(all="warn")
try:
    numpy.log(numpy.array([-1.0]))
except RuntimeWarning:
    print("user warning kept")
"""


def test_gpugrad_is_quiet_under_w_error_and_users_numpy_is_not():
    done = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", SCRIPT], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["quiet True", "under seterr(raise) inf", "user warning kept"]
