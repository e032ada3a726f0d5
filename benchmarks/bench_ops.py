"""softmax / log_softmax, an elementwise chain, a matmul-bound layer, a full
MLP training step (small and large), and the per-op dispatch overhead, each
gpugrad against torch eager (and torch.compile where it applies).

Cases are generated lazily: each one's closures refer to the tensors of the
current iteration, and the runner times a case before the next is made.
"""

import gpugrad
from benchmarks.suite import Case


def _pair(machine, shape, dtype, scale=1.0):
    torch = machine.torch
    tx = (torch.randn(*shape, device=machine.device) * scale).to(getattr(torch, dtype)).requires_grad_(True)
    gx = gpugrad.from_dlpack(tx.detach()).requires_grad_(True)
    return gx, tx


def _family(machine):
    return "gpugrad" if machine.cuda else "cpu"


def _softmax_arrays(xp):
    """softmax / log_softmax forward+backward as array code in the fewest passes."""

    def softmax(x, g):
        y = xp.subtract(x, x.max(axis=1, keepdims=True))
        xp.exp(y, out=y)
        y *= 1 / y.sum(axis=1, keepdims=True)
        dot = xp.einsum("ij,ij->i", g, y)[:, None]
        out = xp.subtract(g, dot)
        out *= y
        return out

    def log_softmax(x, g):
        y = xp.subtract(x, x.max(axis=1, keepdims=True))
        y -= xp.log(xp.exp(y).sum(axis=1, keepdims=True))
        out = xp.exp(y)
        out *= g.sum(axis=1, keepdims=True)
        xp.subtract(g, out, out=out)
        return out

    return {"softmax": softmax, "log_softmax": log_softmax}


def softmax_cases(machine, quick, compile_torch):
    torch = machine.torch
    sizes = [(64, 1000)] if quick else ([(8192, 4096), (4096, 32000)] if machine.cuda else [(4096, 1000)])
    dtypes = ["float32"] if quick or not machine.cuda else ["float32", "float16"]
    xp = machine.cupy if machine.cuda else __import__("numpy")
    arrays = _softmax_arrays(xp)
    for rows, cols in sizes:
        for dtype in dtypes:
            gx, tx = _pair(machine, (rows, cols), dtype, 3.0)
            gg, tg = _pair(machine, (rows, cols), dtype)
            gg, tg = gg.detach(), tg.detach()
            raw_x, raw_g = xp.from_dlpack(tx.detach()), xp.from_dlpack(tg)
            for name, ours, theirs in (("softmax", gpugrad.softmax, torch.softmax),
                                       ("log_softmax", gpugrad.log_softmax, torch.log_softmax)):
                impls = {
                    "gpugrad": (lambda o=ours: gpugrad.autograd.grad(o(gx, 1), gx, gg), _family(machine)),
                    "torch": (lambda t=theirs: torch.autograd.grad(t(tx, 1), tx, tg), "torch"),
                    "array code, fewest passes": (lambda f=arrays[name]: f(raw_x, raw_g), _family(machine)),
                }
                if compile_torch:
                    compiled = torch.compile(lambda a, t=theirs: t(a, 1), dynamic=False)
                    impls["torch.compile"] = (lambda c=compiled: torch.autograd.grad(c(tx), tx, tg), "torch")
                # forward reads x, writes y; backward reads y and g, writes the gradient
                yield Case("softmax", f"{name} fwd+bwd", f"{rows}x{cols}", dtype, impls,
                           bytes=5 * rows * cols * tx.element_size(), memory=impls, x=rows * cols)


def elementwise_cases(machine, quick, compile_torch):
    torch = machine.torch
    sizes = [(256, 256)] if quick else ([(4096, 4096), (8192, 8192)] if machine.cuda else [(1024, 1024)])
    for shape in sizes:
        gx, tx = _pair(machine, shape, "float32")
        gw, tw = _pair(machine, shape[-1:], "float32")

        def ours():
            y = ((gx * gw + 1.0).tanh() * gx).sigmoid().sum()
            return gpugrad.autograd.grad(y, [gx, gw])

        def theirs(x=tx, w=tw):
            y = ((x * w + 1.0).tanh() * x).sigmoid().sum()
            return torch.autograd.grad(y, [x, w])

        impls = {"gpugrad": (ours, _family(machine)), "torch": (theirs, "torch")}
        if compile_torch:
            compiled = torch.compile(lambda x, w: ((x * w + 1.0).tanh() * x).sigmoid().sum(), dynamic=False)
            impls["torch.compile"] = (lambda: torch.autograd.grad(compiled(tx, tw), [tx, tw]), "torch")
        n = shape[0] * shape[1]
        # a fused forward+backward must read x (twice: forward and backward) and write its gradient
        yield Case("elementwise", "tanh/sigmoid chain fwd+bwd", f"{shape[0]}x{shape[1]}", "float32", impls,
                   bytes=3 * n * 4, memory=impls, x=n)


def matmul_cases(machine, quick, compile_torch):
    torch = machine.torch
    sizes = [(64, 64, 64)] if quick else ([(4096, 4096, 4096), (8192, 2048, 8192)] if machine.cuda
                                          else [(512, 512, 512)])
    if machine.cuda:
        torch.backends.cuda.matmul.allow_tf32 = False       # plain float32 on both sides
    for batch, features_in, features_out in sizes:
        gx, tx = _pair(machine, (batch, features_in), "float32")
        gw, tw = _pair(machine, (features_out, features_in), "float32")
        gb, tb = _pair(machine, (features_out,), "float32")

        def ours():
            y = gpugrad.nn.functional.linear(gx, gw, gb).relu().sum()
            return gpugrad.autograd.grad(y, [gx, gw, gb])

        def theirs():
            y = torch.nn.functional.linear(tx, tw, tb).relu().sum()
            return torch.autograd.grad(y, [tx, tw, tb])

        impls = {"gpugrad": (ours, _family(machine)), "torch": (theirs, "torch")}
        yield Case("matmul", "linear+relu fwd+bwd", f"{batch}x{features_in}->{features_out}", "float32", impls,
                   flops=3 * 2 * batch * features_in * features_out, memory=impls,
                   x=batch * features_in * features_out)


def _mlp_pair(machine, width, depth, classes):
    torch = machine.torch
    torch.manual_seed(0)
    layers, ours = [], []
    features = width
    for i in range(depth):
        layers += [torch.nn.Linear(features, width), torch.nn.GELU()]
        ours += [gpugrad.nn.Linear(features, width), gpugrad.nn.GELU()]
    layers.append(torch.nn.Linear(width, classes))
    ours.append(gpugrad.nn.Linear(width, classes))
    theirs = torch.nn.Sequential(*layers).to(machine.device)
    mine = gpugrad.nn.Sequential(*ours).to(machine.device)
    mine.load_state_dict({k: gpugrad.from_dlpack(v.detach().contiguous()) for k, v in theirs.state_dict().items()})
    return mine, theirs


def mlp_cases(machine, quick, compile_torch):
    torch = machine.torch
    if quick:
        configs = [("small", 64, 32)]
    elif machine.cuda:
        configs = [("small", 256, 64), ("large", 4096, 4096)]
    else:
        configs = [("small", 256, 64), ("large", 1024, 256)]
    depth, classes = 3, 10
    for label, width, batch in configs:
        mine, theirs = _mlp_pair(machine, width, depth, classes)
        opt_mine = gpugrad.optim.AdamW(mine.parameters(), lr=1e-3)
        opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-3, foreach=False)
        gx, tx = _pair(machine, (batch, width), "float32")
        gx, tx = gx.detach(), tx.detach()
        tt = torch.randint(0, classes, (batch,), device=machine.device)
        gt = gpugrad.from_dlpack(tt)

        def ours():
            loss = gpugrad.nn.functional.cross_entropy(mine(gx), gt)
            opt_mine.zero_grad()
            loss.backward()
            opt_mine.step()

        def torch_step():
            loss = torch.nn.functional.cross_entropy(theirs(tx), tt)
            opt_theirs.zero_grad()
            loss.backward()
            opt_theirs.step()

        impls = {"gpugrad": (ours, _family(machine)), "torch": (torch_step, "torch")}
        weights = width * width * depth + width * classes
        yield Case("mlp", f"training step ({label})", f"width {width}, batch {batch}", "float32", impls,
                   flops=6 * batch * weights, memory=impls, x=batch * weights,
                   wall_calls=50 if label == "small" else 0)
    yield from digits_cases(machine, quick)


def _digits_models(machine, hidden=128):
    torch = machine.torch
    torch.manual_seed(0)

    def build(lib):
        nn = lib.nn
        return nn.Sequential(nn.Linear(64, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, hidden),
                             nn.GELU(), nn.Linear(hidden, 10))
    theirs = build(torch).to(machine.device)
    mine = build(gpugrad).to(machine.device)
    mine.load_state_dict({k: gpugrad.from_dlpack(v.detach().contiguous()) for k, v in theirs.state_dict().items()})
    return mine, theirs


def digits_cases(machine, quick):
    """One epoch of examples/train_digits.py's loop (1,347 samples of 64
    features, batches of 64, the MLP 64-128-128-10 with GELU and dropout,
    AdamW, the loss read back each step), on random data of that shape."""
    torch = machine.torch
    samples = 256 if quick else 1347
    mine, theirs = _digits_models(machine)
    opt_mine = gpugrad.optim.AdamW(mine.parameters(), lr=2e-3, weight_decay=1e-4)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=2e-3, weight_decay=1e-4, foreach=False)
    tx = torch.randn(samples, 64, device=machine.device)
    ty = torch.randint(0, 10, (samples,), device=machine.device)
    gx, gy = gpugrad.from_dlpack(tx), gpugrad.from_dlpack(ty)
    order = torch.randperm(samples, device=machine.device)
    gorder = gpugrad.from_dlpack(order)

    def epoch(lib, model, optimizer, x, y, order):
        total = 0.0
        for start in range(0, samples, 64):
            index = order[start:start + 64]
            loss = lib.nn.functional.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        return total

    impls = {"gpugrad": (lambda: epoch(gpugrad, mine, opt_mine, gx, gy, gorder), _family(machine)),
             "torch": (lambda: epoch(torch, theirs, opt_theirs, tx, ty, order), "torch")}
    yield Case("mlp", "train_digits epoch", f"{samples} samples, batch 64", "float32", impls,
               wall_calls=1 if quick else 3)


CHAIN_NODES = 100


def _chain(lib, x, w):
    """100 graph nodes on 4x4 tensors (mul, tanh, add, sigmoid, 25 times) and their sum."""
    y = x
    for _ in range(CHAIN_NODES // 4):
        y = ((y * w).tanh() + y).sigmoid()
    return y.sum()


def overhead_cases(machine, quick, compile_torch):
    """Host wall time of small graphs: the cost of each node, forward and backward."""
    torch = machine.torch
    for device in (["cpu", "cuda"] if machine.cuda else ["cpu"]):
        family = "gpugrad" if device == "cuda" else "cpu"
        tx = torch.ones(4, 4, device=device, requires_grad=True)
        tw = torch.full((4, 4), 0.5, device=device, requires_grad=True)
        gx = gpugrad.from_dlpack(tx.detach()).requires_grad_(True)
        gw = gpugrad.from_dlpack(tw.detach()).requires_grad_(True)
        calls = 20 if quick else 200
        impls = {"gpugrad": (lambda: _chain(gpugrad, gx, gw), family),
                 "torch": (lambda: _chain(torch, tx, tw), "torch")}
        yield Case("overhead", f"chain of {CHAIN_NODES} ops, 4x4: forward", device, "float32", impls,
                   wall_calls=calls)
        impls = {"gpugrad": (lambda: _chain(gpugrad, gx, gw).backward(), family),
                 "torch": (lambda: _chain(torch, tx, tw).backward(), "torch")}
        yield Case("overhead", f"chain of {CHAIN_NODES} ops, 4x4: fwd+bwd", device, "float32", impls,
                   wall_calls=calls)
        # host time of a fused loss on a small batch: validation, dispatch and kernel launches
        tl = torch.randn(64, 1000, device=device, requires_grad=True)
        tt = torch.randint(0, 1000, (64,), device=device)
        gl = gpugrad.from_dlpack(tl.detach()).requires_grad_(True)
        gt = gpugrad.from_dlpack(tt)
        impls = {
            "gpugrad": (lambda x=gl, t=gt: gpugrad.nn.functional.cross_entropy(x, t).backward(), family),
            "torch": (lambda x=tl, t=tt: torch.nn.functional.cross_entropy(x, t).backward(), "torch"),
        }
        yield Case("overhead", "cross_entropy fwd+bwd, 64x1000 (host time)", device, "float32", impls,
                   wall_calls=20 if quick else 500, count_launches=True)


GROUPS = {
    "softmax": softmax_cases,
    "elementwise": elementwise_cases,
    "matmul": matmul_cases,
    "mlp": mlp_cases,
    "overhead": overhead_cases,
}
