"""Data parallelism: :class:`DistributedDataParallel` (torch.nn.parallel's name)."""

from gpugrad.nn.parallel.distributed import DistributedDataParallel

__all__ = [
    "DistributedDataParallel",
]
