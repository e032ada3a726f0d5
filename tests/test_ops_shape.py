"""gpugrad/ops/shape.py against torch: views, copies, indexing, and their gradients."""

import numpy
import pytest
import torch
from conftest import DEVICES, assert_close, assert_forward_backward, compare_with_torch, make_pair

import gpugrad
from gpugrad.autograd import gradgradcheck

SHAPE_OPS = [
    ("reshape", lambda x: x.reshape(4, -1), lambda x: x.reshape(4, -1)),
    ("view", lambda x: x.view(2, 12), lambda x: x.view(2, 12)),
    ("flatten", lambda x: x.flatten(1), lambda x: x.flatten(1)),
    ("unflatten", lambda x: x.unflatten(2, (2, 2)), lambda x: x.unflatten(2, (2, 2))),
    ("transpose", lambda x: x.transpose(0, 2), lambda x: x.transpose(0, 2)),
    ("T", lambda x: x.T, lambda x: x.permute(2, 1, 0)),
    ("mT", lambda x: x.mT, lambda x: x.mT),
    ("permute", lambda x: x.permute(1, 2, 0), lambda x: x.permute(1, 2, 0)),
    ("squeeze_unsqueeze", lambda x: x.unsqueeze(1).unsqueeze(-1).squeeze(1),
     lambda x: x.unsqueeze(1).unsqueeze(-1).squeeze(1)),
    ("expand", lambda x: x[:, :1].expand(5, -1, 3, -1), lambda x: x[:, :1].expand(5, -1, 3, -1)),
    ("basic_index", lambda x: x[1, ::2, 1:], lambda x: x[1, ::2, 1:]),
    ("negative_step_free", lambda x: x[..., None, -1], lambda x: x[..., None, -1]),
    ("int_index_repeats", lambda x: x[:, [0, 2, 0, 0]], lambda x: x[:, [0, 2, 0, 0]]),
    ("tensor_index", lambda x: x[gpugrad.tensor([1, 0, 1], device=x.device)],
     lambda x: x[torch.tensor([1, 0, 1], device=x.device)]),
    ("mixed_index",
     lambda x: x[gpugrad.tensor([0, 1, 1], device=x.device), :, gpugrad.tensor([3, 0, 3], device=x.device)],
     lambda x: x[torch.tensor([0, 1, 1], device=x.device), :, torch.tensor([3, 0, 3], device=x.device)]),
    ("bool_mask", lambda x: x[x > 0], lambda x: x[x > 0]),
    ("gather", lambda x: x.gather(2, gpugrad.tensor([[[0, 3], [1, 1], [2, 0]]] * 2, device=x.device)),
     lambda x: x.gather(2, torch.tensor([[[0, 3], [1, 1], [2, 0]]] * 2, device=x.device))),
    ("split", lambda x: gpugrad.cat([p * i for i, p in enumerate(x.split(2, dim=2), 1)], 2),
     lambda x: torch.cat([p * i for i, p in enumerate(x.split(2, dim=2), 1)], 2)),
    ("split_sizes", lambda x: x.split([1, 2], dim=1)[1], lambda x: x.split([1, 2], dim=1)[1]),
    ("chunk", lambda x: x.chunk(3, 1)[2], lambda x: x.chunk(3, 1)[2]),
    ("split_with_sizes",
     lambda x: gpugrad.cat([p * i for i, p in enumerate(gpugrad.split_with_sizes(x, [1, 0, 3], 2), 1)], 2),
     lambda x: torch.cat([p * i for i, p in enumerate(torch.split_with_sizes(x, [1, 0, 3], 2), 1)], 2)),
    ("split_with_sizes_unused", lambda x: gpugrad.split_with_sizes(x, [2, 1], 1)[1],
     lambda x: torch.split_with_sizes(x, [2, 1], 1)[1]),
    ("unbind", lambda x: x.unbind(1)[1] * 3, lambda x: x.unbind(1)[1] * 3),
    ("cat", lambda x: gpugrad.cat([x, x * 2, x[:, :1]], 1), lambda x: torch.cat([x, x * 2, x[:, :1]], 1)),
    ("stack", lambda x: gpugrad.stack([x, x.exp()], -1), lambda x: torch.stack([x, x.exp()], -1)),
    ("contiguous", lambda x: x.transpose(0, 1).contiguous(), lambda x: x.transpose(0, 1).contiguous()),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name,ours,theirs", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_op_matches_torch(rng, device, dtype, name, ours, theirs):
    x, tx = make_pair(rng, (2, 3, 4), dtype, device)
    assert_forward_backward(rng, ours(x), theirs(tx), [(x, tx)], 1e-12 if dtype == "float64" else 1e-6)


@pytest.mark.parametrize("name,ours,theirs", SHAPE_OPS, ids=[s[0] for s in SHAPE_OPS])
def test_shape_op_second_derivatives(rng, device, name, ours, theirs):
    x, _ = make_pair(rng, (2, 3, 4), "float64", device)
    assert gradgradcheck(lambda t: ours(t) ** 2, (x,))


def test_views_share_memory_and_version(device):
    x = gpugrad.zeros(2, 3, device=device)
    v = x.view(3, 2)
    t = x.transpose(0, 1)
    s = x[1]
    x.add_(1)
    assert v._version == t._version == s._version == x._version == 1
    assert v.sum().item() == t.sum().item() == 6 and s.tolist() == [1.0, 1.0, 1.0]


def test_view_of_non_contiguous_raises_like_torch():
    x = gpugrad.zeros(3, 4).transpose(0, 1)
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        x.view(12)
    assert x.reshape(12).shape == (12,)


def test_setitem_is_differentiable(rng, device):
    x, tx = make_pair(rng, (4, 3), "float64", device)
    v, tv = make_pair(rng, (3,), "float64", device)
    y, ty = x * 2, tx * 2
    y[1] = v * 3
    ty[1] = tv * 3
    y[gpugrad.tensor([0, 3], device=device), 0] = 7.0
    ty[torch.tensor([0, 3], device=ty.device), 0] = 7.0
    assert_close(y, ty, 0)
    (y ** 2).sum().backward()
    (ty ** 2).sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)
    assert_close(v.grad, tv.grad, 1e-12)


def test_shape_errors_name_the_shapes():
    x = gpugrad.zeros(2, 3)
    with pytest.raises(RuntimeError, match=r"shape '\[4, 2\]' is invalid for input of size 6"):
        x.reshape(4, 2)
    with pytest.raises(RuntimeError, match="expanded size of the tensor"):
        x.expand(2, 4)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        gpugrad.cat([x, gpugrad.zeros(3, 3)], dim=1)
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        gpugrad.stack([x, gpugrad.zeros(3, 2)])
    with pytest.raises(IndexError, match="Dimension out of range"):
        x.sum(2)
    with pytest.raises(RuntimeError, match="split_sizes to sum exactly"):
        x.split([1, 1], dim=1)


def test_gather_out_of_range_raises_on_cpu():
    """RuntimeError, as torch's (a negative index is out of range too)."""
    x = gpugrad.zeros(2, 3)
    for index in ([[0], [3]], [[0], [-1]]):
        with pytest.raises(RuntimeError, match="out of bounds for dimension 1 with size 3"):
            x.gather(1, gpugrad.tensor(index))
        with pytest.raises(RuntimeError, match="out of bounds for dimension 1 with size 3"):
            torch.zeros(2, 3).gather(1, torch.tensor(index))


@pytest.mark.parametrize("name,ours,theirs", [
    ("tril", lambda x: x.tril(), lambda x: x.tril()),
    ("triu_offset", lambda x: gpugrad.triu(x, 1), lambda x: torch.triu(x, 1)),
    ("roll", lambda x: x.roll(1, 2), lambda x: x.roll(1, 2)),
    ("roll_dims", lambda x: x.roll((1, -2), (0, 2)), lambda x: x.roll((1, -2), (0, 2))),
    ("roll_flat", lambda x: x.roll(3), lambda x: x.roll(3)),
    ("flip", lambda x: x.flip(0, 2), lambda x: x.flip(0, 2)),
    ("repeat", lambda x: x.repeat(2, 1, 3), lambda x: x.repeat(2, 1, 3)),
    ("tile", lambda x: x.tile((2,)), lambda x: x.tile((2,))),
    ("repeat_interleave", lambda x: x.repeat_interleave(2, 1), lambda x: x.repeat_interleave(2, 1)),
    ("movedim", lambda x: x.movedim(0, -1), lambda x: x.movedim(0, -1)),
    ("narrow", lambda x: x.narrow(2, 1, 2), lambda x: x.narrow(2, 1, 2)),
    ("pad_constant", lambda x: gpugrad.nn.functional.pad(x, (1, 2, 0, 1), value=0.5),
     lambda x: torch.nn.functional.pad(x, (1, 2, 0, 1), value=0.5)),
    ("pad_crop", lambda x: gpugrad.nn.functional.pad(x, (-1, 1)), lambda x: torch.nn.functional.pad(x, (-1, 1))),
    ("pad_reflect", lambda x: gpugrad.nn.functional.pad(x, (2, 1), mode="reflect"),
     lambda x: torch.nn.functional.pad(x, (2, 1), mode="reflect")),
    ("pad_replicate", lambda x: gpugrad.nn.functional.pad(x, (1, 2), mode="replicate"),
     lambda x: torch.nn.functional.pad(x, (1, 2), mode="replicate")),
    ("pad_circular", lambda x: gpugrad.nn.functional.pad(x, (1, 1), mode="circular"),
     lambda x: torch.nn.functional.pad(x, (1, 1), mode="circular")),
], ids=lambda v: v if isinstance(v, str) else "")
def test_more_shape_ops_match_torch(rng, device, name, ours, theirs):
    x, tx = make_pair(rng, (2, 3, 4), "float64", device)
    assert_forward_backward(rng, ours(x), theirs(tx), [(x, tx)], 1e-12)


def test_cat_edge_cases_as_torch():
    acc = gpugrad.tensor([])
    for i in range(3):
        acc = gpugrad.cat([acc, gpugrad.ones(2) * i])      # the accumulate-in-a-loop idiom
    assert acc.tolist() == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    assert gpugrad.cat([gpugrad.tensor([]), gpugrad.ones(2, 3)]).shape == (2, 3)
    with pytest.raises(RuntimeError, match=r"zero-dimensional tensor \(at position 0\) cannot be concatenated"):
        gpugrad.cat([gpugrad.tensor(1.0), gpugrad.tensor(2.0)])
    with pytest.raises(RuntimeError, match="expected a non-empty list"):
        gpugrad.cat([])


def test_split_with_sizes_is_one_node_and_checks_sizes():
    x = gpugrad.ones(5, 2, requires_grad=True)
    pieces = gpugrad.split_with_sizes(x, [2, 3])
    assert pieces[0].grad_fn is pieces[1].grad_fn and pieces[0].grad_fn.name() == "SplitWithSizesBackward0"
    for bad in ([2, 2], [6, -1]):
        with pytest.raises(RuntimeError, match="split_with_sizes expects split_sizes to sum exactly to 5"):
            gpugrad.split_with_sizes(x, bad)


# -- issue 25: exactness --------------------------------------------------------------------------------

def test_repeat_and_tile_copy_even_with_all_ones():
    x = gpugrad.tensor([1.0, 2.0])
    for out in (x.repeat(1), x.repeat(1, 1), gpugrad.tile(x, (1,)), x.tile(1, 1)):
        out[0] = 7.0
        assert x.tolist() == [1.0, 2.0]


def test_view_ops_return_a_view_never_the_input():
    x = gpugrad.tensor([[1.0, 2.0]], requires_grad=True)
    for out in (x.reshape(1, 2), x.squeeze(0).unsqueeze(0), x.expand(1, 2),
                x[0:1].t().t(), gpugrad.tensor(3.0).t(), x.unflatten(1, (2,))):
        assert out is not x
    y = x.reshape(1, 2)
    assert y.grad_fn is not None and not y.is_leaf


def test_0d_movedim_flip_and_friends():
    x = gpugrad.tensor(1.5)
    assert gpugrad.movedim(x, 0, -1).shape == torch.movedim(torch.tensor(1.5), 0, -1).shape == ()
    assert gpugrad.flip(x, (0,)).item() == 1.5
    with pytest.raises(RuntimeError, match="Input must be >= 2-d"):
        gpugrad.fliplr(gpugrad.zeros(3))
    with pytest.raises(TypeError):
        gpugrad.flip(x, 0)         # torch.flip takes a sequence of dims; the method takes ints
    assert gpugrad.zeros(2, 3).flip(0, 1).shape == (2, 3)


def test_indexing_with_integers_and_index_tensors_keeps_torchs_dim_order():
    """x[None, idx, :, -1]: torch applies the integer first (NumPy would move the index dims first)."""
    values = numpy.arange(27.0).reshape(3, 3, 3)
    key = (None, [0, 2], slice(None), -1)
    assert gpugrad.tensor(values)[key].tolist() == torch.tensor(values)[key].tolist()



def test_an_empty_advanced_index_result_checks_no_index_either_way(device):
    """torch's index kernels check an index only for an element they move: x[idx, None, 4:] of a 3x4 x with
    idx = [-4, 1] is empty, and neither its forward nor its backward raises (fuzzer seed 884531831, case
    __getitem__/call:3637963486: the backward's scatter raised NumPy's IndexError); a non-empty one raises."""
    values = numpy.arange(12.0).reshape(3, 4)
    x = gpugrad.tensor(values, device=device, requires_grad=True)
    tx = torch.tensor(values, requires_grad=True)
    for lib, t in ((gpugrad, x), (torch, tx)):
        y = t[lib.tensor([-4, 1], device=t.device), None, 4:]
        assert tuple(y.shape) == (2, 1, 0)
        y.backward(lib.ones_like(y))
    assert x.grad.tolist() == tx.grad.tolist() == numpy.zeros((3, 4)).tolist()
    (g,) = gpugrad.autograd.grad(x[gpugrad.tensor([-4, 1], device=device), None, 4:].sum(), x, create_graph=True)
    assert g.tolist() == numpy.zeros((3, 4)).tolist()
    with pytest.raises(IndexError):     # on CUDA at the next synchronising read (the error word: CuPy wraps it)
        x[gpugrad.tensor([-4, 1], device=device), None, 2:].tolist()
    with pytest.raises(IndexError):
        tx[torch.tensor([-4, 1]), None, 2:]
    assert x[gpugrad.tensor([-3, 2], device=device), None, 2:].tolist() == tx[torch.tensor([-3, 2]), None, 2:].tolist()


def test_an_advanced_index_out_of_range_raises_on_either_device(device):
    """CuPy takes an index array's values modulo the size unchecked: gpugrad checks them (on CUDA with the
    error word, raised at the next synchronising read, as torch's device assert surfaces), reading, writing and
    through index_select; an empty region checks none."""
    values = numpy.arange(12.0).reshape(3, 4)
    y, ty = gpugrad.tensor(values, device=device), torch.tensor(values)
    for key in ((gpugrad.tensor([3, 0], device=device),), (slice(None), gpugrad.tensor([[1], [-5]], device=device)),
                (Ellipsis, gpugrad.tensor([4], device=device))):
        with pytest.raises(IndexError):
            y[key].tolist()
        with pytest.raises(IndexError):
            y[key] = 1.0                # (on CUDA the write has landed where CuPy wrapped the index)
            y.tolist()
        y = gpugrad.tensor(values, device=device)
    y[gpugrad.tensor([5, -7], device=device), 4:] = 1.0
    ty[torch.tensor([5, -7]), 4:] = 1.0
    y[gpugrad.tensor([-3, 2], device=device), gpugrad.tensor([-1, 0], device=device)] = 7.0
    ty[torch.tensor([-3, 2]), torch.tensor([-1, 0])] = 7.0
    assert y.tolist() == ty.tolist()
    for index in ([1, 3], [-1]):       # index_select takes no negative index
        with pytest.raises(IndexError):
            gpugrad.index_select(y, 0, gpugrad.tensor(index, device=device)).tolist()
        with pytest.raises(IndexError):
            torch.index_select(ty, 0, torch.tensor(index))
    assert gpugrad.index_select(y, 0, gpugrad.tensor([2, 0], device=device)).tolist() == \
        torch.index_select(ty, 0, torch.tensor([2, 0])).tolist()

# -- diagonals, as_strided, meshgrid ---------------------------------------------------------

@pytest.mark.parametrize("device", DEVICES)
def test_diagonals_match_torch(rng, device):
    x = rng.standard_normal((3, 4, 5))
    for args in ((), (1,), (-2, 0, 2), (1, -1, 0), (7, 0, 1)):
        compare_with_torch(rng, lambda a: gpugrad.diagonal(a, *args), lambda a: torch.diagonal(a, *args), [x], device)
    v = rng.standard_normal(4)
    for k in (0, 2, -1):
        compare_with_torch(rng, lambda a: gpugrad.diag(a, k), lambda a: torch.diag(a, k), [v], device)
        compare_with_torch(rng, lambda a: a.diag(k), lambda a: a.diag(k), [x[0]], device)
    compare_with_torch(rng, lambda a: gpugrad.diag_embed(a, 1, 0, 2), lambda a: torch.diag_embed(a, 1, 0, 2), [x],
                       device)
    compare_with_torch(rng, gpugrad.diagflat, torch.diagflat, [x[0, :2]], device)
    compare_with_torch(rng, gpugrad.trace, torch.trace, [x[0]], device)
    compare_with_torch(rng, lambda a: gpugrad.linalg.diagonal(a, offset=1),
                       lambda a: torch.linalg.diagonal(a, offset=1), [x], device)


def test_diagonal_is_a_view_written_through():
    x, tx = gpugrad.zeros(3, 3), torch.zeros(3, 3)
    x.diagonal().fill_(2.0)
    tx.diagonal().fill_(2.0)
    x.diagonal(1).add_(gpugrad.tensor([1.0, 3.0]))
    tx.diagonal(1).add_(torch.tensor([1.0, 3.0]))
    assert numpy.array_equal(x.numpy(), tx.numpy())
    leaf = gpugrad.ones(3, 3, requires_grad=True)
    y = leaf * 2
    y.diagonal().mul_(gpugrad.tensor([1.0, 2.0, 3.0]))
    y.sum().backward()
    tleaf = torch.ones(3, 3, requires_grad=True)
    ty = tleaf * 2
    ty.diagonal().mul_(torch.tensor([1.0, 2.0, 3.0]))
    ty.sum().backward()
    assert numpy.array_equal(leaf.grad.numpy(), tleaf.grad.numpy())
    with pytest.raises(RuntimeError, match="cannot be identical"):
        gpugrad.zeros(2, 2).diagonal(0, 1, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_as_strided_matches_torch(rng, device):
    x = rng.standard_normal((4, 5))
    for size, stride, offset in (((3, 3), (1, 2), 0), ((2, 2, 2), (5, 1, 2), 3), ((4,), (6,), None)):
        compare_with_torch(rng, lambda a: gpugrad.as_strided(a, size, stride, offset),
                           lambda a: torch.as_strided(a, size, stride, offset), [x], device)
    compare_with_torch(rng, lambda a: a.t().as_strided((3, 2), (1, 4)), lambda a: a.t().as_strided((3, 2), (1, 4)),
                       [x], device)
    with pytest.raises(RuntimeError, match="out of bounds"):
        gpugrad.zeros(2, 2).as_strided((3, 3), (1, 1), 1)
    with pytest.raises(RuntimeError):
        torch.zeros(2, 2).as_strided((3, 3), (1, 1), 1)
    y = gpugrad.zeros(6)
    y.as_strided((2, 2), (2, 1))[1].fill_(1.0)
    assert y.tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("indexing", ["ij", "xy"])
def test_meshgrid_matches_torch(rng, indexing):
    a, b, c = rng.standard_normal(3), rng.standard_normal(2), rng.standard_normal(4)
    compare_with_torch(rng, lambda *t: gpugrad.meshgrid(*t, indexing=indexing),
                       lambda *t: torch.meshgrid(*t, indexing=indexing), [a, b, c])
    compare_with_torch(rng, lambda *t: gpugrad.meshgrid(list(t), indexing=indexing),
                       lambda *t: torch.meshgrid(list(t), indexing=indexing), [a, b])
    with pytest.warns(UserWarning, match="indexing argument"):
        gpugrad.meshgrid(gpugrad.ones(2), gpugrad.ones(3))
    with pytest.raises(RuntimeError, match="0D or 1D"):
        gpugrad.meshgrid(gpugrad.ones(2, 2), indexing="ij")


def test_edge_cases_of_take_along_dim_roll_index_select_index_put_and_setitem():
    x = numpy.arange(12.0).reshape(4, 3)
    index = numpy.array([[0, 5, -5], [4, -1, 40]])       # torch 2.13 takes the indices modulo the size
    assert gpugrad.take_along_dim(gpugrad.tensor(x), gpugrad.tensor(index), 0).tolist() == \
        torch.take_along_dim(torch.tensor(x), torch.tensor(index), 0).tolist()
    for lib in (gpugrad, torch):
        with pytest.raises(RuntimeError, match="out of bounds"):        # not so without a dim
            lib.take_along_dim(lib.tensor(x), lib.tensor([12]))
        assert tuple(lib.roll(lib.ones(0, 3), 4, -3).shape) == (0, 3)     # an empty tensor: no dim check
        with pytest.raises(RuntimeError, match="INDICES element is out of DATA bounds, id=-1 axis_dim=3"):
            lib.tensor(x).index_select(1, lib.tensor([0, -1]))           # the columns of a matrix
        with pytest.raises(IndexError, match="index out of range in self"):
            lib.tensor(x).index_select(0, lib.tensor([0, -1]))
        with pytest.raises(RuntimeError, match="shape mismatch"):       # the value's shape before a bad index
            lib.zeros(4, 2).index_put_((lib.tensor([0, 4]),), lib.ones(4, 4))
        y = lib.zeros(3, dtype=lib.float64)
        y[1] = lib.tensor([[5.0]], dtype=lib.float64)       # the value's leading dims of size 1 dropped
        y[()] = lib.tensor([[[1.0, 2.0, 3.0]]], dtype=lib.float64)
        assert y.tolist() == [1.0, 2.0, 3.0]


def test_setitem_on_an_expanded_tensor_differentiates_twice():
    """x[1:] = v on an expanded x (one element written) and its backward with create_graph."""
    results = []
    for lib in (torch, gpugrad):
        base = lib.tensor([0.5], dtype=lib.float64, requires_grad=True)
        x = base.clone().expand(2)
        x[1:] = 3.0
        (g,) = lib.autograd.grad((x * x).sum(), base, create_graph=True)
        results.append((x.tolist(), g.tolist()))
    assert results[0] == results[1]


def test_negative_constant_padding_narrows_first_as_torch():
    for shape, widths in (((4, 0), (-1, 2)), ((4, 2), (2, -3)), ((4, 1), (-1, 2)), ((4, 2), (-1, -1))):
        outcomes = []
        for lib in (torch, gpugrad):
            try:
                outcomes.append(tuple(lib.nn.functional.pad(lib.ones(shape), widths).shape))
            except RuntimeError as error:
                outcomes.append(str(error))
        assert outcomes[0] == outcomes[1], (shape, widths)
