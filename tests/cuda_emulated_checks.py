"""The GPU path's checks, run on the CPU by the emulator (tests/emulator.py):
gpugrad's public API on a simulated 'cuda' device, the real kernels/*.cu
compiled as host code, against torch in float64.

    python tests/cuda_emulated_checks.py        # (the emulator's fakecupy installed first)

Prints one JSON object: check name -> null (passed) or the failure message,
plus "launches": {op: (kernel launches, other CuPy calls)} for one
forward+backward of each fused op.  tests/test_cuda_emulated.py runs it in a
subprocess (the fake CuPy must be installed before anything imports cupy).
"""

import json
import math
import pathlib
import sys
import traceback

import emulator

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(emulator.CUEMU))
sys.path.insert(0, str(HERE.parent))

import fakecupy  # noqa: E402

cp = fakecupy.install()

import numpy  # noqa: E402
import torch  # noqa: E402

import gpugrad  # noqa: E402
import gpugrad.nn.functional as F  # noqa: E402

CHECKS = {}


def check(function):
    CHECKS[function.__name__] = function
    return function


def close(ours, theirs, tol, what):
    a = numpy.asarray(ours.detach().cpu().array if isinstance(ours, gpugrad.Tensor) else ours, dtype=numpy.float64)
    b = numpy.asarray(theirs.detach().double().numpy() if isinstance(theirs, torch.Tensor) else theirs,
                      dtype=numpy.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert numpy.array_equal(numpy.isnan(a), numpy.isnan(b)), f"{what}: nan at other places: {a} vs {b}"
    finite = numpy.isfinite(b)
    assert numpy.array_equal(a[~finite & ~numpy.isnan(b)], b[~finite & ~numpy.isnan(b)]), f"{what}: infinities differ"
    scale = max(numpy.abs(b[finite]).max(initial=0.0), 1.0)
    err = numpy.abs(a[finite] - b[finite]).max(initial=0.0)
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol:g} (x {scale:.3g})\n{a}\n{b}"


def pair(values, dtype="float64"):
    values = numpy.asarray(values, dtype=dtype)
    return (gpugrad.tensor(values, device="cuda", requires_grad=True),
            torch.tensor(values.astype("float64"), requires_grad=True))


@check
def backward_runs_on_the_gpu():
    """Bug 1: backend.xp_for took a CuPy array's .data (its memory pointer)."""
    rng = numpy.random.default_rng(0)
    x, tx = pair(rng.standard_normal((5, 9)))
    assert x.xp is cp, "Tensor.xp of a CUDA tensor is not cupy"
    gpugrad.logsumexp(x, 1).sum().backward()
    torch.logsumexp(tx, 1).sum().backward()
    close(x.grad, tx.grad, 1e-12, "logsumexp grad")
    assert x.grad.is_cuda


@check
def float64_double_backward():
    """Bug 2: float64 double backward took the kernel path with a Python 0.0."""
    rng = numpy.random.default_rng(1)
    values = rng.standard_normal((4, 6))
    target = numpy.array([0, 5, 2, 3])
    for name, ours, theirs in (
            ("logsumexp", lambda a: gpugrad.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1)),
            ("softmax", lambda a: gpugrad.softmax(a, 1)[:, :3], lambda a: torch.softmax(a, 1)[:, :3]),
            ("cross_entropy", lambda a: F.cross_entropy(a, gpugrad.tensor(target, device="cuda"), label_smoothing=0.1),
             lambda a: torch.nn.functional.cross_entropy(a, torch.tensor(target), label_smoothing=0.1))):
        x, tx = pair(values)
        g, = gpugrad.autograd.grad(ours(x).sum(), x, create_graph=True)
        tg, = torch.autograd.grad(theirs(tx).sum(), tx, create_graph=True)
        close(g, tg, 1e-12, f"{name} first derivative")
        h, = gpugrad.autograd.grad((g * g).sum(), x)
        th, = torch.autograd.grad((tg * tg).sum(), tx)
        close(h, th, 1e-10, f"{name} second derivative")


SPECIAL_ROWS = {"nan": [[1.0, math.nan, 2.0]], "only_nan": [[math.nan]], "posinf": [[math.inf, 1.0, 0.0]],
                "neginf_row": [[-math.inf, -math.inf, -math.inf]], "neginf_entry": [[-math.inf, 1.0, 2.0]],
                "nan_posinf": [[math.nan, math.inf, 0.0]]}


@check
def nan_and_infinities_as_torch():
    """Bugs 3 and 4: nan was dropped; +inf rows differed from torch."""
    for dtype in ("float32", "float16", "float64"):
        for name, rows in SPECIAL_ROWS.items():
            for ours, theirs in ((lambda a: gpugrad.logsumexp(a, 1), lambda a: torch.logsumexp(a, 1)),
                                 (lambda a: gpugrad.softmax(a, 1), lambda a: torch.softmax(a, 1)),
                                 (lambda a: gpugrad.log_softmax(a, 1), lambda a: torch.log_softmax(a, 1))):
                x, tx = pair(rows, dtype)
                close(ours(x), theirs(tx), 1e-3, f"{name} {dtype}")
            for target in range(len(rows[0])):
                for smoothing in (0.0, 0.1):
                    x, tx = pair(rows, dtype)
                    loss = F.cross_entropy(x, gpugrad.tensor([target], device="cuda"), label_smoothing=smoothing)
                    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor([target]), label_smoothing=smoothing)
                    close(loss, tloss, 1e-3, f"cross_entropy {name} target {target} {dtype}")
                    loss.backward()
                    tloss.backward()
                    close(x.grad, tx.grad, 1e-3, f"cross_entropy grad {name} target {target} {dtype}")


@check
def strided_class_dim():
    """Bug 5: cross-entropy on a class dim without unit stride (x.T, (N, C, d))."""
    rng = numpy.random.default_rng(2)
    base, tbase = pair(rng.standard_normal((7, 5)))
    target = numpy.array([1, 0, 6, 3, 2])
    loss = F.cross_entropy(base.T, gpugrad.tensor(target, device="cuda"), label_smoothing=0.05)
    tloss = torch.nn.functional.cross_entropy(tbase.T, torch.tensor(target), label_smoothing=0.05)
    close(loss, tloss, 1e-12, "x.T loss")
    loss.backward()
    tloss.backward()
    close(base.grad, tbase.grad, 1e-12, "x.T grad")
    x, tx = pair(rng.standard_normal((3, 4, 5, 2)))
    t = rng.integers(0, 4, (3, 5, 2))
    t[0, 0, 0] = -100
    for reduction in ("none", "mean"):
        loss = F.cross_entropy(x, gpugrad.tensor(t, device="cuda"), reduction=reduction)
        tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(t), reduction=reduction)
        close(loss, tloss, 1e-12, f"(N, C, d, d) loss {reduction}")
        upstream = rng.standard_normal(tloss.shape)
        loss.backward(gpugrad.tensor(upstream, device="cuda"))
        tloss.backward(torch.tensor(upstream))
        close(x.grad, tx.grad, 1e-12, f"(N, C, d, d) grad {reduction}")
        x.grad = tx.grad = None


def _count_host_syncs(run):
    """Calls that wait for the device: Device/stream synchronize, .get(), asnumpy."""
    counts = {"sync": 0}
    originals = (fakecupy.Device.synchronize, fakecupy.ndarray.get, fakecupy.asnumpy)

    def counted(function):
        def wrapper(*args, **kwargs):
            counts["sync"] += 1
            return function(*args, **kwargs)
        return wrapper
    fakecupy.Device.synchronize = counted(originals[0])
    fakecupy.ndarray.get = counted(originals[1])
    fakecupy.asnumpy = counted(originals[2])
    cp.asnumpy = fakecupy.asnumpy
    try:
        run()
    finally:
        fakecupy.Device.synchronize, fakecupy.ndarray.get, fakecupy.asnumpy = originals
        cp.asnumpy = fakecupy.asnumpy
    return counts["sync"]


@check
def no_host_sync_in_a_training_step_and_errors_still_raised():
    """Bug 6: the error word was read with a blocking copy after every backward."""
    rng = numpy.random.default_rng(3)
    model = gpugrad.nn.Linear(6, 5).cuda()
    opt = gpugrad.optim.SGD(model.parameters(), lr=0.1)
    x = gpugrad.tensor(rng.standard_normal((8, 6)), dtype=gpugrad.float32, device="cuda")
    t = gpugrad.tensor(rng.integers(0, 5, 8), device="cuda")

    def step():
        loss = F.cross_entropy(model(x), t, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()
    syncs = _count_host_syncs(step)
    assert syncs == 0, f"{syncs} host syncs in a training step"
    bad = gpugrad.tensor([0, 1, 2, 3, 9, 0, 1, 2], device="cuda")
    loss = F.cross_entropy(model(x), bad)
    try:
        loss.item()
    except IndexError as error:
        assert "Target 9" in str(error), error
    else:
        raise AssertionError("no IndexError for target 9 at .item()")
    assert math.isfinite(F.cross_entropy(model(x), t).item()), "the process does not go on"


@check
def a_bad_target_whose_backward_launches_nothing_raises_at_the_next_sync():
    """cross_entropy writes its gradient in the forward, so loss.backward() launches nothing and waits for
    nothing: the forward's error word is polled there, and a kernel the device has not finished yet (here: the
    emulator runs queued launches only at a sync) is raised at the next synchronising call instead, naming the
    target; the gradient is not handed out as a good one, and the next call works."""
    rng = numpy.random.default_rng(5)
    values = rng.standard_normal((4, 7)).astype("float32")
    x = gpugrad.tensor(values, device="cuda", requires_grad=True)
    bad = gpugrad.tensor([1, 7, 2, 3], device="cuda")
    loss = F.cross_entropy(x, bad)
    syncs = {}

    def backward():
        try:
            loss.backward()
        except IndexError as error:      # a finished forward kernel: raised at the backward's poll
            syncs["raised"] = error
    syncs["count"] = _count_host_syncs(backward)
    assert syncs["count"] == 0, f"{syncs['count']} host syncs in backward()"
    if "raised" not in syncs:
        try:
            x.grad.cpu()
        except IndexError as error:
            assert "Target 7" in str(error), error
        else:
            raise AssertionError("no IndexError for target 7 at the sync after backward()")
    else:
        assert "Target 7" in str(syncs["raised"]), syncs["raised"]
    x2, t2 = pair(values, "float32")
    good = [1, 0, 2, 3]
    ours = F.cross_entropy(x2, gpugrad.tensor(good, device="cuda"))
    ours.backward()
    theirs = torch.nn.functional.cross_entropy(t2, torch.tensor(good))
    theirs.backward()
    close(ours, theirs, 1e-6, "loss after the error")
    close(x2.grad, t2.grad, 1e-6, "gradient after the error")


@check
def debug_mode_raises_at_the_launch():
    """GPUGRAD_DEBUG=1: a bad class index raises at the op that met it (cross_entropy, nll_loss, embedding)."""
    import os
    os.environ["GPUGRAD_DEBUG"] = "1"
    try:
        x = gpugrad.tensor(numpy.zeros((3, 4)), device="cuda")
        for name, run in (("cross_entropy", lambda: F.cross_entropy(x, gpugrad.tensor([0, 4, 1], device="cuda"))),
                          ("nll_loss", lambda: F.nll_loss(x, gpugrad.tensor([0, -2, 1], device="cuda"))),
                          ("embedding", lambda: F.embedding(gpugrad.tensor([1, 3], device="cuda"), x))):
            try:
                run()
            except IndexError as error:
                assert ("4" in str(error) or "-2" in str(error) or "3" in str(error)), error
            else:
                raise AssertionError(f"{name}: no IndexError at the launch under GPUGRAD_DEBUG=1")
    finally:
        del os.environ["GPUGRAD_DEBUG"]


def _count_launches(run):
    """(kernel launches, other CuPy calls that would each launch work on a GPU)."""
    calls = {"other": 0}
    original_call = fakecupy._call

    def counted_call(fn, name, args, kwargs, host_ok=False):
        calls["other"] += 1
        return original_call(fn, name, args, kwargs, host_ok)
    fakecupy._call = counted_call
    before = fakecupy.STATS["launches"]
    try:
        run()
    finally:
        fakecupy._call = original_call
    return fakecupy.STATS["launches"] - before, calls["other"]


LAUNCHES = {}


@check
def launches_per_call():
    """At most 2 kernel launches per cross-entropy forward+backward, 1 for logsumexp(x, 1).sum()."""
    rng = numpy.random.default_rng(4)
    x = gpugrad.tensor(rng.standard_normal((64, 1000)), dtype=gpugrad.float32, device="cuda", requires_grad=True)
    t = gpugrad.tensor(rng.integers(0, 1000, 64), device="cuda")
    w = gpugrad.tensor(rng.uniform(0.5, 2, 1000), dtype=gpugrad.float32, device="cuda")
    cases = {
        "cross_entropy mean, loss.backward()": lambda: F.cross_entropy(x, t).backward(),
        "cross_entropy sum, weights, smoothing": lambda: F.cross_entropy(x, t, w, reduction="sum",
                                                                         label_smoothing=0.1).backward(),
        "cross_entropy mean, (2 * loss).backward()": lambda: (2 * F.cross_entropy(x, t)).backward(),
        "logsumexp(x, 1).sum().backward()": lambda: gpugrad.logsumexp(x, 1).sum().backward(),
        "softmax(x, 1) backward": lambda: gpugrad.softmax(x, 1).backward(gpugrad.ones_like(x)),
    }
    for name, run in cases.items():
        run()                          # warm: weights converted and summed once, kernels built
        x.grad = None
        LAUNCHES[name] = _count_launches(run)
        x.grad = None
    wide = gpugrad.tensor(rng.standard_normal((6, 4100)), dtype=gpugrad.float32, device="cuda", requires_grad=True)
    wide_t = gpugrad.tensor([5, 4099, -100, 0, 17, 3], device="cuda")
    F.cross_entropy(wide, wide_t).backward()
    wide.grad = None
    LAUNCHES["cross_entropy mean, 4100 classes, loss.backward()"] = _count_launches(
        lambda: F.cross_entropy(wide, wide_t).backward())
    for name, (kernels, _) in LAUNCHES.items():
        if name.startswith("cross_entropy"):
            assert kernels <= 2, f"{name}: {kernels} kernel launches"
    assert LAUNCHES["cross_entropy sum, weights, smoothing"][0] == 1
    assert LAUNCHES["logsumexp(x, 1).sum().backward()"][0] == 1      # the gradient written by the forward
    # the scale's value is known on the host: the forward's gradient, written for it, with no backward launch
    assert LAUNCHES["cross_entropy mean, (2 * loss).backward()"][0] == 1
    assert LAUNCHES["cross_entropy mean, 4100 classes, loss.backward()"][0] == 1


@check
def gradient_written_by_the_forward():
    """The forward's dx (loss.backward() on the scalar loss) equals torch's gradient, every option."""
    rng = numpy.random.default_rng(5)
    for classes in (7, 4100):
        values = rng.standard_normal((9, classes)) * 3
        target = rng.integers(0, classes, 9)
        target[::4] = 2 if classes > 2 else -100
        weight = rng.uniform(0.3, 2.0, classes)
        for reduction in ("mean", "sum"):
            for options in ({}, {"label_smoothing": 0.2}, {"ignore_index": 2, "weight": True}):
                kwargs, tkwargs = dict(options), dict(options)
                if options.get("weight"):
                    kwargs["weight"] = gpugrad.tensor(weight, device="cuda")
                    tkwargs["weight"] = torch.tensor(weight)
                x, tx = pair(values)
                loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), reduction=reduction, **kwargs)
                tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
                close(loss, tloss, 1e-12, f"loss {classes} {reduction} {options}")
                loss.backward()
                tloss.backward()
                close(x.grad, tx.grad, 1e-12, f"grad {classes} {reduction} {options}")


@check
def few_long_rows_split_over_blocks():
    """Few rows of 20,011 classes: the forwards (cross-entropy too) split each row
    over grid.y blocks, merged in order by the row's last block; values match torch."""
    from gpugrad.cuda import launch as launchers
    grids = []
    original = launchers.launch

    def recording(filename, name, device_id, shape, args, shared_mem=0):
        grids.append((name.split("<")[0], shape.grid))
        return original(filename, name, device_id, shape, args, shared_mem)
    launchers.launch = recording
    try:
        rng = numpy.random.default_rng(6)
        values = rng.standard_normal((3, 20011)) * 4
        values[1, 7] = 1e4
        target = numpy.array([20010, 7, 5003])
        weight = rng.uniform(0.3, 2.0, 20011)
        for reduction in ("mean", "sum", "none"):
            for options in ({}, {"label_smoothing": 0.3, "weight": True}, {"ignore_index": 5003}):
                kwargs, tkwargs = dict(options), dict(options)
                if options.get("weight"):
                    kwargs["weight"] = gpugrad.tensor(weight, device="cuda")
                    tkwargs["weight"] = torch.tensor(weight)
                x, tx = pair(values)
                grids.clear()
                loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), reduction=reduction, **kwargs)
                tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
                assert grids and grids[0][0] == "cross_entropy_forward" and grids[0][1][1] > 1, grids
                close(loss, tloss, 1e-12, f"split loss {reduction} {options}")
                loss.sum().backward()
                tloss.sum().backward()
                close(x.grad, tx.grad, 1e-12, f"split grad {reduction} {options}")
        x, tx = pair(values)
        grids.clear()
        close(gpugrad.logsumexp(x, 1), torch.logsumexp(tx, 1), 1e-12, "split logsumexp")
        assert grids[0][1][1] > 1, grids
        close(gpugrad.log_softmax(x, 1), torch.log_softmax(tx, 1), 1e-12, "split log_softmax")
        bad = gpugrad.tensor([0, 20011, 1], device="cuda")
        try:
            F.cross_entropy(x, bad).item()
        except IndexError as error:
            assert "20011" in str(error), error
        else:
            raise AssertionError("no IndexError for target 20011 in a split row")
    finally:
        launchers.launch = original


@check
def row_clusters_keep_long_rows_on_chip():
    """sm_90 (the emulator's device): rows beyond one block's shared memory (70,001
    float32 classes, 280 KB) and few long rows (20,011) go to a row cluster
    (kernels.CLUSTER_SIZES blocks along grid.y, merged through distributed shared
    memory): cross-entropy writes its gradient in the forward (loss.backward() is
    one launch) under every option, log-sum-exp too (lse.sum().backward() is one
    launch), softmax and log_softmax take one launch each way; float32 and
    bfloat16 match torch on the same values.  The forwards of cross-entropy and
    log-sum-exp take blocks of launch.CLUSTER_THREADS where a chunk holds more
    than UNROLL vectors per thread of a MAX_THREADS block (70,001 float32
    classes, in one row too: a grid of one cluster, whose first block writes the
    loss), else MAX_THREADS.  Rows cached beyond 48 KiB of shared memory opt in
    to more (softmax backward, 8 rows of y and g)."""
    from gpugrad.cuda import kernels
    from gpugrad.cuda import launch as launchers
    launched = []
    original = launchers.launch

    def recording(filename, name, device_id, shape, args, shared_mem=0):
        launched.append((name, shape.grid, shared_mem, shape.block))
        return original(filename, name, device_id, shape, args, shared_mem)
    launchers.launch = recording
    size = kernels.CLUSTER_SIZES[-1]
    try:
        rng = numpy.random.default_rng(12)
        for rows, classes, dtype, tol in ((2, 70001, "float32", 1e-5), (3, 20011, "float32", 1e-5),
                                          (1, 70001, "float32", 1e-5), (2, 70001, "bfloat16", 1e-2)):
            wide = dtype == "float32" and classes == 70001        # 2188 vectors of 16 bytes per chunk
            threads = launchers.CLUSTER_THREADS if wide else launchers.MAX_THREADS
            values = rng.standard_normal((rows, classes)) * 4
            if rows > 1:
                values[0, 11] = 40.0     # (alone in a row, softmax's gradient there is float32 rounding)
            rounded = gpugrad.tensor(values, dtype=getattr(gpugrad, dtype)).float().numpy().astype("float64")
            target = rng.integers(0, classes, rows)
            weight = gpugrad.tensor(rng.uniform(0.3, 2.0, classes), dtype=getattr(gpugrad, dtype))
            for reduction, options in (("mean", {}), ("sum", {"label_smoothing": 0.3, "weight": True}),
                                       ("mean", {"ignore_index": int(target[-1]) if rows > 1 else -100}),
                                       ("mean", {"ignore_index": int(target[0]) + 1, "label_smoothing": 0.1})):
                kwargs, tkwargs = dict(options), dict(options)
                if options.get("weight"):
                    kwargs["weight"] = weight.to("cuda")
                    tkwargs["weight"] = torch.tensor(weight.float().numpy().astype("float64"))
                x = gpugrad.tensor(rounded, device="cuda").to(getattr(gpugrad, dtype)).requires_grad_()
                tx = torch.tensor(rounded, requires_grad=True)
                launched.clear()
                loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), reduction=reduction, **kwargs)
                loss.backward()
                what = f"{rows}x{classes} {dtype} {reduction} {options}"
                assert [entry[0] for entry in launched] == [
                    f"cross_entropy_forward<{launchers.float_type(x.dtype)}, long long, {size}>"], (what, launched)
                assert launched[0][1] == (rows, size) and launched[0][3] == (threads, 1), (what, launched)
                tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction, **tkwargs)
                tloss.backward()
                close(loss.float(), tloss, tol, f"cluster loss {what}")
                grad = x.grad.float().cpu().numpy().astype("float64")
                err = numpy.abs(grad - tx.grad.numpy()).max() / numpy.abs(tx.grad.numpy()).max()
                assert err < tol, f"cluster grad {what}: relative error {err:.3g}"
            x = gpugrad.tensor(rounded, device="cuda").to(getattr(gpugrad, dtype)).requires_grad_()
            tx = torch.tensor(rounded, requires_grad=True)
            launched.clear()
            out = gpugrad.logsumexp(x, 1)
            out.sum().backward()
            assert [(name, grid, block) for name, grid, _, block in launched] == [
                (f"logsumexp_forward<{launchers.float_type(x.dtype)}, {size}>", (rows, size), (threads, 1))], launched
            tout = torch.logsumexp(tx, 1)
            tout.sum().backward()
            close(out.float(), tout, tol, f"cluster logsumexp {rows}x{classes} {dtype}")
            err = numpy.abs(x.grad.float().cpu().numpy().astype("float64") - tx.grad.numpy()).max() / \
                numpy.abs(tx.grad.numpy()).max()
            assert err < tol, f"cluster logsumexp grad {rows}x{classes} {dtype}: relative error {err:.3g}"
            for name in ("softmax", "log_softmax"):
                x = gpugrad.tensor(rounded, device="cuda").to(getattr(gpugrad, dtype)).requires_grad_()
                tx = torch.tensor(rounded, requires_grad=True)
                upstream = gpugrad.tensor(rng.standard_normal((rows, classes)), dtype=getattr(gpugrad, dtype))
                launched.clear()
                y = getattr(gpugrad, name)(x, 1)
                y.backward(upstream.to("cuda"))
                assert [entry[0].split("<")[0] for entry in launched] == ["softmax_forward", "softmax_backward"] \
                    and all(entry[0].endswith(f", {size}>") for entry in launched), launched
                ty = getattr(torch, name)(tx, 1)
                ty.backward(torch.tensor(upstream.float().numpy().astype("float64")))
                for ours, theirs, part in ((y, ty, "value"), (x.grad, tx.grad, "grad")):
                    a = ours.detach().float().cpu().numpy().astype("float64")
                    b = theirs.detach().numpy()
                    err = numpy.abs(a - b).max() / numpy.abs(b).max()
                    assert err < tol, f"cluster {name} {part} {rows}x{classes} {dtype}: relative error {err:.3g}"
        # rows cached beyond the default 48 KiB: 8 rows of y and g per block (64 KB) opt in to more
        values = rng.standard_normal((16, 1000))
        x, tx = pair(values, "float32")
        upstream = rng.standard_normal((16, 1000))
        launched.clear()
        gpugrad.softmax(x, 1).backward(gpugrad.tensor(upstream, dtype=gpugrad.float32, device="cuda"))
        assert launched[-1][0] == "softmax_backward<float, false>" and launched[-1][2] > 48 * 1024, launched
        torch.softmax(tx, 1).backward(torch.tensor(upstream.astype("float32").astype("float64")))
        close(x.grad, tx.grad, 1e-5, "softmax backward cached beyond 48 KiB")
    finally:
        launchers.launch = original


@check
def bfloat16_kernels():
    """The __nv_bfloat16 instantiations: forward within one bfloat16 ulp of the
    exact result (torch float64 on the same values), gradients within bfloat16
    rounding; strided rows and the gradient written by the forward included."""
    import ml_dtypes
    rng = numpy.random.default_rng(7)
    for shape, dim in (((6, 37), 1), ((3, 4100), 1), ((4, 9, 5), 1)):
        values = (rng.standard_normal(shape) * 4).astype(ml_dtypes.bfloat16).astype(numpy.float64)
        target = rng.integers(0, shape[1], (shape[0],) + shape[2:])
        for op in ("cross_entropy", "logsumexp", "softmax", "log_softmax"):
            x = gpugrad.tensor(values, device="cuda").to(gpugrad.bfloat16).requires_grad_()
            x64 = torch.tensor(values, requires_grad=True)
            if op == "cross_entropy":
                out = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"), label_smoothing=0.1)
                ref = torch.nn.functional.cross_entropy(x64, torch.tensor(target), label_smoothing=0.1)
            else:
                out, ref = getattr(gpugrad, op)(x, dim), getattr(torch, op)(x64, dim)
            assert out.dtype == gpugrad.bfloat16, out.dtype
            got = out.detach().float().cpu().numpy().astype(numpy.float64)
            want = ref.detach().numpy()
            ulp = numpy.abs(want) * 2.0 ** -8 + 1e-30
            assert (numpy.abs(got - want) <= ulp * 1.01).all(), f"{op} {shape}: forward beyond one ulp"
            g = rng.uniform(-1, 1, want.shape) if op != "cross_entropy" else numpy.ones(())
            if op == "cross_entropy":
                out.backward()
                ref.backward()
            else:
                out.backward(gpugrad.tensor(g, device="cuda").to(gpugrad.bfloat16))
                ref.backward(torch.tensor(g).bfloat16().double())
            grad = x.grad.float().cpu().numpy().astype(numpy.float64)
            scale = numpy.abs(x64.grad.numpy()).max()
            assert numpy.abs(grad - x64.grad.numpy()).max() <= 2 ** -6 * scale, f"{op} {shape}: gradient"


@check
def grad_scaler_steps_without_a_host_sync():
    """float16 autocast + GradScaler + Adam on the GPU: no host read in a step;
    a step whose gradients hold inf is skipped on the device (parameters and
    Adam's state unchanged, the scale backed off), a clean one is taken."""
    rng = numpy.random.default_rng(8)
    model = gpugrad.nn.Linear(8, 4).cuda()
    optimizer = gpugrad.optim.Adam(model.parameters(), lr=0.01)
    scaler = gpugrad.amp.GradScaler("cuda", init_scale=2.0 ** 10, growth_interval=2)
    x = gpugrad.tensor(rng.standard_normal((16, 8)), dtype=gpugrad.float32, device="cuda")
    t = gpugrad.tensor(rng.integers(0, 4, 16), device="cuda")

    def step(scale_input=1.0):
        with gpugrad.autocast("cuda"):
            loss = F.cross_entropy(model(x * scale_input), t)
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    step()
    syncs = _count_host_syncs(step)
    assert syncs == 0, f"{syncs} host syncs in a GradScaler step"
    before = [p.detach().cpu().numpy().copy() for p in model.parameters()]
    moments = [optimizer.state[p]["exp_avg"].cpu().numpy().copy() for p in model.parameters()]
    scale = scaler.get_scale()
    step(scale_input=float("inf"))                 # inf logits: inf/nan gradients
    after = [p.detach().cpu().numpy() for p in model.parameters()]
    assert all(numpy.array_equal(a, b) for a, b in zip(before, after)), "the bad step changed the parameters"
    assert all(numpy.array_equal(optimizer.state[p]["exp_avg"].cpu().numpy(), m)
               for p, m in zip(model.parameters(), moments)), "the bad step changed Adam's state"
    assert scaler.get_scale() == scale / 2
    step()
    assert not all(numpy.array_equal(a, p.detach().cpu().numpy()) for a, p in zip(before, model.parameters()))


@check
def scaled_loss_takes_the_forward_gradient():
    """(2 * loss).backward(), loss / 4 and GradScaler.scale(loss).backward() from the second
    step on: the forward's gradient, written for the upstream gradient the last
    step received, is kept (the logits, spoilt with nan after the forward, are
    not read again; float32 and bfloat16), with no host sync; a new scale is
    computed again from the logits (torch's values)."""
    rng = numpy.random.default_rng(29)
    values = rng.standard_normal((8, 700))
    target = rng.integers(0, 700, 8)
    scaler = gpugrad.amp.GradScaler("cuda", init_scale=2.0 ** 6)
    for dtype, tol in (("float32", 1e-5), ("bfloat16", 2e-2)):
        for name, scaled, scale in (("2 * loss", lambda loss: 2 * loss, 2.0),
                                    ("loss / 4", lambda loss: loss / 4, 0.25),
                                    ("GradScaler", scaler.scale, 2.0 ** 6)):
            for step in range(3):
                x = gpugrad.tensor(values, dtype=getattr(gpugrad, dtype), device="cuda", requires_grad=True)
                tx = torch.tensor(x.detach().float().cpu().numpy(), dtype=torch.float64, requires_grad=True)
                loss = F.cross_entropy(x, gpugrad.tensor(target, device="cuda"))
                if step == 2:
                    x.array[...] = math.nan        # behind autograd's back
                    assert _count_host_syncs(lambda: scaled(loss).backward()) == 0
                else:
                    scaled(loss).backward()
                (scale * torch.nn.functional.cross_entropy(tx, torch.tensor(target))).backward()
                close(x.grad, tx.grad, tol, f"{name} {dtype} step {step}")


@check
def linear_cross_entropy_chunks():
    """The chunked linear + cross-entropy through the kernels: gradient written
    by the forward, the backward kernel where a chunk's rows are split over
    blocks, and the recompute of reduction='none'; against torch float64."""
    rng = numpy.random.default_rng(9)
    for classes in (37, 20011):
        x = rng.standard_normal((12, 8))
        w = rng.standard_normal((classes, 8)) / 3
        b = rng.standard_normal(classes)
        t = rng.integers(0, classes, 12)
        t[4] = -100
        for options in ({}, {"reduction": "sum", "label_smoothing": 0.2}, {"reduction": "none"}):
            leaves = [gpugrad.tensor(a, device="cuda", requires_grad=True) for a in (x, w, b)]
            tleaves = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
            loss = F.linear_cross_entropy(leaves[0], leaves[1], gpugrad.tensor(t, device="cuda"),
                                          linear_bias=leaves[2],
                                          options=gpugrad.nn.LinearCrossEntropyOptions(batch_chunk_size=5),
                                          **options)
            tloss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(*tleaves), torch.tensor(t),
                                                      **options)
            close(loss, tloss, 1e-12, f"loss {classes} {options}")
            g = rng.standard_normal(tuple(tloss.shape))
            loss.backward(gpugrad.tensor(g, device="cuda"))
            tloss.backward(torch.tensor(g))
            for ours, theirs, name in zip(leaves, tleaves, ("input", "weight", "bias")):
                close(ours.grad, theirs.grad, 1e-11, f"{name} grad {classes} {options}")


@check
def gpt_example_in_bfloat16_autocast():
    """The main example's model (examples/gpt_model.py) on the GPU under bfloat16
    autocast: a bfloat16 product stays bfloat16 (NumPy's widens it to float32,
    which routed float32 gradients into bfloat16 matmuls), the loss and every
    gradient agree with the same weights on the CPU path, and an AdamW step keeps
    the parameters float32 and finite."""
    sys.path.insert(0, str(HERE.parent / "examples"))
    import gpt_model
    a = gpugrad.ones(4, 8, device="cuda", dtype=gpugrad.bfloat16)
    assert (a @ a.T).dtype == gpugrad.bfloat16 and F.linear(a, a).dtype == gpugrad.bfloat16
    config = gpt_model.GPTConfig(vocab_size=97, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0)
    gpugrad.manual_seed(3)
    cpu = gpt_model.GPT(config)
    gpu = gpt_model.GPT(config).to("cuda")
    gpu.load_state_dict({k: v.to("cuda") for k, v in cpu.state_dict().items()})
    rng = numpy.random.default_rng(4)
    idx, targets = rng.integers(0, 97, (3, 16)), rng.integers(0, 97, (3, 16))
    losses = {}
    for device, model in (("cpu", cpu), ("cuda", gpu)):
        with gpugrad.autocast(device, dtype=gpugrad.bfloat16):
            _, loss = model(gpugrad.tensor(idx, device=device), gpugrad.tensor(targets, device=device))
        loss.backward()
        losses[device] = loss.item()
    assert abs(losses["cuda"] - losses["cpu"]) <= 1e-2 * abs(losses["cpu"]), losses
    grads = dict(cpu.named_parameters())
    for name, p in gpu.named_parameters():
        assert p.grad is not None and p.grad.dtype == gpugrad.float32, name
        ours, theirs = p.grad.cpu().numpy().astype(numpy.float64), grads[name].grad.numpy().astype(numpy.float64)
        err = numpy.linalg.norm(ours - theirs) / max(numpy.linalg.norm(theirs), 1e-12)
        assert err < 5e-2, f"{name}: gradient differs from the CPU path's by {err:.3g}"
    optimizer = gpu.configure_optimizer(0.1, 1e-3, (0.9, 0.95))
    optimizer.step()
    assert all(p.dtype == gpugrad.float32 and bool(gpugrad.isfinite(p).all()) for p in gpu.parameters())


@check
def gpt_step_launches():
    """The GPT example's training step (size small, dropout 0.1, AdamW,
    clip_grad_norm_) counted on the simulated device (benchmarks/step_launches.py):
    issue 28's targets (at most 700 launches in all, 4 for clip_grad_norm_ and 4
    for AdamW, no host sync), and each phase within a tenth of what it was
    when these kernels landed (forward 125, backward 162 with the bias's gradient
    from the GELU's backward kernel; 168 before it, 180 before attention's fused
    softmax), so a regression shows; the same with the forward under bfloat16
    autocast (forward 221, backward 306; 574 in all before the bias's gradient
    came from the GELU's kernel, half-type sums over leading dims were one
    kernel and float32 + bfloat16 was added without a cast first)."""
    import memtraffic_gpugrad

    from benchmarks import step_launches
    for autocast, caps in ((None, (125, 162)), ("bfloat16", (221, 306))):
        rows = step_launches.gpt_step(lambda: memtraffic_gpugrad.OpCounter(fakecupy), "small", batch=2, block=32,
                                      autocast=autocast)
        LAUNCHES["gpt small step" + (f", {autocast} autocast" if autocast else "")] = {
            phase: (r["kernels"], r["cupy_ops"] + r["memsets"]) for phase, r in rows.items() if isinstance(r, dict)}
        assert rows["total"]["syncs"] == 0, {phase: r.get("sync_calls") for phase, r in rows.items()
                                             if isinstance(r, dict)}
        assert rows["total"]["launches"] <= 700, rows["total"]
        assert rows["clip"]["launches"] <= 4 and rows["adamw"]["launches"] <= 4, (rows["clip"], rows["adamw"])
        for phase, cap in (("forward", caps[0]), ("backward", caps[1]), ("zero_grad", 0)):
            assert rows[phase]["launches"] <= cap * 1.1, f"{phase} ({autocast}): {rows[phase]['launches']} " \
                f"launches ({rows[phase]['by_name']}), was {cap}"
        assert math.isfinite(rows["loss"])


def main():
    results = {}
    for name, function in CHECKS.items():
        try:
            function()
            results[name] = None
        except Exception as error:  # noqa: BLE001 (reported per check)
            results[name] = f"{type(error).__name__}: {error}\n{traceback.format_exc(limit=6)}"
    print(json.dumps({"checks": results, "launches": LAUNCHES}))


if __name__ == "__main__":
    main()
