"""gpugrad.utils: data loading (torch.utils.data's names)."""

from gpugrad.utils import data
