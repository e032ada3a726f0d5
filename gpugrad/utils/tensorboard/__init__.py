"""torch.utils.tensorboard: ``SummaryWriter`` on the ``tensorboard`` package
(``pip install 'gpugrad[tensorboard]'``)."""

try:
    import tensorboard  # noqa: F401
except ImportError:
    raise ImportError("gpugrad.utils.tensorboard needs the tensorboard package: "
                      "pip install 'gpugrad[tensorboard]' (or pip install tensorboard)") from None

from gpugrad.utils.tensorboard.writer import SummaryWriter

__all__ = ["SummaryWriter"]
