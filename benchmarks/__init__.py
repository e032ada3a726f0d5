"""gpugrad's benchmark suite: gpugrad against PyTorch on the same machine in
the same run.  ``python -m benchmarks --help``."""
