"""Random expression graphs (hypothesis) built in lockstep with gpugrad and
torch; values and gradients of every leaf must agree in float64."""

import numpy
import torch
from conftest import assert_close
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpugrad

UNARY = {
    "tanh": (lambda a: a.tanh(), lambda a: a.tanh()),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: a.sigmoid()),
    "sin": (lambda a: a.sin(), lambda a: a.sin()),
    "exp_tanh": (lambda a: a.tanh().exp(), lambda a: a.tanh().exp()),
    "square": (lambda a: a * a, lambda a: a * a),
    "softplus": (gpugrad.nn.functional.softplus, torch.nn.functional.softplus),
    "gelu": (gpugrad.nn.functional.gelu, torch.nn.functional.gelu),
    "softmax": (lambda a: a.softmax(-1), lambda a: a.softmax(-1)),
    "log_softmax": (lambda a: a.log_softmax(0), lambda a: a.log_softmax(0)),
    "lse_keep": (lambda a: a.logsumexp(-1, keepdim=True) + a, lambda a: a.logsumexp(-1, keepdim=True) + a),
    "transpose_back": (lambda a: a.T.contiguous().T, lambda a: a.T.contiguous().T),
    "slice_pad": (lambda a: gpugrad.cat([a[:1] * 2, a[1:]], 0), lambda a: torch.cat([a[:1] * 2, a[1:]], 0)),
    "sqrt_abs": (lambda a: (a.abs() + 1).sqrt(), lambda a: (a.abs() + 1).sqrt()),
    "mean_center": (lambda a: a - a.mean(0, keepdim=True), lambda a: a - a.mean(0, keepdim=True)),
}
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / (b * b + 1), lambda a, b: a / (b * b + 1)),
    "maximum": (gpugrad.maximum, torch.maximum),
    "matmul_sq": (lambda a, b: (a @ b.T) @ b / 4, lambda a, b: (a @ b.T) @ b / 4),
    "where": (lambda a, b: gpugrad.where(a > b, a, b * 0.5), lambda a, b: torch.where(a > b, a, b * 0.5)),
}

ops = st.one_of(st.tuples(st.just("u"), st.sampled_from(sorted(UNARY)), st.integers(0, 10)),
                st.tuples(st.just("b"), st.sampled_from(sorted(BINARY)), st.integers(0, 10), st.integers(0, 10)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=st.lists(ops, min_size=1, max_size=12), seed=st.integers(0, 2**32 - 1),
       leaves=st.integers(1, 3))
def test_random_graphs_match_torch(program, seed, leaves):
    rng = numpy.random.default_rng(seed)
    values = [rng.uniform(-2, 2, (3, 4)) for _ in range(leaves)]
    ours = [gpugrad.tensor(v, requires_grad=True) for v in values]
    theirs = [torch.tensor(v, requires_grad=True) for v in values]
    pool_o, pool_t = list(ours), list(theirs)
    for step in program:
        if step[0] == "u":
            f, g = UNARY[step[1]]
            i = step[2] % len(pool_o)
            pool_o.append(f(pool_o[i]))
            pool_t.append(g(pool_t[i]))
        else:
            f, g = BINARY[step[1]]
            i, j = step[2] % len(pool_o), step[3] % len(pool_o)
            pool_o.append(f(pool_o[i], pool_o[j]))
            pool_t.append(g(pool_t[i], pool_t[j]))
    weights = rng.standard_normal((len(pool_o), 3, 4))
    out = sum((p * gpugrad.tensor(w)).sum() for p, w in zip(pool_o, weights))
    tout = sum((p * torch.tensor(w)).sum() for p, w in zip(pool_t, weights))
    assert_close(out, tout, 1e-10)
    out.backward()
    tout.backward()
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad, 1e-9)
