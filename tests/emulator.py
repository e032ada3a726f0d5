"""Where the CUDA emulator (cuemu: a stand-in for CuPy that runs the real
kernels on the CPU) is: the folder GPUGRAD_CUEMU names, by default the
team's ``../shared/tools/cuemu`` beside the checkout (the Makefile's
``test-emulated`` passes the same setting).  A user's clone has none: the
tests that need it are skipped."""

import os
import pathlib

CUEMU = pathlib.Path(os.environ.get("GPUGRAD_CUEMU")
                     or pathlib.Path(__file__).resolve().parents[2] / "shared" / "tools" / "cuemu")


def available():
    """True when the emulator's CuPy stand-in is there."""
    return (CUEMU / "fakecupy.py").is_file()
