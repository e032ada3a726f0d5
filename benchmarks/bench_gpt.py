"""The GPT example's training step (examples/gpt_model.py), gpugrad against
its torch twin (the same file on torch, benchmarks/gpt_torch.py) from the same
weights and batches: time per step (tokens/s = batch x context / time) and
peak extra memory (CPU: a fresh process each, benchmarks/peak_memory.py)."""

import pathlib
import sys

import numpy

from benchmarks import peak_memory
from benchmarks.gpt_torch import copy_weights, load
from benchmarks.suite import Case

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "examples"))

CONFIGS = {"cpu": [("tiny", 16)], "cuda": [("small", 32)]}
QUICK = [("tiny", 2)]
VOCAB = 8192


def training_step(library, size, batch, device, seed=0):
    """A closure running one training step (forward, backward, clipping, AdamW) of a fresh model."""
    import gpt_model
    import torch

    import gpugrad
    twin = load()
    config = dict(vocab_size=VOCAB, **gpt_model.SIZES[size])
    config["dropout"] = 0.0
    gpugrad.manual_seed(seed)
    ours = gpt_model.GPT(gpt_model.GPTConfig(**config)).to(device)
    rng = numpy.random.default_rng(seed)
    tokens = rng.integers(0, VOCAB, (batch, config["block_size"] + 1))
    if library == "gpugrad":
        model, lib = ours, gpugrad
    else:
        model, lib = twin.GPT(twin.GPTConfig(**config)).to(device), torch
        copy_weights(ours, model)
    x = lib.tensor(tokens[:, :-1], device=device)
    y = lib.tensor(tokens[:, 1:], device=device)
    optimizer = model.configure_optimizer(0.1, 1e-3, (0.9, 0.95))
    if lib is torch:
        for group in optimizer.param_groups:
            group["foreach"] = False

    def step():
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        lib.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return step


def cases(machine, quick=False, compile_torch=False):
    configs = QUICK if quick else CONFIGS["cuda" if machine.cuda else "cpu"]
    family = "gpugrad" if machine.cuda else "cpu"
    for size, batch in configs:
        import gpt_model
        block = gpt_model.SIZES[size]["block_size"]
        impls = {"gpugrad": (training_step("gpugrad", size, batch, machine.device), family),
                 "torch": (training_step("torch", size, batch, machine.device), "torch")}
        peaks = None
        if not machine.cuda:
            peaks = {"gpugrad": peak_memory.run("gpt gpugrad", size, batch),
                     "torch": peak_memory.run("gpt torch", size, batch)}
        yield Case("gpt", f"GPT training step ({size})", f"batch {batch} x {block} tokens", "float32", impls,
                   memory=impls if machine.cuda else None, peaks=peaks, x=batch * block,
                   repeats=None if quick else 5)
