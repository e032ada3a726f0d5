"""Launches per phase of a training step on the simulated cuda device.

With no GPU, the CUDA emulator's stand-in for CuPy (cuemu's fakecupy, in the
team's tools: tests/emulator.py says where) runs gpugrad's GPU path on the
CPU, and its ``OpCounter`` (memtraffic_gpugrad.py there) counts what would
reach the GPU: CuPy operations that make a new array, memsets, kernel
launches, and host synchronisations.  These are counts, not timings: each
launch costs host time on a real GPU (5-20 us through CuPy), which is what
the counts stand for.

Run as a script (``python -m benchmarks.step_launches [--json] [--torch]``)
it prints the GPT example's step and the digits MLP's step per phase, and
with --torch torch's top-level operations for the same GPT step on the CPU;
the emulator's folder comes from GPUGRAD_CUEMU, by default
``../shared/tools/cuemu``.
"""

import argparse
import collections
import json
import os
import pathlib
import sys

DEFAULT_CUEMU = pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools" / "cuemu"


def cuemu_dir():
    return pathlib.Path(os.environ.get("GPUGRAD_CUEMU") or DEFAULT_CUEMU)


def install_emulator():
    """Install the emulator's CuPy (before gpugrad first asks for CuPy) and
    return its OpCounter class; None when the emulator is not there."""
    folder = cuemu_dir()
    if not (folder / "fakecupy.py").is_file():
        return None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    import fakecupy
    if getattr(sys.modules.get("cupy"), "ndarray", None) is not fakecupy.ndarray:
        fakecupy.install()
    import memtraffic_gpugrad
    return lambda: memtraffic_gpugrad.OpCounter(fakecupy)


def _count(counter_factory, fn):
    counter = counter_factory()
    counter.fc._flush()             # launches queued by the phase before are not this one's
    with counter:
        fn()
    return {"launches": counter.launches + len(counter.ops) + len(counter.memsets),
            "kernels": counter.launches, "cupy_ops": len(counter.ops), "memsets": len(counter.memsets),
            "syncs": len(counter.syncs), "sync_calls": list(counter.syncs),
            "by_name": dict(collections.Counter(counter.ops + counter.memsets + counter.kernels).most_common())}


def _phases(counter_factory, phases):
    rows = {name: _count(counter_factory, fn) for name, fn in phases}
    rows["total"] = {key: sum(r[key] for r in rows.values()) for key in ("launches", "kernels", "cupy_ops",
                                                                          "memsets", "syncs")}
    return rows


def gpt_step(counter_factory, size="small", batch=2, block=64, warmup=1):
    """Launches per phase (forward, zero_grad, backward, clip, adamw) of the GPT
    example's training step (AdamW, clip_grad_norm_ 1.0, dropout as the size
    sets it) on the simulated cuda device, after ``warmup`` steps."""
    import numpy

    import gpugrad
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))
    import gpt_model

    gpugrad.manual_seed(0)
    settings = dict(gpt_model.SIZES[size])
    settings["block_size"] = max(block, 1)
    config = gpt_model.GPTConfig(**settings)
    model = gpt_model.GPT(config).to("cuda")
    optimizer = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95))
    rng = numpy.random.default_rng(0)
    x = gpugrad.tensor(rng.integers(0, config.vocab_size, (batch, block)), device="cuda")
    y = gpugrad.tensor(rng.integers(0, config.vocab_size, (batch, block)), device="cuda")
    state = {}

    def forward():
        state["loss"] = model(x, y)[1]

    def zero_grad():
        optimizer.zero_grad()

    def backward():
        state["loss"].backward()

    def clip():
        gpugrad.nn.utils.clip_grad_norm_(model.parameters(), 1.0)

    def adamw():
        optimizer.step()

    phases = [("forward", forward), ("zero_grad", zero_grad), ("backward", backward), ("clip", clip),
              ("adamw", adamw)]
    for _ in range(warmup):
        for _, fn in phases:
            fn()
    rows = _phases(counter_factory, phases)
    rows["loss"] = float(state["loss"].item())
    return rows


def torch_gpt_step(size="small", batch=2, block=64, warmup=1):
    """torch's top-level operations per phase of the same step on the CPU (the
    torch twin of the example, benchmarks/gpt_torch.py; AdamW and
    clip_grad_norm_ with foreach=True, as on CUDA): the aten operations the
    profiler records whose parent is not itself an aten operation."""
    import numpy
    import torch
    from torch.profiler import ProfilerActivity, profile

    from benchmarks import gpt_torch
    model_module = gpt_torch.load()
    torch.manual_seed(0)
    settings = dict(model_module.SIZES[size])
    settings["block_size"] = block
    config = model_module.GPTConfig(**settings)
    model = model_module.GPT(config)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "wpe.weight"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "wpe.weight"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.95), foreach=True)
    rng = numpy.random.default_rng(0)
    x = torch.tensor(rng.integers(0, config.vocab_size, (batch, block)))
    y = torch.tensor(rng.integers(0, config.vocab_size, (batch, block)))
    state = {}
    phases = [("forward", lambda: state.update(loss=model(x, y)[1])), ("zero_grad", optimizer.zero_grad),
              ("backward", lambda: state["loss"].backward()),
              ("clip", lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)),
              ("adamw", optimizer.step)]
    for _ in range(warmup):
        for _, fn in phases:
            fn()
    rows = {}
    for name, fn in phases:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        top = [e.name for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
        rows[name] = {"ops": len(top), "by_name": dict(collections.Counter(top).most_common(12))}
    rows["total"] = {"ops": sum(r["ops"] for r in rows.values())}
    return rows


def mlp_step(counter_factory, batch=64, warmup=1):
    """The same for the digits MLP (64-128-64-10, ReLU, cross-entropy, SGD with momentum)."""
    import gpugrad
    from gpugrad import nn
    gpugrad.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)).to("cuda")
    optimizer = gpugrad.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = gpugrad.randn(batch, 64, device="cuda")
    y = gpugrad.randint(0, 10, (batch,), device="cuda")
    state = {}

    def forward():
        state["loss"] = nn.functional.cross_entropy(model(x), y)

    phases = [("forward", forward), ("zero_grad", optimizer.zero_grad), ("backward", lambda: state["loss"].backward()),
              ("sgd", optimizer.step)]
    for _ in range(warmup):
        for _, fn in phases:
            fn()
    return _phases(counter_factory, phases)


def table(rows):
    lines = [f"{'phase':10s} {'launches':>8s} {'kernels':>8s} {'cupy ops':>8s} {'memsets':>8s} {'syncs':>6s}"]
    for name, r in rows.items():
        if isinstance(r, dict):
            lines.append(f"{name:10s} {r['launches']:8d} {r['kernels']:8d} {r['cupy_ops']:8d} {r['memsets']:8d} "
                         f"{r['syncs']:6d}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--block", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--torch", action="store_true", help="also count torch's operations for the GPT step")
    args = parser.parse_args(argv)
    factory = install_emulator()
    if factory is None:
        sys.exit(f"no CUDA emulator at {cuemu_dir()} (set GPUGRAD_CUEMU)")
    result = {"gpt": gpt_step(factory, args.size, args.batch, args.block), "mlp": mlp_step(factory)}
    if args.torch:
        result["torch_gpt"] = torch_gpt_step(args.size, args.batch, args.block)
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name in ("gpt", "mlp"):
        print(f"{name} step on the simulated cuda device (the emulator's counts, not a GPU's)")
        print(table(result[name]))
    if args.torch:
        print("torch, the same GPT step on the CPU: top-level aten operations per phase (profiler; foreach=True)")
        print("  ".join(f"{phase} {r['ops']}" for phase, r in result["torch_gpt"].items()))


if __name__ == "__main__":
    main()
