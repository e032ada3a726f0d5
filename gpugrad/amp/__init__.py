"""Mixed precision: :class:`autocast` and :class:`GradScaler` (torch.amp)."""

from gpugrad.amp.autocast_mode import (
    autocast,
    get_autocast_dtype,
    is_autocast_enabled,
)
from gpugrad.amp.grad_scaler import GradScaler

__all__ = [
    "autocast",
    "GradScaler",
    "get_autocast_dtype",
    "is_autocast_enabled",
]
