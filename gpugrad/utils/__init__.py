"""gpugrad.utils: data loading (torch.utils.data's names) and the safetensors format;
``gpugrad.utils.tensorboard`` (SummaryWriter) is imported on its own, as torch's, since it
needs the tensorboard package."""

from gpugrad.utils import (
    data,
    safetensors,
)
