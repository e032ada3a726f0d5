"""Launches per phase of a training step on the simulated cuda device.

With no GPU, the CUDA emulator's stand-in for CuPy (cuemu's fakecupy, in the
team's tools: tests/emulator.py says where) runs gpugrad's GPU path on the
CPU, and its ``OpCounter`` (memtraffic_gpugrad.py there) counts what would
reach the GPU: CuPy operations that make a new array, memsets, kernel
launches, and host synchronisations.  These are counts, not timings: each
launch costs host time on a real GPU (5-20 us through CuPy), which is what
the counts stand for.

On a GPU (gpugrad and torch both on CUDA) the same phases are counted by
CUPTI through torch's profiler (:class:`CuptiCounter`: kernels, memsets and
copies, gpugrad's and torch's alike), and the host time per step is measured.

Run as a script (``python -m benchmarks.step_launches [--json] [--torch]``)
it prints the GPT example's step and the digits MLP's step per phase, and
with --torch torch's top-level operations for the same steps on the CPU;
the emulator's folder comes from GPUGRAD_CUEMU, by default
``../shared/tools/cuemu``.  ``python -m benchmarks --only launches`` runs it
as the suite's ``launches`` group (:func:`collect`).
"""

import argparse
import collections
import contextlib
import functools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

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


class CuptiCounter:
    """Counts a phase's device work on a real GPU: the kernels, memsets and copies
    CUPTI records through torch's profiler (CuPy's and torch's alike, one CUDA
    context), and the host synchronisations among the CUDA runtime calls."""

    SYNCS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaMemcpy")
    MARK = "step_launches: the counter's own synchronize"

    def __init__(self, synchronize):
        self.synchronize = synchronize

    def count(self, fn):
        from torch.profiler import ProfilerActivity, profile, record_function
        self.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            with record_function(self.MARK):     # the phase's work is all recorded; this sync is not counted
                self.synchronize()
        handle, path = tempfile.mkstemp(suffix=".json")
        os.close(handle)
        try:
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f).get("traceEvents", [])
        finally:
            os.unlink(path)
        return self.device_work(events)

    @classmethod
    def device_work(cls, events):
        """A phase's counts from the events of its profiler trace: the kernels,
        memsets and copies, and the synchronising runtime calls before the mark
        of the counter's own synchronize."""
        kinds = collections.Counter(e.get("cat") for e in events if e.get("ph") == "X")
        names = collections.Counter(e["name"] for e in events if e.get("ph") == "X" and e.get("cat") in (
            "kernel", "gpu_memset", "gpu_memcpy"))
        mark = min((e["ts"] for e in events if e.get("name") == cls.MARK), default=float("inf"))
        syncs = [e["name"] for e in events if e.get("cat") == "cuda_runtime" and e.get("name") in cls.SYNCS
                 and e.get("ts", 0) < mark]
        kernels, memsets, copies = kinds["kernel"], kinds["gpu_memset"], kinds["gpu_memcpy"]
        return {"launches": kernels + memsets + copies, "kernels": kernels, "cupy_ops": 0, "memsets": memsets,
                "copies": copies, "syncs": len(syncs), "sync_calls": syncs,
                "by_name": dict(names.most_common())}


def _phases(counter, phases):
    """{phase: counts} and their total.  ``counter``: an object with ``count(fn)``
    (:class:`CuptiCounter`), or a factory of the emulator's OpCounter."""
    count = getattr(counter, "count", None) or functools.partial(_count, counter)
    rows = {name: count(fn) for name, fn in phases}
    rows["total"] = {key: sum(r[key] for r in rows.values()) for key in ("launches", "kernels", "cupy_ops",
                                                                          "memsets", "syncs")}
    return rows


def gpt_step(counter_factory, size="small", batch=2, block=64, warmup=1, autocast=None):
    """Launches per phase (forward, zero_grad, backward, clip, adamw) of the GPT
    example's training step (AdamW, clip_grad_norm_ 1.0, dropout as the size
    sets it) on the cuda device (simulated, or a GPU with a :class:`CuptiCounter`),
    after ``warmup`` steps; and the last loss.  ``autocast``: the forward under
    autocast to that dtype ("bfloat16", as examples/train_gpt.py on a GPU)."""
    phases, state = gpt_phases(size, batch, block, autocast)
    _warm_up(phases, warmup)
    rows = _phases(counter_factory, phases)
    rows["loss"] = float(state["loss"].item())
    return rows


def _warm_up(phases, steps):
    for _ in range(steps):
        for _, fn in phases:
            fn()


def gpt_phases(size="small", batch=2, block=64, autocast=None):
    """The GPT example's training step on cuda as [(phase, fn)], and the state its loss goes to;
    ``autocast``: a dtype name, the forward under autocast to it."""
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
        with contextlib.nullcontext() if autocast is None else gpugrad.autocast("cuda", getattr(gpugrad, autocast)):
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
    return phases, state


def torch_gpt_step(size="small", batch=2, block=64, warmup=1, counter=None, device="cpu"):
    """torch's count per phase of the same step (the torch twin of the example,
    benchmarks/gpt_torch.py; AdamW and clip_grad_norm_ with foreach=True, as on
    CUDA): with ``counter`` (a :class:`CuptiCounter`, on the GPU) what it counts,
    else on the CPU the top-level aten operations (:func:`_torch_phases`)."""
    return _torch_phases(torch_gpt_phases(size, batch, block, device), warmup, counter)


def torch_gpt_phases(size="small", batch=2, block=64, device="cpu"):
    """The torch twin's training step as [(phase, fn)]."""
    import numpy
    import torch

    from benchmarks import gpt_torch
    model_module = gpt_torch.load()
    torch.manual_seed(0)
    settings = dict(model_module.SIZES[size])
    settings["block_size"] = block
    config = model_module.GPTConfig(**settings)
    model = model_module.GPT(config).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n != "wpe.weight"]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n == "wpe.weight"]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.95), foreach=True)
    rng = numpy.random.default_rng(0)
    x = torch.tensor(rng.integers(0, config.vocab_size, (batch, block)), device=device)
    y = torch.tensor(rng.integers(0, config.vocab_size, (batch, block)), device=device)
    state = {}
    phases = [("forward", lambda: state.update(loss=model(x, y)[1])), ("zero_grad", optimizer.zero_grad),
              ("backward", lambda: state["loss"].backward()),
              ("clip", lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)),
              ("adamw", optimizer.step)]
    return phases


def torch_mlp_step(batch=64, warmup=1, counter=None, device="cpu"):
    """torch's count per phase of the digits MLP step (:func:`mlp_step`'s twin;
    SGD with momentum, foreach as on CUDA)."""
    return _torch_phases(torch_mlp_phases(batch, device), warmup, counter)


def torch_mlp_phases(batch=64, device="cpu"):
    import torch
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, foreach=True)
    x = torch.randn(batch, 64, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    state = {}
    phases = [("forward", lambda: state.update(loss=torch.nn.functional.cross_entropy(model(x), y))),
              ("zero_grad", optimizer.zero_grad), ("backward", lambda: state["loss"].backward()),
              ("sgd", optimizer.step)]
    return phases


def _torch_phases(phases, warmup, counter):
    """Each phase counted by ``counter``, or (None, on the CPU) two ways: ``ops``,
    the aten operations the profiler records whose parent is not itself an aten
    operation (what torch's Python calls dispatch, views and no-op ``to``
    included), and ``computing``, the aten operations that reach the backend
    kernels (below autograd, decompositions included) and make or write data:
    views, aliases and ``empty`` left out, an estimate of torch's launches (its
    CPU decompositions are not always its CUDA ones, and an operation it runs
    below the dispatcher, the chunked linear_cross_entropy, counts once)."""
    from torch.profiler import ProfilerActivity, profile
    _warm_up(phases, warmup)
    if counter is not None:
        return _phases(counter, phases)
    rows = {}
    for name, fn in phases:           # one step counted by the profiler
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        top = [e.name for e in prof.events() if e.name.startswith("aten::")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]
        rows[name] = {"ops": len(top), "by_name": dict(collections.Counter(top).most_common(12))}
    for name, fn in phases:           # the next by the dispatch mode (under it the profiler sees more ops)
        with _ComputingOps() as computing:
            fn()
        rows[name].update(computing=len(computing.names),
                          computing_by_name=dict(collections.Counter(computing.names).most_common(12)))
    rows["total"] = {key: sum(r[key] for r in rows.values()) for key in ("ops", "computing")}
    return rows


def _ComputingOps():
    """A TorchDispatchMode that lists the aten operations that compute (see _torch_phases)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ComputingOps(TorchDispatchMode):
        # no data made or written: an allocation, or a host-side scalar read (the optimizers' CPU step counts)
        SKIP = ("aten::empty", "aten::empty_strided", "aten::empty_like", "aten::_local_scalar_dense")

        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            schema = func._schema
            aliasing = any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns)
            if not aliasing and not schema.name.startswith("profiler::") and schema.name not in self.SKIP:
                self.names.append(schema.name)
            return func(*args, **(kwargs or {}))

    return ComputingOps()


def mlp_step(counter_factory, batch=64, warmup=1):
    """The same for the digits MLP (64-128-64-10, ReLU, cross-entropy, SGD with momentum)."""
    phases = mlp_phases(batch)
    _warm_up(phases, warmup)
    return _phases(counter_factory, phases)


def mlp_phases(batch=64):
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

    return [("forward", forward), ("zero_grad", optimizer.zero_grad), ("backward", lambda: state["loss"].backward()),
            ("sgd", optimizer.step)]


def host_time(phases, synchronize, steps=20, warmup=3):
    """Host time of whole steps on the GPU, in microseconds: ``host`` from the
    step's first call to its last return (the launches issued, nothing waited
    for), ``step`` to the end of its device work; median and quartiles."""
    _warm_up(phases, warmup)
    synchronize()
    host, step = [], []
    for _ in range(steps):
        start = time.perf_counter()
        for _, fn in phases:
            fn()
        issued = time.perf_counter()
        synchronize()
        host.append((issued - start) * 1e6)
        step.append((time.perf_counter() - start) * 1e6)
    return {name: {"median": statistics.median(v), "q1": statistics.quantiles(v, n=4)[0],
                   "q3": statistics.quantiles(v, n=4)[2]} for name, v in (("host", host), ("step", step))}


# sizes the launches group counts: the GPT small step (batch 2, context 64); --quick a tiny one
FULL = {"size": "small", "batch": 2, "block": 64}
QUICK = {"size": "tiny", "batch": 1, "block": 8}


def collect(machine, quick=False, timeout=3600):
    """The suite's ``launches`` group: launches per phase of the GPT and MLP
    steps, gpugrad's and torch's, as a dict for the JSON record.  On a GPU
    (``machine.cuda``) counted by CUPTI in this process, with the host time per
    step; else on the emulated device, in a subprocess (the emulator's CuPy
    must be installed before gpugrad looks for CuPy), next to torch's top-level
    operations on the CPU.  Without a GPU or the emulator: {"skipped": why}."""
    settings = QUICK if quick else FULL
    if machine.cuda:
        return _collect_on_gpu(machine, settings, quick)
    if not (cuemu_dir() / "fakecupy.py").is_file():
        return {"skipped": f"no GPU, and no CUDA emulator at {cuemu_dir()} to count launches on a simulated "
                           "device: set GPUGRAD_CUEMU to the emulator's folder (cuemu, with fakecupy.py and "
                           "memtraffic_gpugrad.py), or run on a GPU"}
    handle, path = tempfile.mkstemp(suffix=".json")
    os.close(handle)
    root = pathlib.Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "benchmarks.step_launches", "--torch", "--json-file", path,
               "--size", settings["size"], "--batch", str(settings["batch"]), "--block", str(settings["block"])]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "GPUGRAD_CUEMU": str(cuemu_dir())})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[1:])} failed ({done.returncode}): {done.stderr[-2000:]}")
        result = json.loads(pathlib.Path(path).read_text())
    finally:
        os.unlink(path)
    return {"device": "emulated cuda", "counter": "the CUDA emulator's OpCounter (counts, not timings)",
            "emulator": str(cuemu_dir()), "torch_counter": "on the CPU, the aten operations that compute, "
            "and in brackets the top-level aten operations the profiler records",
            "settings": settings, **result, "host_us_per_step": None,
            "host_note": "Host time per step is measured on a GPU only"}


def _collect_on_gpu(machine, settings, quick):
    counter = CuptiCounter(machine.synchronize)
    record = {"device": "cuda", "counter": "CUPTI through torch's profiler: kernels, memsets and copies",
              "torch_counter": "the same", "settings": settings}
    gpt = gpt_phases(settings["size"], settings["batch"], settings["block"])[0]
    torch_gpt = torch_gpt_phases(settings["size"], settings["batch"], settings["block"], "cuda")
    mlp, torch_mlp = mlp_phases(), torch_mlp_phases(device="cuda")
    for name, phases in (("gpt", gpt), ("torch_gpt", torch_gpt), ("mlp", mlp), ("torch_mlp", torch_mlp)):
        _warm_up(phases, 1)
        record[name] = _phases(counter, phases)
    steps = 5 if quick else 50
    record["host_us_per_step"] = {"gpt": host_time(gpt, machine.synchronize, steps),
                                  "torch_gpt": host_time(torch_gpt, machine.synchronize, steps),
                                  "mlp": host_time(mlp, machine.synchronize, steps),
                                  "torch_mlp": host_time(torch_mlp, machine.synchronize, steps)}
    return record


def markdown(record):
    """The launches group's tables (lines), from :func:`collect`'s record."""
    if not record:
        return []
    if "skipped" in record:
        return ["", f"Launches per training step: not counted ({record['skipped']}).", ""]
    settings = record.get("settings", {})
    lines = ["", f"Launches per training step on the {record['device']} device, counted by {record['counter']}; "
                 f"torch: {record['torch_counter']}.  GPT size {settings.get('size')}, batch {settings.get('batch')}, "
                 f"context {settings.get('block')}; the digits MLP at batch 64:", "",
             "| step | phase | gpugrad launches | kernels | CuPy ops | memsets | host syncs | torch" + (
                 " computing ops (top-level ops)" if record["device"] != "cuda" else " launches") + " |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for step in ("gpt", "mlp"):
        ours, theirs = record.get(step) or {}, record.get("torch_" + step) or {}
        for phase, r in ours.items():
            if not isinstance(r, dict):
                continue
            other = theirs.get(phase, {})
            torch_count = other.get("launches", other.get("computing", ""))
            if "ops" in other:
                torch_count = f"{torch_count} ({other['ops']})"
            lines.append(f"| {step} | {phase} | {r['launches']} | {r['kernels']} | {r['cupy_ops']} | {r['memsets']} "
                         f"| {r['syncs']} | {torch_count} |")
    host = record.get("host_us_per_step")
    if record.get("host_note"):
        lines += ["", record["host_note"] + "."]
    if host:
        lines += ["", "Host time per step on the GPU, microseconds (median, quartiles): issuing it, and to the end "
                      "of its device work:", "", "| step | impl | host | step |", "|---|---|---:|---:|"]
        for name, t in host.items():
            step, impl = (name[6:], "torch") if name.startswith("torch_") else (name, "gpugrad")
            lines.append(f"| {step} | {impl} | {t['host']['median']:.0f} ({t['host']['q1']:.0f}-{t['host']['q3']:.0f})"
                         f" | {t['step']['median']:.0f} ({t['step']['q1']:.0f}-{t['step']['q3']:.0f}) |")
    return lines


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
    parser.add_argument("--autocast", choices=("bfloat16", "float16"),
                        help="the GPT step's forward under autocast to this dtype (gpugrad only)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--json-file", help="write the JSON here (what the suite's launches group reads)")
    parser.add_argument("--torch", action="store_true", help="also count torch's operations for the same steps")
    args = parser.parse_args(argv)
    factory = install_emulator()
    if factory is None:
        sys.exit(f"no CUDA emulator at {cuemu_dir()} (set GPUGRAD_CUEMU)")
    result = {"gpt": gpt_step(factory, args.size, args.batch, args.block, autocast=args.autocast),
              "mlp": mlp_step(factory)}
    if args.torch:
        result["torch_gpt"] = torch_gpt_step(args.size, args.batch, args.block)
        result["torch_mlp"] = torch_mlp_step()
    if args.json_file:
        pathlib.Path(args.json_file).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
        return
    for name in ("gpt", "mlp"):
        under = f", the forward under {args.autocast} autocast" if name == "gpt" and args.autocast else ""
        print(f"{name} step on the simulated cuda device (the emulator's counts, not a GPU's){under}")
        print(table(result[name]))
    if args.torch:
        print("torch, the same steps on the CPU: aten operations that compute (top-level aten operations) per phase")
        for name in ("torch_gpt", "torch_mlp"):
            counts = [f"{phase} {r['computing']} ({r['ops']})" for phase, r in result[name].items()]
            print(name + ": " + "  ".join(counts))


if __name__ == "__main__":
    main()
