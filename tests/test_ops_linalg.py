"""gpugrad/ops/linalg.py against torch: 1-D, 2-D and batched (broadcast) products."""

import pytest
import torch
from conftest import FLOAT_TOLERANCE, assert_close, assert_forward_backward, make_pair, to_torch, torch_device

import gpugrad
from gpugrad.autograd import gradcheck, gradgradcheck

CASES = [((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((5, 2, 3), (3, 4)),
         ((2, 3), (5, 3, 4)), ((5, 2, 3), (5, 3, 4)), ((2, 1, 2, 3), (4, 3, 2)), ((3,), (6, 3, 2))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shapes", CASES, ids=str)
def test_matmul_matches_torch(rng, device, dtype, shapes):
    a, ta = make_pair(rng, shapes[0], dtype, device)
    b, tb = make_pair(rng, shapes[1], dtype, device)
    assert_forward_backward(rng, a @ b, ta @ tb, [(a, ta), (b, tb)], FLOAT_TOLERANCE[dtype])


@pytest.mark.parametrize("shapes", CASES[:6], ids=str)
def test_matmul_second_derivatives(rng, device, shapes):
    a, _ = make_pair(rng, shapes[0], "float64", device)
    b, _ = make_pair(rng, shapes[1], "float64", device)
    assert gradcheck(gpugrad.matmul, (a, b))
    assert gradgradcheck(lambda x, y: (x @ y) ** 2, (a, b))


def test_mm_bmm_dot_outer(rng, device):
    a, ta = make_pair(rng, (2, 3), "float64", device)
    b, tb = make_pair(rng, (3, 4), "float64", device)
    assert_close(a.mm(b), ta.mm(tb), 1e-12)
    c, tc = make_pair(rng, (2, 2, 3), "float64", device)
    d, td = make_pair(rng, (2, 3, 2), "float64", device)
    assert_close(c.bmm(d), tc.bmm(td), 1e-12)
    u, tu = make_pair(rng, (3,), "float64", device)
    v, tv = make_pair(rng, (3,), "float64", device)
    assert_close(u.dot(v), tu.dot(tv), 1e-12)
    assert_close(u.outer(v), tu.outer(tv), 1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(RuntimeError, match=r"\[2, 3\] and \[4, 5\]"):
        gpugrad.zeros(2, 3) @ gpugrad.zeros(4, 5)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        gpugrad.zeros(2, 3).mm(gpugrad.zeros(4, 5))


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("i,i->", [(4,), (4,)]),
    ("ij->ji", [(3, 4)]),
    ("ij->j", [(3, 4)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]),
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
    ("i,j->ij", [(3,), (4,)]),
], ids=lambda v: v if isinstance(v, str) else "")
def test_einsum_matches_torch(rng, equation, shapes):
    pairs = [make_pair(rng, shape, "float64") for shape in shapes]
    ours = gpugrad.einsum(equation, *[p[0] for p in pairs])
    theirs = torch.einsum(equation, *[p[1] for p in pairs])
    assert_forward_backward(rng, ours, theirs, pairs, 1e-12)


def test_einsum_is_twice_differentiable(rng):
    a, _ = make_pair(rng, (3, 4), "float64")
    b, _ = make_pair(rng, (4, 2), "float64")
    assert gradgradcheck(lambda x, y: gpugrad.einsum("ij,jk->ik", x, y), (a, b))


# -- issue 25: exactness --------------------------------------------------------------------------------

def test_linear_of_a_1d_input_and_backward_over_empty_dims(rng):
    for x_shape, w_shape in (((3,), (2, 3)), ((0, 3), (2, 3)), ((2, 0), (0, 0)), ((4, 3), (3,))):
        x, tx = make_pair(rng, x_shape)
        w, tw = make_pair(rng, w_shape)
        out, tout = gpugrad.nn.functional.linear(x, w), torch.nn.functional.linear(tx, tw)
        assert out.shape == tout.shape
        assert_forward_backward(rng, out, tout, [(x, tx), (w, tw)], 1e-12)


def test_einsum_diagonals_are_differentiable(rng):
    x, tx = make_pair(rng, (3, 3))
    assert_forward_backward(rng, gpugrad.einsum("ii->i", x), torch.einsum("ii->i", tx), [(x, tx)], 1e-12)
    assert_close(gpugrad.einsum("ii", x), torch.einsum("ii", tx), 1e-12)


def test_linear_with_a_1d_weight_and_a_bias_follows_torchs_paths(rng):
    """addmm (a 2-D input, or a contiguous one with a bias of 1 or more dims) refuses a 1-D weight; the
    other paths add the bias to the product."""
    for shape, transpose in (((2,), False), ((3, 2), False), ((1, 2, 2), False), ((2, 2, 2), True),
                             ((2, 1, 2, 2), False)):
        for bias_shape in ((), (1,), (2,)):
            results = []
            for lib in (torch, gpugrad):
                x = lib.ones(shape, dtype=lib.float64)
                x = x.transpose(0, 1) if transpose else x
                try:
                    results.append(tuple(lib.nn.functional.linear(x, lib.ones(2, dtype=lib.float64),
                                                                  lib.ones(bias_shape, dtype=lib.float64)).shape))
                except RuntimeError as error:
                    results.append(str(error))
            assert results[0] == results[1], (shape, transpose, bias_shape)


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_einsum_of_an_expanded_operand_multiplies_every_term_as_torch(rng, device, value):
    """An expanded (stride-0) operand is multiplied term by term, as torch's bmm does: NumPy's einsum
    took y * sum(g) along a zero stride, so an inf times terms of both signs (or a 0) gave +-inf where
    torch gives nan (fuzzer seed 2025120316, case einsum/torch:2501859075). Its size-1 broadcast is summed
    first in both libraries (sum(g) * y), and stays so."""
    x, tx = make_pair(rng, (4,), device=device)
    ys = [(gpugrad.tensor(value, dtype=gpugrad.float64, device=device).expand(5),
           torch.tensor(value, dtype=torch.float64, device=torch_device(device)).expand(5)),
          (gpugrad.full((1,), value, dtype=gpugrad.float64, device=device),
           torch.full((1,), value, dtype=torch.float64, device=torch_device(device)))]
    for y, ty in ys:
        upstream = rng.standard_normal((4, y.shape[0]))
        if y.shape[0] > 1:
            upstream[:, :3] = (0.0, 1.0, -1.0)       # a 0 and terms of both signs in every row
        x.grad, tx.grad = None, None
        out, tout = gpugrad.einsum("i,j->ij", x, y), torch.einsum("i,j->ij", tx, ty)
        assert_close(out, tout, 1e-12)
        out.backward(gpugrad.tensor(upstream, device=device))
        tout.backward(to_torch(upstream, device))
        assert_close(x.grad, tx.grad, 1e-12)
    g = rng.standard_normal((4, 5))
    g[:, :3] = (0.0, 1.0, -1.0)
    for y, ty in ys:        # nan for the expanded y, +-inf for the size-1 one (summed first)
        assert_close(gpugrad.einsum("ij,j->i", gpugrad.tensor(g, device=device), y),
                     torch.einsum("ij,j->i", to_torch(g, device), ty), 1e-12)
