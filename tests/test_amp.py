"""Mixed precision against torch: autocast's casting decisions, its cache,
backward under it, a training loop under it (CPU, bfloat16), and GradScaler's
scale, skip and growth behaviour step by step."""

import sys
import threading

import numpy
import pytest
import torch
import torch.nn.functional as TF
from conftest import needs_torch_cuda

import gpugrad
import gpugrad.nn.functional as F
from gpugrad.amp import autocast_mode


def _name(dtype):
    return str(dtype).replace("torch.", "").replace("gpugrad.", "")


def _ops(lib, functional, x, w, t, y):
    return {
        "matmul": lambda: x @ w.T, "linear": lambda: functional.linear(x, w), "mm": lambda: lib.mm(x, w.T),
        "bmm": lambda: lib.bmm(x[None], w.T[None]), "einsum": lambda: lib.einsum("ij,kj->ik", x, w),
        "addmm": lambda: lib.addmm(lib.zeros(4, 6), x, w.T),
        "cross_entropy": lambda: functional.cross_entropy(x, t), "nll_loss": lambda: functional.nll_loss(x, t),
        "mse_loss": lambda: functional.mse_loss(x, y), "l1_loss": lambda: functional.l1_loss(x, y),
        "smooth_l1_loss": lambda: functional.smooth_l1_loss(x, y), "huber_loss": lambda: functional.huber_loss(x, y),
        "kl_div": lambda: functional.kl_div(x, y, reduction="batchmean"),
        "bce_with_logits": lambda: functional.binary_cross_entropy_with_logits(x, y),
        "prod": lambda: x.prod(),
        "relu": lambda: x.relu(), "tanh": lambda: x.tanh(), "add": lambda: x + y, "max": lambda: x.amax(),
        "dropout": lambda: functional.dropout(x, 0.5, training=False), "cat": lambda: lib.cat([x, y]),
    }


@pytest.mark.parametrize("input_dtype", ["float32", "bfloat16"])
def test_casting_decisions_match_torch_on_the_cpu(rng, input_dtype):
    """Lower-precision ops, float32 ops (the losses, prod) and untouched ops
    give torch's dtypes, inputs of float32 or bfloat16 alike."""
    values = [rng.standard_normal((4, 8)), rng.standard_normal((6, 8)), rng.uniform(0, 1, (4, 8))]
    t = rng.integers(0, 6, 4)
    ours = [gpugrad.tensor(v, dtype=input_dtype if i != 1 else "float32") for i, v in enumerate(values)]
    theirs = [torch.tensor(v, dtype=getattr(torch, input_dtype) if i != 1 else torch.float32)
              for i, v in enumerate(values)]
    with gpugrad.autocast("cpu"):
        got = {k: _name(f().dtype) for k, f in _ops(gpugrad, F, ours[0], ours[1], gpugrad.tensor(t), ours[2]).items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want = {k: _name(f().dtype) for k, f in _ops(torch, TF, theirs[0], theirs[1], torch.tensor(t),
                                                     theirs[2]).items()}
    assert got == want


def test_float32_list_follows_torchs_cuda_list():
    """softmax, log_softmax, logsumexp, layer_norm, normalize, sum, cumsum, norm
    and exp/log/pow run in float32 under autocast, on either device type, as
    in torch's CUDA list (torch's CPU list leaves these in bfloat16)."""
    x = gpugrad.randn(4, 8).bfloat16()
    with gpugrad.autocast("cpu"):
        for name, run in [("softmax", lambda: x.softmax(1)), ("log_softmax", lambda: F.log_softmax(x, 1)),
                          ("logsumexp", lambda: x.logsumexp(1)), ("layer_norm", lambda: F.layer_norm(x, (8,))),
                          ("normalize", lambda: F.normalize(x)), ("sum", lambda: x.sum()),
                          ("cumsum", lambda: x.cumsum(1)), ("norm", lambda: x.norm()), ("exp", lambda: x.exp()),
                          ("log", lambda: x.abs().log()), ("pow", lambda: x ** 2)]:
            assert run().dtype == gpugrad.float32, name
        assert x.relu().dtype == gpugrad.bfloat16 and x.mean().dtype == gpugrad.bfloat16


def test_what_autocast_leaves_alone():
    x64 = gpugrad.randn(3, 3, dtype=gpugrad.float64)
    i = gpugrad.ones(3, 3, dtype=gpugrad.int64)
    x = gpugrad.randn(3, 3)
    with gpugrad.autocast("cpu"):
        assert (x64 @ x64).dtype == gpugrad.float64                # float64 is never cast
        assert (i + i).dtype == gpugrad.int64
        with gpugrad.autocast("cpu", enabled=False):
            assert (x @ x).dtype == gpugrad.float32 and not gpugrad.is_autocast_enabled("cpu")
        assert (x @ x).dtype == gpugrad.bfloat16
        with gpugrad.autocast("cpu", dtype=gpugrad.float16):
            assert (x @ x).dtype == gpugrad.float16
        assert gpugrad.get_autocast_dtype("cpu") == gpugrad.bfloat16
    with gpugrad.autocast("cuda"):                                  # a CUDA region leaves CPU tensors alone
        assert (x @ x).dtype == gpugrad.float32
    assert (x @ x).dtype == gpugrad.float32 and not gpugrad.is_autocast_enabled("cpu")

    @gpugrad.autocast("cpu")
    def product(a):
        return a @ a
    assert product(x).dtype == gpugrad.bfloat16
    with pytest.raises(RuntimeError, match="unsupported autocast device_type 'tpu'"):
        gpugrad.autocast("tpu")
    with pytest.warns(UserWarning, match="Disabling autocast"):
        region = gpugrad.autocast("cpu", dtype=gpugrad.float64)
    with region:
        assert (x @ x).dtype == gpugrad.float32


def test_weights_are_cast_once_per_region():
    w = gpugrad.nn.Parameter(gpugrad.randn(5, 4))
    x = gpugrad.randn(3, 4)
    with gpugrad.autocast("cpu"):
        a, b = F.linear(x, w), F.linear(x * 2, w)
        cast_a = a.grad_fn.next_functions[1][0]
        assert cast_a is b.grad_fn.next_functions[1][0]           # one cast node for both uses
        assert len(autocast_mode._state.cache) == 1
        with gpugrad.no_grad():
            w.add_(1)                                              # a new version: cast again
        c = F.linear(x, w)
        assert c.grad_fn.next_functions[1][0] is not cast_a
    assert not autocast_mode._state.cache                          # cleared with the outermost region
    (a.sum() + b.sum()).backward()
    assert w.grad.dtype == gpugrad.float32



def test_the_cast_cache_in_nested_regions_without_caching_and_after_in_place_updates(rng):
    """torch's cache (a leaf that requires grad, cast once per outermost region):
    a nested region shares it and its exit keeps it; cache_enabled=False neither
    reads nor fills it; enabled=False casts nothing.  A weight changed in place
    inside the region is cast again (its version), where torch's cache, keyed on
    the tensor alone, would hand back the cast of the old values: against torch's
    values computed without its cache."""
    w64, x64 = rng.standard_normal((5, 4)), rng.standard_normal((3, 4))
    w, x = gpugrad.nn.Parameter(gpugrad.tensor(w64, dtype=gpugrad.float32)), gpugrad.tensor(x64, dtype=gpugrad.float32)
    tw, tx = torch.nn.Parameter(torch.tensor(w64, dtype=torch.float32)), torch.tensor(x64, dtype=torch.float32)

    def cast_node(out):
        return out.grad_fn.next_functions[1][0]

    with gpugrad.autocast("cpu"), torch.autocast("cpu", dtype=torch.bfloat16):
        a, ta = F.linear(x, w), TF.linear(tx, tw)
        with gpugrad.autocast("cpu"), torch.autocast("cpu", dtype=torch.bfloat16):
            b, tb = F.linear(x, w), TF.linear(tx, tw)
            assert cast_node(b) is cast_node(a)                   # the outer region's cast
        assert len(autocast_mode._state.cache) == 1               # kept at the inner region's exit
        with gpugrad.autocast("cpu", cache_enabled=False), torch.autocast("cpu", dtype=torch.bfloat16,
                                                                           cache_enabled=False):
            c, tc = F.linear(x * 1, w), TF.linear(tx * 1, tw)
            assert cast_node(c) is not cast_node(a)              # not read
            assert len(autocast_mode._state.cache) == 1         # not filled
        with gpugrad.autocast("cpu", enabled=False), torch.autocast("cpu", enabled=False):
            d, td = F.linear(x, w), TF.linear(tx, tw)
        with gpugrad.no_grad(), torch.no_grad():
            w.mul_(-3)
            tw.mul_(-3)
        e = F.linear(x, w)
        with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
            te = TF.linear(tx, tw)                                 # torch's values for the new weight
        assert cast_node(e) is not cast_node(a)
    assert not autocast_mode._state.cache                          # cleared with the outermost region
    for ours, theirs in ((a, ta), (b, tb), (c, tc), (d, td), (e, te)):     # a stale cast would be -1/3 of e
        assert _name(ours.dtype) == _name(theirs.dtype)
        tol = 1e-6 if ours.dtype == gpugrad.float32 else 1e-2
        numpy.testing.assert_allclose(ours.detach().float().numpy(), theirs.detach().float().numpy(), rtol=tol,
                                      atol=tol)
    (a.float().sum() + e.float().sum()).backward()
    (ta.float().sum() + te.float().sum()).backward()
    assert w.grad.dtype == gpugrad.float32
    numpy.testing.assert_allclose(w.grad.numpy(), tw.grad.numpy(), rtol=1e-2)

def _models(seed=0):
    torch.manual_seed(seed)
    theirs = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.GELU(), torch.nn.LayerNorm(32),
                                 torch.nn.Linear(32, 4))
    ours = gpugrad.nn.Sequential(gpugrad.nn.Linear(10, 32), gpugrad.nn.GELU(), gpugrad.nn.LayerNorm(32),
                                 gpugrad.nn.Linear(32, 4))
    ours.load_state_dict({k: gpugrad.tensor(v.detach().numpy()) for k, v in theirs.state_dict().items()})
    return ours, theirs


def _batches(seed, steps):
    rng = numpy.random.default_rng(seed)
    centers = rng.standard_normal((4, 10)) * 2
    for _ in range(steps):
        t = rng.integers(0, 4, 32)
        yield (centers[t] + rng.standard_normal((32, 10))).astype(numpy.float32), t


def _train(lib, model, steps, amp, seed=3):
    functional = gpugrad.nn.functional if lib is gpugrad else torch.nn.functional
    optimizer = lib.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for x, t in _batches(seed, steps):
        x, t = lib.tensor(x), lib.tensor(t)
        with lib.autocast("cpu", dtype=lib.bfloat16, enabled=amp):
            loss = functional.cross_entropy(model(x), t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return numpy.array(losses)


def test_training_under_autocast_matches_torchs_and_float32():
    """The same model and batches, 60 AdamW steps under bfloat16 autocast:
    gpugrad's losses follow torch's step by step (bfloat16 rounding apart),
    and end where float32 training ends."""
    ours, theirs = _models()
    ours_losses = _train(gpugrad, ours, 60, amp=True)
    theirs_losses = _train(torch, theirs, 60, amp=True)
    assert numpy.abs(ours_losses - theirs_losses).max() < 0.05 * theirs_losses.max()
    full, _ = _models()
    full_losses = _train(gpugrad, full, 60, amp=False)
    assert abs(ours_losses[-10:].mean() - full_losses[-10:].mean()) < 0.05
    assert ours_losses[-10:].mean() < 0.5 * ours_losses[:5].mean()


# -- GradScaler -------------------------------------------------------------------------------------

def _scaler_run(lib, bad_steps, steps=9):
    torch.manual_seed(0)
    values = numpy.random.default_rng(1).standard_normal((6, 3)).astype(numpy.float32)
    p = lib.nn.Parameter(lib.tensor(values))
    optimizer = lib.optim.Adam([p], lr=0.1)
    scaler = lib.amp.GradScaler("cpu", init_scale=8.0, growth_factor=2.0, backoff_factor=0.25, growth_interval=3)
    trace = []
    for step in range(steps):
        optimizer.zero_grad()
        loss = (p * p).sum() * (float("inf") if step in bad_steps else 1.0)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        trace.append((scaler.get_scale(), p.detach().numpy().copy(), scaler.state_dict()["_growth_tracker"]))
    return trace, scaler


def test_grad_scaler_matches_torch_step_by_step():
    """Skipped steps on inf, backoff, growth every growth_interval clean steps:
    the same scales and parameters as torch's GradScaler."""
    ours, scaler = _scaler_run(gpugrad, bad_steps={1, 5})
    theirs, tscaler = _scaler_run(torch, bad_steps={1, 5})
    for (scale, params, tracker), (tscale, tparams, ttracker) in zip(ours, theirs):
        assert scale == tscale and tracker == ttracker
        numpy.testing.assert_allclose(params, tparams, rtol=1e-6, atol=1e-7)
    assert [s for s, _, _ in ours] != [8.0] * len(ours)            # it did back off and grow
    assert scaler.state_dict() == tscaler.state_dict()
    restored = gpugrad.amp.GradScaler("cpu")
    restored.load_state_dict(scaler.state_dict())
    assert restored.get_scale() == scaler.get_scale()


@pytest.mark.cuda
@pytest.mark.parametrize("name,options", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                          ("Adam", {"lr": 0.1, "amsgrad": True}), ("AdamW", {"lr": 0.1}),
                                          ("RMSprop", {"lr": 0.05, "momentum": 0.5, "centered": True}),
                                          ("Adagrad", {"lr": 0.1, "lr_decay": 0.1})], ids=str)
def test_grad_scaler_on_the_gpu_skips_and_steps_as_torch(name, options):
    """GradScaler on the GPU with the multi-tensor optimizers (one launch to
    unscale and check, the step reading found_inf on the device, the step
    counters on the device): float64 parameters of two shapes, inf at steps 0
    and 3, against torch's GradScaler on the CPU: the same parameters, state,
    step counts and scales.  (A skipped first step leaves the initial state,
    where torch's loop has made none yet; for SGD a zero momentum buffer, where
    torch's fused SGD has an uninitialised one: the same next step without
    dampening.)"""
    values = numpy.random.default_rng(2).standard_normal((2, 5, 3))
    traces = []
    for lib, device in ((gpugrad, "cuda"), (torch, "cpu")):
        params = [lib.nn.Parameter(lib.tensor(values[0], dtype=lib.float64, device=device)),
                  lib.nn.Parameter(lib.tensor(values[1, 0], dtype=lib.float64, device=device))]
        optimizer = getattr(lib.optim, name)(params, **options)
        scaler = lib.amp.GradScaler(device, init_scale=16.0, growth_interval=2)
        trace = []
        for step in range(6):
            optimizer.zero_grad()
            loss = (params[0] * params[0]).sum() + params[1].sin().sum() * (float("inf") if step in (0, 3) else 1.0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            state = optimizer.state[params[0]]
            trace.append((scaler.get_scale(), [p.detach().cpu().numpy().copy() for p in params],
                          float(state["step"]) if "step" in state else None,
                          {k: v.detach().cpu().numpy().copy() for k, v in state.items() if k != "step"}))
        traces.append(trace)
    for ours, theirs in zip(*traces):
        assert ours[0] == theirs[0]
        for a, b in zip(ours[1], theirs[1]):
            numpy.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        if theirs[2] is None and not theirs[3]:     # torch made no state yet; ours is the initial one
            assert ours[2] in (None, 0.0) and not any(v.any() for v in ours[3].values())
            continue
        assert ours[2] == theirs[2]
        assert sorted(ours[3]) == sorted(theirs[3])
        for key in ours[3]:
            numpy.testing.assert_allclose(ours[3][key], theirs[3][key], rtol=1e-10, atol=1e-12)


def test_grad_scaler_unscale_and_errors():
    p = gpugrad.nn.Parameter(gpugrad.ones(3))
    optimizer = gpugrad.optim.SGD([p], lr=0.1)
    scaler = gpugrad.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale((p * 3).sum()).backward()
    assert p.grad.tolist() == [12.0] * 3
    scaler.unscale_(optimizer)
    assert p.grad.tolist() == [3.0] * 3                              # e.g. for clip_grad_norm_
    with pytest.raises(RuntimeError, match="unscale_\\(\\) has already been called"):
        scaler.unscale_(optimizer)
    scaler.step(optimizer)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called since the last update"):
        scaler.step(optimizer)
    with pytest.raises(RuntimeError, match="unscale_\\(\\) is being called after step"):
        scaler.unscale_(optimizer)
    scaler.update()
    assert p.tolist() == pytest.approx([0.7] * 3)
    with pytest.raises(RuntimeError, match="Closure use is not currently supported"):
        scaler.step(optimizer, closure=lambda: None)
    half = gpugrad.nn.Parameter(gpugrad.ones(2, dtype=gpugrad.float16))
    half_opt = gpugrad.optim.SGD([half], lr=0.1)
    scaler.scale(half.float().sum()).backward()
    with pytest.raises(ValueError, match="Attempting to unscale FP16 gradients"):
        scaler.unscale_(half_opt)
    off = gpugrad.amp.GradScaler("cpu", enabled=False)
    loss = (p * 1).sum()
    assert off.scale(loss) is loss and off.get_scale() == 1.0 and off.state_dict() == {}
    if not gpugrad.cuda.is_available():
        with pytest.warns(UserWarning, match="CUDA is not available"):
            assert not gpugrad.amp.GradScaler().is_enabled()


@pytest.mark.cuda
@needs_torch_cuda
def test_float16_training_with_grad_scaler_matches_torch_cuda():
    """CUDA: float16 autocast with a GradScaler, gpugrad and torch side by side."""
    ours, theirs = _models()
    ours, theirs = ours.cuda(), theirs.cuda()
    losses = {}
    for lib, model in ((gpugrad, ours), (torch, theirs)):
        functional = gpugrad.nn.functional if lib is gpugrad else torch.nn.functional
        optimizer = lib.optim.AdamW(model.parameters(), lr=3e-3)
        scaler = lib.amp.GradScaler("cuda")
        trace = []
        for x, t in _batches(3, 40):
            x, t = lib.tensor(x, device="cuda"), lib.tensor(t, device="cuda")
            with lib.autocast("cuda"):
                loss = functional.cross_entropy(model(x), t)
            optimizer.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            trace.append(loss.item())
        losses[lib.__name__] = numpy.array(trace)
    assert numpy.abs(losses["gpugrad"] - losses["torch"]).max() < 0.05 * losses["torch"].max()


def _autocast_ops():
    """{function: kind} of every op function of gpugrad that carries an autocast kind."""
    import importlib
    import pkgutil
    found = {}
    for info in pkgutil.walk_packages(gpugrad.__path__, "gpugrad."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if hasattr(value, "autocast") and getattr(value, "__module__", None) == info.name:
                found[value] = value.autocast
    return found


def test_every_op_in_autocasts_lists_carries_its_kind_and_no_other_does():
    """The decorator on each function of autocast's lists (nll_loss lost its float32 kind to a
    class it slipped onto), and nothing else decorated: a list and the code cannot drift."""
    def resolve(name):
        value = gpugrad
        for part in name.split("."):
            value = getattr(value, part)
        return value

    listed = {}
    for names, kind in ((autocast_mode.LOWER_PRECISION_OPS, "lower precision"),
                        (autocast_mode.FLOAT32_OPS, "float32")):
        for name in names:
            op = resolve(name)
            assert getattr(op, "autocast", None) == kind, f"gpugrad.{name} does not carry autocast kind {kind}"
            # (the namespace's functions take axis= and out= in a wrapper: the function of its module counts)
            listed[vars(sys.modules[op.__module__])[op.__name__]] = kind
    assert "nn.functional.nll_loss" in autocast_mode.FLOAT32_OPS
    assert _autocast_ops() == listed
    with pytest.raises(TypeError, match="not <class"):
        autocast_mode.float32(type("Options", (), {}))


def _per_thread(library):
    """Two threads run at once, each inside its own grad mode and autocast region, meeting at
    barriers between ops: what each one sees (its mode, its results' dtype and requires_grad)."""
    barrier = threading.Barrier(2, timeout=30)
    seen = {}
    x = library.ones(2, 3, requires_grad=True)
    w = library.ones(3, 4)

    def worker(name, grad, cast):
        notes = []
        with library.set_grad_enabled(grad), library.autocast("cpu", dtype=library.bfloat16, enabled=cast):
            for _ in range(3):
                barrier.wait()                    # the other thread is inside its region too
                y = x @ w
                notes.append((library.is_grad_enabled(), library.is_autocast_enabled("cpu"),
                              str(y.dtype).split(".")[-1], y.requires_grad))
        barrier.wait()
        notes.append((library.is_grad_enabled(), library.is_autocast_enabled("cpu")))
        seen[name] = notes

    threads = [threading.Thread(target=worker, args=("a", False, True)),
               threading.Thread(target=worker, args=("b", True, False))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return seen


def test_grad_mode_and_autocast_are_per_thread():
    ours = _per_thread(gpugrad)
    assert ours == _per_thread(torch)
    assert ours["a"][0] == (False, True, "bfloat16", False) and ours["b"][0] == (True, False, "float32", True)
    assert ours["a"][-1] == ours["b"][-1] == (True, False)
    assert gpugrad.is_grad_enabled() and not gpugrad.is_autocast_enabled("cpu")


def test_nll_loss_runs_in_float32_under_autocast_for_every_reduction(rng):
    """nll_loss's decorator had slipped onto another definition (issue 25): under autocast its loss was
    bfloat16 with reduction='none'; torch's is float32 for every reduction."""
    scores = rng.standard_normal((3, 4))
    for lib in (gpugrad, torch):
        x = lib.tensor(scores, dtype=lib.bfloat16).log_softmax(1)
        for reduction in ("none", "mean", "sum"):
            with lib.autocast("cpu", dtype=lib.bfloat16):
                loss = lib.nn.functional.nll_loss(x, lib.tensor([0, 3, 1]), reduction=reduction)
            assert str(loss.dtype).endswith("float32"), (lib.__name__, reduction)


def test_the_count_of_threads_in_a_region_returns_to_zero(rng):
    """An op's autocast check reads a global count of the threads in an active region before the
    thread-local state: nested regions, a disabled region inside, a backward inside (the engine
    suspends autocast) and an exception leave the count as they found it, and the ops inside and
    after cast as torch's do."""
    data = rng.standard_normal((3, 4))
    x = gpugrad.tensor(data, dtype=gpugrad.float32, requires_grad=True)
    tx = torch.tensor(data, dtype=torch.float32, requires_grad=True)
    assert autocast_mode._active_threads == 0
    seen = []
    for lib, t in ((gpugrad, x), (torch, tx)):
        kinds = []
        with lib.autocast("cpu"):
            kinds.append(_name((t @ t.T).dtype))
            with lib.autocast("cpu", enabled=False):
                kinds.append(_name((t @ t.T).dtype))
                if lib is gpugrad:
                    assert autocast_mode._active_threads == 0
            loss = (t @ t.T).float().sum()
            loss.backward()                       # no cast in the backward: x.grad is float32
            kinds.append(_name(t.grad.dtype))
            try:
                with lib.autocast("cpu"):
                    raise KeyError("inside")
            except KeyError:
                pass
            kinds.append(_name((t @ t.T).dtype))
            if lib is gpugrad:
                assert autocast_mode._active_threads == 1
        kinds.append(_name((t @ t.T).dtype))
        seen.append(kinds)
    assert seen[0] == seen[1] == ["bfloat16", "float32", "float32", "bfloat16", "float32"]
    assert autocast_mode._active_threads == 0
    numpy.testing.assert_allclose(x.grad.numpy(), tx.grad.numpy(), rtol=2e-2, atol=2e-2)
