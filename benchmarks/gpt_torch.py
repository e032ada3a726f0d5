"""The torch twins of examples/gpt_model.py and examples/train_gpt.py: the
same files, run with their gpugrad imports switched to torch (the one change
a PyTorch user would make the other way), so both libraries train the very
same model with the very same script.

    from benchmarks.gpt_torch import load
    torch_gpt = load()            # a module with GPTConfig, GPT, SIZES on torch

    python -m benchmarks.gpt_torch [train_gpt.py's options]   # the training script on torch
"""

import functools
import pathlib
import re
import sys
import types

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
SOURCE = EXAMPLES / "gpt_model.py"
TRAINER = EXAMPLES / "train_gpt.py"


@functools.lru_cache(maxsize=None)
def load():
    source = SOURCE.read_text()
    source = re.sub(r"^import gpugrad as torch$", "import torch", source, flags=re.M)
    source = re.sub(r"^from gpugrad(\.| )", r"from torch\1", source, flags=re.M)
    module = types.ModuleType("gpt_model_torch")
    module.__file__ = str(SOURCE)
    exec(compile(source, str(SOURCE), "exec"), module.__dict__)  # noqa: S102 (our own example's source)
    module.LOSS = "F.linear_cross_entropy"
    if not hasattr(module.F, "linear_cross_entropy"):      # torch before it (the GPU machines' 2.11, say)
        module.F = _WithReferenceLoss(module.F)
        module.LOSS = "cross_entropy(linear(...)) (this torch has no linear_cross_entropy)"
    return module


def load_trainer():
    """examples/train_gpt.py on torch: ``import gpugrad`` becomes ``import torch as
    gpugrad`` and the model comes from :func:`load`; a module with ``main(argv)``."""
    source = TRAINER.read_text()
    source, swapped = re.subn(r"^import gpugrad$", "import torch as gpugrad", source, flags=re.M)
    source, models = re.subn(r"^from gpt_model import (.*?)(\s+#.*)?$", r"from gpt_model_torch import \1", source,
                             flags=re.M)
    if swapped != 1 or models != 1:
        raise RuntimeError(f"{TRAINER} no longer has one 'import gpugrad' and one 'from gpt_model import'")
    module = types.ModuleType("train_gpt_torch")
    module.__file__ = str(TRAINER)
    sys.modules.setdefault("gpt_model_torch", load())
    exec(compile(source, str(TRAINER), "exec"), module.__dict__)  # noqa: S102 (our own example's source)
    return module


class _WithReferenceLoss:
    """torch.nn.functional plus linear_cross_entropy as torch documents it:
    cross_entropy(linear(input, weight), target)."""

    def __init__(self, functional):
        self._functional = functional

    def __getattr__(self, name):
        return getattr(self._functional, name)

    def linear_cross_entropy(self, input, linear_weight, target, options=None, **kwargs):
        return self._functional.cross_entropy(self._functional.linear(input, linear_weight), target, **kwargs)


def copy_weights(ours, theirs):
    """Give the torch model the gpugrad model's weights (same names)."""
    import torch
    state = {k: torch.from_numpy(v.detach().cpu().numpy().copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)


if __name__ == "__main__":
    from benchmarks import require_torch
    require_torch()
    load_trainer().main()
