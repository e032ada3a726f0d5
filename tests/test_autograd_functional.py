"""gpugrad/autograd/functional.py against torch.autograd.functional."""

import pytest
import torch.autograd.functional as TAF
from conftest import assert_close, make_pair

import gpugrad
import gpugrad.autograd.functional as AF


def f_vector(x, y):
    return (x.exp() * y.sum()).tanh(), x * y


def t_vector(x, y):
    return (x.exp() * y.sum()).tanh(), x * y


def scalar(x):
    return (x.sin() * x).sum() + x.logsumexp(0) ** 2


def test_jacobian_matches_torch(rng, device):
    x, tx = make_pair(rng, (3,), "float64", device)
    y, ty = make_pair(rng, (3,), "float64", device)
    ours = AF.jacobian(f_vector, (x, y))
    theirs = TAF.jacobian(t_vector, (tx, ty))
    for out_o, out_t in zip(ours, theirs):
        for a, b in zip(out_o, out_t):
            # tanh's derivative 1 - y^2 where y nears 1 turns an ulp of y (NumPy's tanh against torch's) into
            # 1e-11 of itself: entries far below 1 are held to 1e-12 absolutely (seed 2770001822: 3e-11 of 7e-5)
            assert_close(a, b, 1e-12, floor=1.0)
    single = AF.jacobian(lambda a: a.softmax(0), x)
    assert single.shape == (3, 3)
    assert_close(single, TAF.jacobian(lambda a: a.softmax(0), tx), 1e-12)


def test_hessian_vjp_jvp_hvp_match_torch(rng, device):
    x, tx = make_pair(rng, (4,), "float64", device)
    v, tv = make_pair(rng, (4,), "float64", device, requires_grad=False)
    assert_close(AF.hessian(scalar, x), TAF.hessian(lambda a: (a.sin() * a).sum() + a.logsumexp(0) ** 2, tx), 1e-10)
    out, vjp = AF.vjp(lambda a: a.exp() * 2, x, v)
    tout, tvjp = TAF.vjp(lambda a: a.exp() * 2, tx, tv)
    assert_close(out, tout, 1e-12)
    assert_close(vjp, tvjp, 1e-12)
    out, jvp = AF.jvp(lambda a: a.sin() * a.sum(), x, v)
    tout, tjvp = TAF.jvp(lambda a: a.sin() * a.sum(), tx, tv)
    assert_close(jvp, tjvp, 1e-12)
    out, hvp = AF.hvp(scalar, x, v)
    tout, thvp = TAF.hvp(lambda a: (a.sin() * a).sum() + a.logsumexp(0) ** 2, tx, tv)
    assert_close(out, tout, 1e-12)
    assert_close(hvp, thvp, 1e-10)
    assert not hvp.requires_grad and not out.requires_grad


def test_create_graph_keeps_results_differentiable(rng):
    x, _ = make_pair(rng, (3,), "float64", "cpu")
    jac = AF.jacobian(lambda a: a ** 3, x, create_graph=True)
    assert jac.requires_grad
    third, = gpugrad.autograd.grad(jac.sum(), x)
    assert_close(third, 6 * x.detach(), 1e-12)


def test_vjp_requires_v_for_non_scalar_outputs(rng):
    x, _ = make_pair(rng, (3,), "float64", "cpu")
    with pytest.raises(RuntimeError, match="The vector v can only be None"):
        AF.vjp(lambda a: a * 2, x)
