"""torch.cpu.amp: the older spellings of ``autocast("cpu")`` and
``GradScaler("cpu")``, deprecated in torch (a FutureWarning, as there)."""

from gpugrad.amp import deprecated

autocast, GradScaler = deprecated.aliases("cpu")

__all__ = ["autocast", "GradScaler"]
