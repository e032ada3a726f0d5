"""The older, deprecated spellings ``torch.cuda.amp.autocast(...)``,
``torch.cpu.amp.GradScaler(...)``, ...: the region and the scaler of one
device type, with torch's FutureWarning (gpugrad/cuda/amp.py and
gpugrad/cpu/amp.py make them)."""

import warnings

from gpugrad.amp import autocast_mode, grad_scaler


def aliases(device_type):
    """(autocast, GradScaler) classes bound to ``device_type``, as torch.<device>.amp's."""

    class autocast(autocast_mode.autocast):
        __doc__ = f"``gpugrad.{device_type}.amp.autocast(...)`` = ``gpugrad.autocast('{device_type}', ...)``."

        def __init__(self, enabled=True, dtype=None, cache_enabled=True):
            warnings.warn(f"`gpugrad.{device_type}.amp.autocast(args...)` is deprecated (as in torch). Please use "
                          f"`gpugrad.amp.autocast('{device_type}', args...)` instead.", FutureWarning, stacklevel=2)
            super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    class GradScaler(grad_scaler.GradScaler):
        __doc__ = f"``gpugrad.{device_type}.amp.GradScaler(...)`` = ``gpugrad.amp.GradScaler('{device_type}', ...)``."

        def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                     enabled=True):
            warnings.warn(f"`gpugrad.{device_type}.amp.GradScaler(args...)` is deprecated (as in torch). Please use "
                          f"`gpugrad.amp.GradScaler('{device_type}', args...)` instead.", FutureWarning, stacklevel=2)
            super().__init__(device_type, init_scale, growth_factor, backoff_factor, growth_interval, enabled)

    module = f"gpugrad.{device_type}.amp"
    for cls in (autocast, GradScaler):
        cls.__module__, cls.__qualname__ = module, cls.__name__
    return autocast, GradScaler
