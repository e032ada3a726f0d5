"""The torch twin of examples/gpt_model.py: the same file, run with its
gpugrad imports switched to torch (the one change a PyTorch user would
make the other way), so both libraries train the very same model code.

    from benchmarks.gpt_torch import load
    torch_gpt = load()            # a module with GPTConfig, GPT, SIZES on torch
"""

import functools
import pathlib
import re
import types

SOURCE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "gpt_model.py"


@functools.lru_cache(maxsize=None)
def load():
    source = SOURCE.read_text()
    source = re.sub(r"^import gpugrad as torch$", "import torch", source, flags=re.M)
    source = re.sub(r"^from gpugrad(\.| )", r"from torch\1", source, flags=re.M)
    module = types.ModuleType("gpt_model_torch")
    module.__file__ = str(SOURCE)
    exec(compile(source, str(SOURCE), "exec"), module.__dict__)  # noqa: S102 (our own example's source)
    return module


def copy_weights(ours, theirs):
    """Give the torch model the gpugrad model's weights (same names)."""
    import torch
    state = {k: torch.from_numpy(v.detach().cpu().numpy().copy()) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
