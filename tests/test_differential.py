"""The differential fuzzer (tests/differential.py, its table in
tests/differential_table.py) in the suite: a bounded run against torch on the
CPU, the same on the emulated cuda device, and the table's coverage of the
public API.

Each run draws a fresh seed (printed on failure; ``GPUGRAD_FUZZ_SEED``
replays a run, ``GPUGRAD_FUZZ_CASES`` sizes it); a failing case prints as
``entry/form:seed`` and ``python tests/differential.py --case 'entry/form:seed'``
replays it alone.  ``make fuzz`` runs 50,000 cases.
"""

import inspect
import os
import sys
import time

import differential
import differential_table
import numpy
import pytest
import torch

import gpugrad
from gpugrad import tensor_methods

SEED = int(os.environ.get("GPUGRAD_FUZZ_SEED", int.from_bytes(os.urandom(4), "little")))
CASES = int(os.environ.get("GPUGRAD_FUZZ_CASES", 3000))
EMULATED_CASES = int(os.environ.get("GPUGRAD_FUZZ_EMULATED_CASES", 600))

# entries with mismatches still being fixed (name -> what is left); the large run (make fuzz) reports them too
PENDING = {}


def _run(entries, cases, device):
    entries = [e for e in entries if e.name not in PENDING]
    start = time.monotonic()
    done, mismatches = differential.run(entries, SEED, cases, device)
    took = time.monotonic() - start
    print(f"differential run on {device}: seed {SEED}, {done} cases, {len(mismatches)} mismatches, {took:.0f} s "
          f"(replay: GPUGRAD_FUZZ_SEED={SEED})", file=sys.stderr)
    assert not mismatches, (f"{len(mismatches)} of {done} cases differ from torch (GPUGRAD_FUZZ_SEED={SEED}):\n"
                            + "\n".join(mismatches[:20]))


def test_differential_run_matches_torch():
    _run(differential_table.ENTRIES, CASES, "cpu")


@pytest.mark.cuda
def test_differential_run_matches_torch_on_cuda():
    """The same cases on gpugrad's cuda device (the emulator without a GPU), torch on the CPU."""
    _run([e for e in differential_table.ENTRIES if e.name not in differential_table.HOST_ONLY], EMULATED_CASES,
         "cuda")


def test_a_case_of_an_op_the_installed_torch_lacks_is_skipped(monkeypatch):
    """torch 2.11 (the GPU machine's) has no F.linear_cross_entropy: its cases were counted as mismatches
    ("accepted where torch raises AttributeError"); there is nothing to compare them with."""
    entry = next(e for e in differential_table.ENTRIES if e.name == "linear_cross_entropy")
    assert entry.in_torch("F")
    monkeypatch.delattr(torch.nn.functional, "linear_cross_entropy")
    assert not entry.in_torch("F")
    assert all(differential.run_case(entry, "F", seed) is None for seed in range(5))
    exp = next(e for e in differential_table.ENTRIES if e.name == "exp")
    assert all(exp.in_torch(form) for form in ("torch", "method", "inplace"))


# -- coverage: every public op is in the table -------------------------------------------------------

def public_names():
    """gpugrad's public callables, Tensor's methods and operators, and nn.functional's functions."""
    names = set()
    for name in dir(gpugrad):
        value = getattr(gpugrad, name)
        if name.startswith("_") or inspect.ismodule(value) or not callable(value):
            continue
        names.add(f"gpugrad.{name}")
    for name, value in vars(gpugrad.Tensor).items():
        if callable(value) and (not name.startswith("_") or name in tensor_methods.OPERATORS
                                or name in tensor_methods.IN_PLACE or name in tensor_methods.SPECIAL
                                or name in ("__len__", "__iter__", "__bool__", "__float__", "__int__", "__index__",
                                            "__getitem__", "__setitem__", "__repr__", "__format__", "__array__",
                                            "__dlpack__", "__dlpack_device__", "__reduce_ex__", "__deepcopy__")):
            names.add(f"Tensor.{name}")
    for name in gpugrad.nn.functional.__all__:       # torch's names (helpers it imports are not its API)
        if callable(getattr(gpugrad.nn.functional, name)):
            names.add(f"F.{name}")
    return names


def test_every_public_op_is_fuzzed_or_excluded_with_a_reason():
    covered = differential_table.covered()
    excluded = set(differential_table.EXCLUDED)
    missing = sorted(public_names() - covered - excluded)
    assert not missing, ("public names neither in the fuzzer's table (tests/differential_table.py) nor in its "
                         f"EXCLUDED list with a reason: {missing}")


def test_the_table_names_only_what_exists():
    public = public_names()
    stale = sorted((differential_table.covered() | set(differential_table.EXCLUDED)) - public)
    assert not stale, f"the fuzzer's table names what gpugrad no longer has: {stale}"


def test_a_mismatch_is_reported_with_its_replayable_case():
    """The harness itself: a wrong op is caught, and its case replays to the same report."""
    wrong = differential_table.Entry("exp", lambda g, form: ((g.tensor((3,), values="normal"),), {}),
                                     forms=("call",), call=lambda lib, x: x.exp() * (1.0 if lib is not gpugrad
                                                                                      else 1.001))
    done, mismatches = differential.run([wrong], 7, 2)
    assert done == 2 and len(mismatches) == 2 and "max error" in mismatches[0]
    spec = mismatches[0].split(" ")[0]
    assert differential.replay([wrong], spec) == mismatches[0]


def test_a_float32_gradient_is_held_to_torchs_distance_from_the_float64_one():
    """The arbiter of a low-precision mismatch: torch in float64 on the same values.  A float32 gradient off
    torch's by more than the tolerance passes only where it is no further from the float64 result than torch's
    (cumprod's second derivative at GPUGRAD_FUZZ_SEED=3689792499: gpugrad -0.772461, torch -0.771484, float64
    -0.772581); one further off fails."""
    def gradient_of(scale):
        # a float32 gradient (x**2's, 2x) scaled by `scale` in gpugrad only: off torch's by (scale - 1) * 2x
        return differential_table.Entry(
            "square", lambda g, form: ((g.tensor((4, 4), values="normal", dtype="float32"),), {}), forms=("call",),
            call=lambda lib, x: x * x if lib is not gpugrad else scaled_square(x, scale))

    def scaled_square(x, scale):
        # the forward as torch's; the gradient scaled (a custom Function: only the backward differs)
        class Scaled(gpugrad.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x

            @staticmethod
            def backward(ctx, grad):
                (x,) = ctx.saved_tensors
                return grad * 2 * x * scale
        return Scaled.apply(x)

    done, mismatches = differential.run([gradient_of(1.01)], 11, 4)
    assert done == 4 and len(mismatches) == 4
    assert all("further from the float64 result" in m for m in mismatches), mismatches[0]
    done, mismatches = differential.run([gradient_of(1.0)], 11, 4)
    assert done == 4 and not mismatches
    torch_off = numpy.float64(-0.771484375)
    differential.judge(numpy.array([-0.7724609375]), numpy.array([torch_off]), numpy.array([-0.7725814078457915]),
                       "float32", "second derivative")
    with pytest.raises(differential.Mismatch, match="further from the float64 result"):
        differential.judge(numpy.array([-0.769]), numpy.array([torch_off]), numpy.array([-0.7725814078457915]),
                           "float32", "second derivative")
