"""gpugrad/autograd/engine.py and function.py: backward semantics as in torch."""

import gc
import threading
import weakref

import numpy
import pytest
import torch
from conftest import assert_close, make_pair

import gpugrad
from gpugrad.autograd import Function, gradcheck, gradgradcheck


def test_non_scalar_backward_needs_gradient(device):
    x = gpugrad.ones(3, device=device, requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for scalar outputs"):
        (x * 2).backward()
    (x * 2).backward(gpugrad.ones(3, device=device))
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_backward_on_tensor_without_graph_raises():
    with pytest.raises(RuntimeError, match="does not require grad and does not have a grad_fn"):
        gpugrad.ones(1).sum().backward()


def test_gradients_accumulate_in_leaves(device):
    x = gpugrad.tensor([1.0, 2.0], device=device, requires_grad=True)
    (x * x).sum().backward()
    (x * 3).sum().backward()
    assert x.grad.tolist() == [5.0, 7.0]
    x.grad = None
    (x * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_second_backward_needs_retain_graph(device):
    x = gpugrad.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    assert_close(x.grad, 2 * (numpy.exp([1.0, 2.0]) * (numpy.array([1.0, 2.0]) + 1)), 1e-6)
    with pytest.raises(RuntimeError, match="Trying to backward through the graph a second time"):
        y.backward()


def test_saved_values_are_freed_as_backward_goes():
    x = gpugrad.randn(1000, requires_grad=True)
    hidden = x.exp()
    node = hidden.grad_fn
    ref = weakref.ref(node._saved[0][1])      # (kind, value, ...): gpugrad/autograd/function.py
    y = (hidden * 2).sum()
    del hidden
    gc.collect()
    assert ref() is not None          # the exp output is kept for backward
    y.backward()
    assert node._saved is None
    gc.collect()
    assert ref() is None              # and released once ExpBackward has run


@pytest.mark.slow
def test_chain_of_100000_ops_backprops_without_recursion(device):
    x = gpugrad.tensor([0.5], dtype=gpugrad.float64, device=device, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad.tolist() == [1.0]
    del y
    gc.collect()


def test_no_grad_and_friends(device):
    x = gpugrad.ones(2, device=device, requires_grad=True)
    with gpugrad.no_grad():
        assert not (x * 2).requires_grad
        with gpugrad.enable_grad():
            assert (x * 2).requires_grad
    assert (x * 2).requires_grad

    @gpugrad.no_grad()
    def doubled(t):
        return t * 2
    assert not doubled(x).requires_grad
    with gpugrad.set_grad_enabled(False):
        assert not gpugrad.is_grad_enabled()
    assert gpugrad.is_grad_enabled()
    gpugrad.set_grad_enabled(False)
    assert not (x * 2).requires_grad
    gpugrad.set_grad_enabled(True)
    assert (x * 2).requires_grad


def test_grad_mode_is_thread_local():
    seen = []
    with gpugrad.no_grad():
        worker = threading.Thread(target=lambda: seen.append(gpugrad.is_grad_enabled()))
        worker.start()
        worker.join()
        assert not gpugrad.is_grad_enabled()
    assert seen == [True]


def test_detach_and_requires_grad_rules():
    x = gpugrad.ones(2, requires_grad=True)
    y = x * 2
    assert x.is_leaf and not y.is_leaf and y.requires_grad
    d = y.detach()
    assert d.is_leaf and not d.requires_grad
    with pytest.raises(RuntimeError, match="only change requires_grad flags of leaf variables"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="floating point"):
        gpugrad.tensor([1, 2]).requires_grad_()
    with pytest.raises(RuntimeError, match="Can't call numpy\\(\\) on Tensor that requires grad"):
        x.numpy()


def test_autograd_grad_and_higher_order(rng, device):
    x, tx = make_pair(rng, (4,), "float64", device)
    y, ty = (x ** 4).sum(), (tx ** 4).sum()
    g, = gpugrad.autograd.grad(y, x, create_graph=True)
    tg, = torch.autograd.grad(ty, tx, create_graph=True)
    g2, = gpugrad.autograd.grad(g.sum(), x, create_graph=True)
    tg2, = torch.autograd.grad(tg.sum(), tx, create_graph=True)
    g3, = gpugrad.autograd.grad(g2.sum(), x)
    tg3, = torch.autograd.grad(tg2.sum(), tx)
    for ours, theirs in [(g, tg), (g2, tg2), (g3, tg3)]:
        assert_close(ours, theirs, 1e-12)
    assert x.grad is None                       # grad() touches no .grad
    assert not g3.requires_grad


def test_autograd_grad_unused_inputs():
    x = gpugrad.ones(2, requires_grad=True)
    z = gpugrad.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="appears to not have been used in the graph"):
        gpugrad.autograd.grad((x * 2).sum(), [x, z])
    gx, gz = gpugrad.autograd.grad((x * 2).sum(), [x, z], allow_unused=True)
    assert gx.tolist() == [2.0, 2.0] and gz is None


def test_grad_of_intermediate_tensor():
    x = gpugrad.ones(3, requires_grad=True)
    h = x * 3
    y = (h * h).sum()
    gh, = gpugrad.autograd.grad(y, h)
    assert gh.tolist() == [6.0, 6.0, 6.0]


def test_hooks_and_retain_grad(device):
    x = gpugrad.tensor([1.0, 2.0], device=device, requires_grad=True)
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.tolist()))
    h = x * 3
    h.retain_grad()
    h.register_hook(lambda g: g * 10)
    (h * h).sum().backward()
    assert h.grad.tolist() == [60.0, 120.0]       # hooks run before retain_grad stores
    assert seen == [[180.0, 360.0]] and x.grad.tolist() == [180.0, 360.0]
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert len(seen) == 1 and x.grad.tolist() == [1.0, 1.0]


def test_non_leaf_grad_access_warns():
    y = gpugrad.ones(2, requires_grad=True) * 2
    y.sum().backward()
    with pytest.warns(UserWarning, match="not a leaf Tensor"):
        assert y.grad is None


def test_inplace_bumps_version_and_catches_stale_saved_values(device):
    x = gpugrad.ones(3, device=device, requires_grad=True)
    y = x.exp()
    assert y._version == 0
    y.add_(1)
    assert y._version == 1
    with pytest.raises(RuntimeError,
                       match="modified by an inplace operation.*ExpBackward0.*version 1; expected version 0"):
        y.sum().backward()


def test_inplace_on_leaf_requiring_grad_raises():
    x = gpugrad.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x.mul_(2)
    with gpugrad.no_grad():
        x.mul_(2)
    assert x.tolist() == [2.0, 2.0, 2.0] and x._version == 1


def test_inplace_ops_give_correct_gradients(rng, device):
    x, tx = make_pair(rng, (5,), "float64", device)
    w, tw = make_pair(rng, (5,), "float64", device)
    y, ty = x * 1, tx * 1
    y.mul_(w)
    ty.mul_(tw)
    y.add_(x, alpha=2)
    ty.add_(tx, alpha=2)
    y.sigmoid_()
    ty.sigmoid_()
    y.sum().backward()
    ty.sum().backward()
    assert_close(x.grad, tx.grad, 1e-12)
    assert_close(w.grad, tw.grad, 1e-12)


def test_zero_and_fill(device):
    x = gpugrad.ones(2, 2, device=device)
    x.zero_()
    assert x.sum().item() == 0 and x._version == 1
    x.fill_(3)
    assert x.tolist() == [[3.0, 3.0], [3.0, 3.0]]
    x.copy_(gpugrad.tensor([1.0, 2.0], device=device))
    assert x.tolist() == [[1.0, 2.0], [1.0, 2.0]]


class _Cube(Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.save_for_backward(x)
        ctx.scale = scale
        return x ** 3 * scale

    @staticmethod
    def backward(ctx, grad):
        x, = ctx.saved_tensors
        assert ctx.needs_input_grad == (True, False)
        return grad * 3 * x * x * ctx.scale, None


def test_user_defined_function(rng, device):
    x, tx = make_pair(rng, (3, 2), "float64", device)
    y = _Cube.apply(x, 2.0)
    assert y.grad_fn.name() == "_CubeBackward"
    y.sum().backward()
    assert_close(x.grad, 6 * tx.detach() ** 2, 1e-12)
    x.grad = None
    assert gradcheck(lambda t: _Cube.apply(t, 2.0), (x,))
    assert gradgradcheck(lambda t: _Cube.apply(t, 2.0), (x,))


def test_gradcheck_catches_a_wrong_gradient(rng):
    class WrongExp(Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.exp()

        @staticmethod
        def backward(ctx, grad):
            x, = ctx.saved_tensors
            return grad * x           # wrong on purpose
    x, _ = make_pair(rng, (3,), "float64", "cpu")
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        gradcheck(WrongExp.apply, (x,))
    assert gradcheck(WrongExp.apply, (x,), raise_exception=False) is False


def test_backward_with_inputs_accumulates_only_there():
    a = gpugrad.ones(2, requires_grad=True)
    b = gpugrad.ones(2, requires_grad=True)
    (a * b * 3).sum().backward(inputs=[a])
    assert a.grad.tolist() == [3.0, 3.0] and b.grad is None


def test_create_graph_backward_gives_differentiable_grad():
    x = gpugrad.tensor([2.0], dtype=gpugrad.float64, requires_grad=True)
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad and g.tolist() == [12.0]
    g2, = gpugrad.autograd.grad(g.sum(), x)
    assert g2.tolist() == [12.0]


def test_leaf_gradients_never_alias(device):
    """Add hands one array to both inputs; the caller's gradient is its own."""
    a = gpugrad.ones(3, device=device, requires_grad=True)
    b = gpugrad.ones(3, device=device, requires_grad=True)
    ((a + b) * 2).sum().backward()
    (a * 5).sum().backward()
    assert a.grad.tolist() == [7.0] * 3 and b.grad.tolist() == [2.0] * 3
    upstream = gpugrad.ones(3, device=device)
    c = gpugrad.ones(3, device=device, requires_grad=True)
    (c + 1).backward(upstream)
    c.grad.zero_()
    assert upstream.tolist() == [1.0] * 3
    h = c * 1
    h.retain_grad()
    (h + 0).backward(upstream)
    c.grad.add_(1)
    assert h.grad.tolist() == [1.0] * 3


def test_a_grad_takes_an_array_no_other_slot_of_the_pass_holds(device):
    """A .grad keeps a gradient's array without a copy only when nothing else of the pass holds it:
    a retained .grad that Add hands on to a leaf, two inputs= that one array reaches."""
    c = gpugrad.ones(3, device=device, requires_grad=True)
    h = c + 0                  # AddBackward hands h's gradient array on to c
    h.retain_grad()
    (h * 2).sum().backward()
    c.grad.add_(1)
    assert h.grad.tolist() == [2.0] * 3 and c.grad.tolist() == [3.0] * 3
    a = gpugrad.ones(3, device=device, requires_grad=True)
    b = gpugrad.ones(3, device=device, requires_grad=True)
    ((a + b) * 3).sum().backward(inputs=[a, b])       # one array reaches both inputs
    a.grad.add_(1)
    assert a.grad.tolist() == [4.0] * 3 and b.grad.tolist() == [3.0] * 3
    ((a + b) * 3).sum().backward(inputs=[b, a])
    b.grad.add_(1)
    assert a.grad.tolist() == [7.0] * 3 and b.grad.tolist() == [7.0] * 3


def test_leaf_hooks_run_on_every_path_as_in_torch():
    """One accumulation path: a leaf's hook changes what backward(), backward(inputs=)
    and autograd.grad all see, as in torch."""
    results = {}
    for lib in (gpugrad, torch):
        x = lib.ones(2, requires_grad=True)
        x.register_hook(lambda g: g * 2)
        (x * 3).sum().backward()
        plain = x.grad.tolist()
        x.grad = None
        (x * 3).sum().backward(inputs=[x])
        only = x.grad.tolist()
        g, = lib.autograd.grad((x * 3).sum(), x)
        results[lib.__name__] = (plain, only, g.tolist())
    assert results["gpugrad"] == results["torch"] == ([6.0, 6.0], [6.0, 6.0], [6.0, 6.0])


def test_grad_mode_decorators_and_inference_mode():
    x = gpugrad.ones(2, requires_grad=True)

    @gpugrad.no_grad
    def doubled(t):
        return t * 2

    @gpugrad.enable_grad
    def tripled(t):
        return t * 3

    assert not doubled(x).requires_grad and doubled.__name__ == "doubled"
    with gpugrad.no_grad():
        assert tripled(x).requires_grad
    with gpugrad.inference_mode():
        y = x * 2
        assert not y.requires_grad and gpugrad.is_inference_mode_enabled()
        with gpugrad.inference_mode(False):
            assert (x * 2).requires_grad
    assert not gpugrad.is_inference_mode_enabled() and (x * 2).requires_grad

    @gpugrad.inference_mode()
    def infer(t):
        return t + 1
    assert not infer(x).requires_grad


def test_next_functions_have_torchs_layout():
    """``grad_fn.next_functions``: one (node, input_nr) pair per input, leaves as
    AccumulateGrad, inputs without grad as (None, 0), ``name()`` as torch's."""
    layouts = []
    for lib in (gpugrad, torch):
        a = lib.ones(2, requires_grad=True)
        b = lib.ones(2)
        y = (a * b + a.exp()).sum()
        node = y.grad_fn
        add = node.next_functions[0][0]
        mul = add.next_functions[0][0]
        layouts.append((node.name(), add.name(), mul.name(),
                        [(f.name().split("::")[-1] if f is not None else None, i) for f, i in mul.next_functions]))
        assert mul.next_functions[0][0].variable is a
    assert layouts[0] == layouts[1]


def test_two_outputs_of_one_node_as_roots_count_its_inputs_once():
    """grad([ga, gb], ...) where ga, gb come out of one node: its children were counted twice, so they never
    ran (None) -- found by the differential fuzzer's second derivatives."""
    for lib in (gpugrad, torch):
        a = lib.tensor(-1.0, dtype=lib.float64, requires_grad=True)
        b = lib.tensor(-1.5, dtype=lib.float64, requires_grad=True)
        ga, gb = lib.autograd.grad(a.clone() * b, [a, b], lib.tensor(0.7, dtype=lib.float64), create_graph=True)
        second = lib.autograd.grad([ga, gb], [a, b], [lib.tensor(0.3, dtype=lib.float64),
                                                      lib.tensor(-0.2, dtype=lib.float64)])
        assert [round(float(s), 12) for s in second] == [-0.14, 0.21]


def test_autograd_names_above_tensor_are_there_on_first_use():
    """gpugrad.autograd imports only what sits below Tensor; its other names load on first use."""
    import gpugrad.autograd as autograd
    for name in autograd.__all__:
        assert getattr(autograd, name) is not None and name in dir(autograd)
    assert autograd.gradcheck is gpugrad.autograd.gradient_check.gradcheck and callable(autograd.gradgradcheck)
    assert autograd.backward is gpugrad.autograd.engine.backward and autograd.functional.jacobian
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        getattr(autograd, "nothing")


def test_a_custom_backward_returns_one_gradient_per_input_as_torch():
    """A backward returning more gradients than forward has inputs was accepted (issue 25): torch's
    RuntimeError, unless the extra ones are None; fewer is an error too."""
    def function(lib, backward):
        return type("Fn", (lib.autograd.Function,), {"forward": staticmethod(lambda ctx, x, k: x * k),
                                                       "backward": staticmethod(backward)})

    for lib in (torch, gpugrad):
        for backward, ok in ((lambda ctx, g: (g * 2, None, g), False), (lambda ctx, g: g * 2, False),
                             (lambda ctx, g: (g * 2, None, None), True), (lambda ctx, g: (g * 2, None), True)):
            x = lib.ones(2, requires_grad=True)
            out = function(lib, backward).apply(x, 2.0).sum()
            if ok:
                out.backward()
                assert x.grad.tolist() == [2.0, 2.0]
            else:
                with pytest.raises(RuntimeError, match=r"returned an incorrect number of gradients \(expected 2, "):
                    out.backward()
