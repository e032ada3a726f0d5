"""gpugrad's benchmark suite: gpugrad against PyTorch on the same machine in
the same run.  ``python -m benchmarks --help``."""

import sys


def require_torch():
    """Exit with the command that installs torch when this Python has none: every
    benchmark compares with it, and ``make demo`` installs only the example's extra."""
    try:
        import torch  # noqa: F401 (imported here to say what to install when it is missing)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        raise SystemExit(
            "The benchmarks measure gpugrad against PyTorch, which this Python does not have "
            f"({sys.executable}).  Install the benchmarks' extra (torch, matplotlib, tqdm) from the clone:\n"
            f"    {sys.executable} -m pip install -e '.[bench]'\n"
            "or run `make bench`, which installs it into .venv.")
