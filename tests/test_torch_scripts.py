"""PyTorch scripts run unchanged but for their imports: each script in
``torch_scripts/`` (tutorial and example idioms) runs once with torch and once
with its imports switched to gpugrad; both print the same words and, within
float32 rounding, the same numbers."""

import pathlib
import re
import subprocess
import sys

import pytest

SCRIPTS = sorted((pathlib.Path(__file__).parent / "torch_scripts").glob("*.py"))
ROOT = pathlib.Path(__file__).resolve().parents[1]
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)")


def switch_imports(source):
    """The one change a user makes: ``import torch`` becomes ``import gpugrad as
    torch``, ``from torch.x import y`` becomes ``from gpugrad.x import y`` (import
    lines only; the rest of the script is untouched)."""
    lines = []
    for line in source.splitlines():
        line = re.sub(r"^(\s*)import torch$", r"\1import gpugrad as torch", line)
        line = re.sub(r"^(\s*)import torch((?:\.\w+)+) as ", r"\1import gpugrad\2 as ", line)
        line = re.sub(r"^(\s*)from torch(\.| )", r"\1from gpugrad\2", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _run(source, cwd):
    path = cwd / "script.py"
    path.write_text(source)
    done = subprocess.run([sys.executable, str(path)], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, f"{path} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


def _tokens(text):
    text = re.sub(r"0x[0-9a-f]+", "0x?", text).replace("gpugrad", "torch")
    return [(m.group(), True) if _NUMBER.fullmatch(m.group()) else (m.group(), False)
            for m in re.finditer(r"[-+]?[\w.+-]+|\S", text)]


def test_switch_imports_touches_only_import_lines():
    source = "import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\nx = torch.ones(2)\n"
    assert switch_imports(source) == ("import gpugrad as torch\nimport gpugrad.nn as nn\n"
                                      "from gpugrad.utils.data import DataLoader\nx = torch.ones(2)\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_prints_what_torch_prints(script, tmp_path):
    source = script.read_text()
    (tmp_path / "torch").mkdir()
    (tmp_path / "gpugrad").mkdir()
    expected = _run(source, tmp_path / "torch")
    actual = _run(switch_imports(source), tmp_path / "gpugrad")
    ours, theirs = _tokens(actual), _tokens(expected)
    assert len(ours) == len(theirs), f"outputs differ:\n--- gpugrad\n{actual}\n--- torch\n{expected}"
    for line_no, ((a, a_num), (e, e_num)) in enumerate(zip(ours, theirs)):
        context = f"gpugrad printed {a!r} where torch printed {e!r}:\n--- gpugrad\n{actual}\n--- torch\n{expected}"
        if a_num and e_num:
            assert float(a) == pytest.approx(float(e), rel=2e-4, abs=1e-6, nan_ok=True), context
        else:
            assert a == e, context
