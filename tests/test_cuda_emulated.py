"""The GPU path on the CPU: tests/cuda_emulated_checks.py runs gpugrad's
public API on a simulated 'cuda' device with the real kernels (the emulator,
tests/emulator.py says where), against torch, in a subprocess (CuPy's stand-in must
be installed before anything imports cupy).  One test per check; skipped where
the emulator or a C++ compiler is missing."""

import json
import pathlib
import shutil
import subprocess
import sys

import emulator
import pytest

HERE = pathlib.Path(__file__).resolve().parent
CHECKS = ["backward_runs_on_the_gpu", "float64_double_backward", "nan_and_infinities_as_torch",
          "strided_class_dim", "no_host_sync_in_a_training_step_and_errors_still_raised",
          "a_bad_target_whose_backward_launches_nothing_raises_at_the_next_sync", "launches_per_call",
          "gradient_written_by_the_forward", "debug_mode_raises_at_the_launch", "few_long_rows_split_over_blocks",
          "row_clusters_keep_long_rows_on_chip",
          "bfloat16_kernels", "grad_scaler_steps_without_a_host_sync", "scaled_loss_takes_the_forward_gradient",
          "linear_cross_entropy_chunks", "gpt_example_in_bfloat16_autocast", "gpt_step_launches"]


@pytest.fixture(scope="module")
def emulated():
    if not emulator.available() or shutil.which("g++") is None:
        pytest.skip(f"the CUDA emulator ({emulator.CUEMU}; GPUGRAD_CUEMU) or g++ is not available")
    run = subprocess.run([sys.executable, str(HERE / "cuda_emulated_checks.py")], capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CHECKS)
def test_gpu_path_emulated(emulated, name):
    assert name in emulated["checks"], f"the check {name} did not run"
    failure = emulated["checks"][name]
    assert failure is None, failure


def test_every_emulated_check_is_listed(emulated):
    assert sorted(emulated["checks"]) == sorted(CHECKS)
