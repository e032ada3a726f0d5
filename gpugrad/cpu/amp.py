"""torch.cpu.amp: the older spellings of ``autocast("cpu")`` and
``GradScaler("cpu")``, deprecated in torch (a FutureWarning, as there)."""

import warnings

from gpugrad.amp import autocast_mode, grad_scaler


class autocast(autocast_mode.autocast):
    """``torch.cpu.amp.autocast(...)`` = ``gpugrad.autocast("cpu", ...)`` (bfloat16 by default)."""

    def __init__(self, enabled=True, dtype=None, cache_enabled=True):
        warnings.warn("`gpugrad.cpu.amp.autocast(args...)` is deprecated (as in torch). Please use "
                      "`gpugrad.amp.autocast('cpu', args...)` instead.", FutureWarning, stacklevel=2)
        super().__init__("cpu", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)


class GradScaler(grad_scaler.GradScaler):
    """``torch.cpu.amp.GradScaler(...)`` = ``gpugrad.amp.GradScaler("cpu", ...)``."""

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 enabled=True):
        warnings.warn("`gpugrad.cpu.amp.GradScaler(args...)` is deprecated (as in torch). Please use "
                      "`gpugrad.amp.GradScaler('cpu', args...)` instead.", FutureWarning, stacklevel=2)
        super().__init__("cpu", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


__all__ = ["autocast", "GradScaler"]
