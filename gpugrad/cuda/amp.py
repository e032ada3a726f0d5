"""torch.cuda.amp: the older spellings of ``autocast("cuda")`` and
``GradScaler("cuda")``, deprecated in torch (a FutureWarning, as there)."""

from gpugrad.amp import deprecated

autocast, GradScaler = deprecated.aliases("cuda")

__all__ = ["autocast", "GradScaler"]
