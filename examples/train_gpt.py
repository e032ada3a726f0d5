"""Train a small GPT on the Python standard library's own source code, with
gpugrad: on the GPU when there is one (bfloat16 autocast), else on the CPU.

    python examples/train_gpt.py                          # tiny on the CPU, small on a GPU
    python examples/train_gpt.py --size tiny --device cpu --max-minutes 2.5
    python examples/train_gpt.py --resume --steps 0 --sample "def parse("
    python examples/train_gpt.py --resume --steps 4000    # continue a run (killed, or longer)

The data is on every machine: the .py files of ``sysconfig.get_paths()
["stdlib"]`` (about 12 MB outside the test folders), split into training and
validation by file.  A byte-level BPE tokenizer (the ``tokenizers`` package)
is trained on the training files; it and the tokenized corpus are cached.
Prints the unigram entropy of the tokens (the loss of a model that ignores
context), then the training loss and tokens/s, the validation loss and
perplexity every ``--eval-interval`` steps, writes a PNG of the curves and a
generated sample at the end.

A checkpoint is written every ``--checkpoint-interval`` steps and at the end
(gpugrad.save writes it atomically: a run killed while saving keeps its last
good checkpoint).  The batches and the model's random numbers (dropout) are
drawn from generators seeded by (seed, rank, step) at the start and at every
checkpoint, so the step in the checkpoint is the whole position in the data and
the random streams: ``--resume`` continues exactly, with the losses and
weights of a run that was never interrupted.
"""

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pathlib
import sys
import sysconfig
import time
import zlib

import matplotlib
import numpy
from tqdm import tqdm

import gpugrad

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from cpu_threads import blas_threads  # noqa: E402
from gpt_model import GPT, SIZES, GPTConfig  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EOT = "<|endoftext|>"
SKIP = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
TRAINING = {   # per size: batch, steps, learning rate, warmup, eval interval
    "tiny": dict(batch_size=16, steps=2000, lr=2e-3, warmup=100, eval_interval=250),
    "small": dict(batch_size=32, steps=3000, lr=1e-3, warmup=200, eval_interval=250),
    "medium": dict(batch_size=32, steps=6000, lr=6e-4, warmup=400, eval_interval=500),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default=None,
                        help="model size (default: small on a GPU, tiny on the CPU)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--vocab", type=int, default=8192, help="BPE vocabulary size (up to 50257)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: per size)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop training after this many minutes; the steps that fit are planned after the "
                             "first few (the progress bar and the learning-rate schedule end there)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--eval-interval", type=int, default=None)
    parser.add_argument("--eval-batches", type=int, default=20)
    parser.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                        help="bfloat16 autocast (auto: on the GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "runs" / "gpt"),
                        help="directory for the checkpoint and the plot")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "gpugrad", "gpt"),
                        help="directory for the tokenizer and the tokenized corpus")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--checkpoint-interval", type=int, default=None,
                        help="steps between checkpoints (default: the eval interval; a resumed run keeps its run's)")
    parser.add_argument("--sample", default="class Parser:\n    def __init__(self",
                        help="prompt for the sample printed at the end ('' for none)")
    parser.add_argument("--ddp", action="store_true",
                        help="data-parallel over the processes of mpiexec or python -m gpugrad.distributed.run: "
                             "nccl on GPUs (one per process), mpi on the CPU")
    parser.add_argument("--sample-tokens", type=int, default=120)
    parser.add_argument("--max-files", type=int, default=None, help="use only this many source files (tests)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads on the CPU (default: the cores free for this process, see cpu_threads.py)")
    return parser.parse_args(argv)


# -- data ----------------------------------------------------------------------------------------

def source_files(limit=None):
    """The standard library's .py files outside test folders, sorted; 1 in 20 (by a hash of the path) for validation."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if not SKIP & set(p.relative_to(root).parts))
    if limit is not None:
        files = files[:limit]
    train = [p for p in files if zlib.crc32(str(p.relative_to(root)).encode()) % 20]
    val = [p for p in files if not zlib.crc32(str(p.relative_to(root)).encode()) % 20]
    return root, train, val


def _read(path):
    return path.read_text(encoding="utf-8", errors="replace")


def prepare(vocab, cache, limit=None, log=print):
    """(tokenizer, training tokens, validation tokens), built once and cached."""
    from tokenizers import ByteLevelBPETokenizer, Tokenizer  # the example's own dependency, used here only

    root, train, val = source_files(limit)
    key = hashlib.sha1(f"{sys.version}|{vocab}|{len(train)}|{len(val)}|{root}".encode()).hexdigest()[:12]
    folder = pathlib.Path(cache) / key
    names = [folder / "tokenizer.json", folder / "train.npy", folder / "val.npy"]
    if all(p.exists() for p in names):
        return Tokenizer.from_file(str(names[0])), numpy.load(names[1]), numpy.load(names[2])
    folder.mkdir(parents=True, exist_ok=True)
    size = sum(p.stat().st_size for p in train + val)
    log(f"data: {len(train)} training and {len(val)} validation files of the standard library ({root}), "
        f"{size / 1e6:.1f} MB; training a byte-level BPE tokenizer of {vocab} tokens (cached in {folder})")
    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator((_read(p) for p in train), vocab_size=vocab, min_frequency=2,
                                  special_tokens=[EOT], show_progress=False)
    eot = tokenizer.token_to_id(EOT)

    def encode(paths):
        ids = []
        for batch in range(0, len(paths), 64):
            for encoding in tokenizer.encode_batch([_read(p) for p in paths[batch:batch + 64]]):
                ids.extend(encoding.ids)
                ids.append(eot)
        return numpy.array(ids, dtype=numpy.uint16 if vocab <= 65536 else numpy.int32)

    train_ids, val_ids = encode(train), encode(val)
    tokenizer.save(str(names[0]))
    numpy.save(names[1], train_ids)
    numpy.save(names[2], val_ids)
    return Tokenizer.from_file(str(names[0])), train_ids, val_ids


def unigram_entropy(ids, vocab):
    """The entropy (nats) of the tokens' frequencies: the loss of the best model without context."""
    counts = numpy.bincount(ids, minlength=vocab).astype(numpy.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * numpy.log(p)).sum())


def batch(ids, batch_size, block, rng, device):
    if len(ids) <= block + 1:
        raise SystemExit(f"{len(ids)} tokens are too few for a context of {block}: use more files")
    starts = rng.integers(0, len(ids) - block - 1, batch_size)
    x = numpy.stack([ids[s:s + block] for s in starts]).astype(numpy.int64)
    y = numpy.stack([ids[s + 1:s + 1 + block] for s in starts]).astype(numpy.int64)
    return gpugrad.tensor(x, device=device), gpugrad.tensor(y, device=device)


# -- training ------------------------------------------------------------------------------------

def reseed(seed, rank, step):
    """The random state of training from ``step`` on: gpugrad's generators (dropout) and the
    data stream (returned) seeded from (seed, rank, step).  Done at the start and at every
    checkpoint, a resumed run draws the numbers the uninterrupted run drew."""
    entropy = numpy.random.SeedSequence((seed, rank, step))
    gpugrad.manual_seed(int(entropy.generate_state(1, numpy.uint64)[0] >> 1))
    return numpy.random.default_rng(entropy)


def save_checkpoint(path, model, optimizer, scheduler, step, history, config, interval, steps):
    """Everything a resumed run needs: the step is its position in the data and the random streams;
    ``steps`` the run's length (planned to fit --max-minutes, perhaps), where its cosine ends."""
    gpugrad.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "step": step, "history": history,
                  "config": dataclasses.asdict(config), "checkpoint_interval": interval, "steps": steps}, path)


def pick_device(requested):
    if requested is not None:
        return gpugrad.device(requested)
    return gpugrad.device("cuda") if gpugrad.cuda.is_available() else gpugrad.device("cpu")


def schedule(step, warmup, total, floor=0.1):
    """Linear warmup, then cosine decay to ``floor`` of the peak: the factor on the learning rate."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def evaluate(model, ids, args, config, device, amp):
    rng = numpy.random.default_rng(1234)
    model.eval()
    losses = []
    with gpugrad.no_grad(), gpugrad.autocast(device.type, dtype=gpugrad.bfloat16, enabled=amp):
        for _ in range(args.eval_batches):
            x, y = batch(ids, args.batch_size, config.block_size, rng, device)
            losses.append(model(x, y)[1].item())
    model.train()
    return float(numpy.mean(losses))


def sample(model, tokenizer, prompt, tokens, device, seed):
    ids = tokenizer.encode(prompt).ids or [tokenizer.token_to_id(EOT)]
    generator = gpugrad.Generator(device=device).manual_seed(seed)
    model.eval()
    out = model.generate(gpugrad.tensor([ids], device=device), tokens, temperature=0.8, top_k=40,
                         generator=generator)
    model.train()
    return tokenizer.decode(out[0].tolist())


def main(argv=None):
    args = parse_args(argv)
    cpu = pick_device(args.device).type == "cpu"
    threads = blas_threads(args.threads, library=gpugrad) if cpu else contextlib.nullcontext()
    with threads as threads_line:
        return train(args, threads_line)


def train(args, threads_line=None):
    rank, world = 0, 1
    if args.ddp:
        gpugrad.distributed.init_process_group("nccl" if gpugrad.cuda.is_available() and args.device != "cpu"
                                               else "mpi")
        rank, world = gpugrad.distributed.get_rank(), gpugrad.distributed.get_world_size()
        if gpugrad.distributed.get_backend() == "nccl":
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank)) % gpugrad.cuda.device_count()}"
    main_rank = rank == 0
    say = print if main_rank else (lambda *a, **k: None)
    device = pick_device(args.device)
    size = args.size or ("small" if device.type == "cuda" else "tiny")
    settings = dict(TRAINING[size])
    for name in ("batch_size", "steps", "lr", "eval_interval"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    args.batch_size, args.eval_interval = settings["batch_size"], settings["eval_interval"]
    amp = args.amp == "on" or (args.amp == "auto" and device.type == "cuda")
    where = gpugrad.cuda.get_device_name() if device.type == "cuda" else f"the CPU; {threads_line}"
    replicas = f", data-parallel over {world} processes ({gpugrad.distributed.get_backend()})" if args.ddp else ""
    say(f"{gpugrad.__name__} {gpugrad.__version__}: training the {size} GPT on {device} ({where})"
        f"{', bfloat16 autocast' if amp else ''}{replicas}")

    if main_rank:                          # one process builds the tokenizer and the corpus; the others read them
        tokenizer, train_ids, val_ids = prepare(args.vocab, args.cache, args.max_files, log=say)
    if args.ddp:
        gpugrad.distributed.barrier()
    if not main_rank:
        tokenizer, train_ids, val_ids = prepare(args.vocab, args.cache, args.max_files)
    vocab = tokenizer.get_vocab_size()
    entropy = unigram_entropy(train_ids, vocab)
    say(f"tokens: {len(train_ids):,} training, {len(val_ids):,} validation (vocabulary {vocab}); unigram "
        f"entropy of the training tokens {entropy:.3f} nats (perplexity {math.exp(entropy):.0f})")

    gpugrad.manual_seed(args.seed)
    config = GPTConfig(vocab_size=vocab, **SIZES[size])
    model = GPT(config).to(device)
    optimizer = model.configure_optimizer(weight_decay=0.1, learning_rate=settings["lr"], betas=(0.9, 0.95))
    scheduler = gpugrad.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule(step, settings["warmup"], settings["steps"]))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / f"{size}.pt"
    history = {"step": [], "loss": [], "val_step": [], "val_loss": [], "gpu_memory": []}
    start = 0
    if args.resume:
        checkpoint = gpugrad.load(checkpoint_path, map_location=device)
        if checkpoint["config"] != dataclasses.asdict(config):
            raise SystemExit(f"{checkpoint_path} holds a model of another configuration")
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        start, history = int(checkpoint["step"]), checkpoint["history"]
        if args.checkpoint_interval is None:
            args.checkpoint_interval = checkpoint.get("checkpoint_interval")
        if args.steps is None and checkpoint.get("steps"):       # the run's length, as planned
            settings["steps"] = int(checkpoint["steps"])
        say(f"resumed from {checkpoint_path} at step {start}")
    args.checkpoint_interval = args.checkpoint_interval or args.eval_interval
    rng = reseed(args.seed, rank, start)                     # each replica its own batches
    train_model = gpugrad.nn.parallel.DistributedDataParallel(model) if args.ddp else model
    say(f"model: {model.num_parameters() / 1e6:.2f} M parameters, {config.n_layer} layers, {config.n_head} heads, "
        f"width {config.n_embd}, context {config.block_size}; batch {args.batch_size}"
        f"{f' per process ({args.batch_size * world} in all)' if world > 1 else ''}, {settings['steps']} steps")

    tokens_per_step = args.batch_size * config.block_size * world
    deadline = time.perf_counter() + 60 * args.max_minutes if args.max_minutes else None
    bar = tqdm(range(start, settings["steps"]), desc="steps", disable=args.quiet or not main_rank, unit="step",
               initial=start, total=settings["steps"])
    plan = StepPlan(start, deadline, settings, bar, args, main_rank) if deadline is not None else None
    out_of_time = False
    step, started, val = start, time.perf_counter(), None
    for step in bar:
        tick = time.perf_counter()
        x, y = batch(train_ids, args.batch_size, config.block_size, rng, device)
        with gpugrad.autocast(device.type, dtype=gpugrad.bfloat16, enabled=amp):
            _, loss = train_model(x, y)
        optimizer.zero_grad()
        loss.backward()
        gpugrad.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        value = loss.item()
        if plan is not None:
            plan.step_done(step + 1)
        history["step"].append(step)
        history["loss"].append(value)
        bar.set_postfix(loss=f"{value:.3f}", tok_s=f"{tokens_per_step / (time.perf_counter() - tick):,.0f}")
        out_of_time = step + 1 < settings["steps"] and deadline is not None and _agree(
            time.perf_counter() > deadline, args.ddp)
        last = step + 1 == settings["steps"] or out_of_time
        if (step + 1) % args.eval_interval == 0 or last:
            if main_rank:
                # device memory in use between steps (the same point every time): flat if nothing leaks
                memory = gpugrad.cuda.memory_allocated(device) if device.type == "cuda" else None
                val = evaluate(model, val_ids, args, config, device, amp)
                history["val_step"].append(step + 1)
                history["val_loss"].append(val)
                history.setdefault("gpu_memory", []).append(memory)
                tqdm.write(f"step {step + 1}: training loss {value:.3f}, validation loss {val:.3f} "
                           f"(perplexity {math.exp(val):.1f}; unigram {entropy:.3f})"
                           + (f"; GPU memory in use {memory / 2**20:.1f} MiB" if memory is not None else ""))
        if (step + 1) % args.checkpoint_interval == 0 and not last:
            if main_rank:
                save_checkpoint(checkpoint_path, model, optimizer, scheduler, step + 1, history, config,
                                args.checkpoint_interval, settings["steps"])
            rng = reseed(args.seed, rank, step + 1)
        if last:
            step += 1
            break
    else:
        step = settings["steps"] if settings["steps"] > start else start
    seconds = time.perf_counter() - started
    if step > start and main_rank:
        bar.update(step - bar.n)               # the step the loop broke on (tqdm counts it at the next)
        bar.close()
        reason = (f"--max-minutes {args.max_minutes:g} ran out before the {settings['steps']} steps planned"
                  if out_of_time else f"the {settings['steps']} steps planned are done")
        say(f"stopped at step {step} of {settings['steps']} after {seconds:.0f} s: {reason}")
    if args.ddp:
        _check_replicas(model, world, say)
    if step > start and main_rank:
        say(f"trained {step - start} steps in {seconds:.0f} s ({(step - start) * tokens_per_step / seconds:,.0f} "
            f"tokens/s); validation loss {val:.3f} nats against the unigram entropy {entropy:.3f}")
        save_checkpoint(checkpoint_path, model, optimizer, scheduler, step, history, config, args.checkpoint_interval,
                        settings["steps"])
        summary = {"library": f"{gpugrad.__name__} {gpugrad.__version__}", "device": str(device), "where": where,
                   "size": size, "parameters": model.num_parameters(), "amp": amp, "batch_size": args.batch_size,
                   "block_size": config.block_size, "steps": step - start, "seconds": seconds,
                   "tokens_per_s": (step - start) * tokens_per_step / seconds, "val_loss": val,
                   "unigram_entropy": entropy, "val_steps": history["val_step"], "val_losses": history["val_loss"],
                   "gpu_memory": history.get("gpu_memory", [])}
        (out / f"{size}.json").write_text(json.dumps(summary, indent=1))
        write_plot(history, entropy, out / f"{size}.png", size, device)
        say(f"checkpoint written to {checkpoint_path}, curves to {out / f'{size}.png'}, figures to "
            f"{out / f'{size}.json'}")
    if args.sample and main_rank:
        text = sample(model, tokenizer, args.sample, args.sample_tokens, device, args.seed)
        say("sample:\n" + "-" * 60 + "\n" + text + "\n" + "-" * 60)
    if args.ddp:
        gpugrad.distributed.barrier()
        gpugrad.distributed.destroy_process_group()
    return {"val_loss": val, "entropy": entropy, "history": history, "steps": step - start, "seconds": seconds,
            "planned": settings["steps"], "out_of_time": out_of_time, "threads": threads_line}


class StepPlan:
    """With --max-minutes, the steps that fit before the deadline, planned from the time the
    steps take: first after the steps of PLAN_AFTER (the first few warm up), then again at a
    quarter, half and three quarters of the plan as the machine's speed changes.  The
    progress bar, the stop and the learning rate's cosine (which reads settings["steps"]) end
    at the plan; never past the steps asked for.  Every replica of a data-parallel run plans
    the fewest steps any of them fits."""

    def __init__(self, start, deadline, settings, bar, args, main_rank):
        self.deadline, self.settings, self.bar, self.args, self.main_rank = deadline, settings, bar, args, main_rank
        self.timed_from, self.due = start + PLAN_AFTER[0], start + PLAN_AFTER[1]
        self.start, self.asked, self.since, self.first = start, settings["steps"], None, True
        self.fractions = [0.25, 0.5, 0.75]

    def step_done(self, done):
        if done == self.timed_from:
            self.since = time.perf_counter()
        if done != self.due:
            return
        now = time.perf_counter()
        per_step = (now - self.since) / (done - self.timed_from)
        if self.first:   # no evaluation timed yet: each costs eval_batches forward passes, a third of a step each
            per_step *= 1 + self.args.eval_batches / (3 * self.args.eval_interval)
        fit = done + max(0, int((self.deadline - now) / per_step))
        if self.args.ddp:
            fit = -int(_all_reduce_max(-fit))
        fit = max(done, min(self.asked, fit))
        if self.main_rank and (self.first or fit != self.settings["steps"]):
            left = f"{self.deadline - now:.0f} s left"
            tqdm.write(f"{per_step * 1e3:.0f} ms a step: {fit} steps fit in --max-minutes {self.args.max_minutes:g}"
                       f" (at step {done}, {left}); training {fit}" + (f" of the {self.asked} asked for"
                                                                        if fit < self.asked else ""))
        self.settings["steps"] = self.bar.total = fit
        self.bar.refresh()
        self.first = False
        self.due = None
        while self.fractions and self.due is None:       # the next fraction of the plan still ahead
            due = self.start + int(self.fractions.pop(0) * (fit - self.start))
            self.due = due if due > done else None


# with --max-minutes, the steps are planned from the time of the steps between these two (the first few warm up)
PLAN_AFTER = (3, 23)


def _agree(flag, ddp):
    """Every replica stops at the same step: the deadline is any replica's."""
    if not ddp:
        return flag
    return _all_reduce_max(1.0 if flag else 0.0) > 0


def _all_reduce_max(number):
    value = gpugrad.tensor([float(number)])
    gpugrad.distributed.all_reduce(value, op=gpugrad.distributed.ReduceOp.MAX)
    return value.item()


def _check_replicas(model, world, say):
    """The replicas' weights must be identical: a checksum from each, compared."""
    checksum = gpugrad.tensor([float(sum(float(p.detach().double().sum()) for p in model.parameters()))],
                              dtype=gpugrad.float64)
    everyone = [gpugrad.zeros(1, dtype=gpugrad.float64) for _ in range(world)]
    gpugrad.distributed.all_gather(everyone, checksum.cpu() if gpugrad.distributed.get_backend() == "mpi" else
                                   checksum.to(next(model.parameters()).device))
    values = [e.item() for e in everyone]
    if len(set(values)) == 1:
        say(f"the {world} replicas' weights are identical (checksum {values[0]:.10g})")
    else:
        raise RuntimeError(f"the replicas' weights differ: checksums {values}")


def write_plot(history, entropy, path, size, device):
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(history["step"], history["loss"], linewidth=0.8, alpha=0.6, label="training loss")
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], marker="o", label="validation loss")
    ax.axhline(entropy, color="gray", linestyle="--", label=f"unigram entropy ({entropy:.2f})")
    ax.set(xlabel="step", ylabel="cross-entropy (nats)", title=f"gpugrad GPT ({size}) on the Python stdlib, {device}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
