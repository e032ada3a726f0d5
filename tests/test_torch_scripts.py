"""PyTorch scripts run unchanged but for their imports: each script in
``torch_scripts/`` (tutorial and example idioms) runs once with torch and once
with its imports switched to gpugrad; both print the same words and, within
float32 rounding, the same numbers.  All the scripts run in one process per
library, the two at once (``run_torch_scripts.py``)."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
from run_torch_scripts import switch_imports

HERE = pathlib.Path(__file__).parent
SCRIPTS = sorted((HERE / "torch_scripts").glob("*.py"))
ROOT = HERE.parent
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|inf|nan)")


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    """{library: {script: {"stdout", "error", "seconds"}}}, the two libraries run at once."""
    directory = tmp_path_factory.mktemp("torch_scripts")
    env = {"PYTHONPATH": f"{ROOT}", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    runs = {}
    for library in ("torch", "gpugrad"):
        out = directory / f"{library}.json"
        runs[library] = (out, subprocess.Popen([sys.executable, str(HERE / "run_torch_scripts.py"), library, str(out),
                                                *map(str, SCRIPTS)], cwd=directory, env=env,
                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    results = {}
    for library, (out, process) in runs.items():
        log, _ = process.communicate(timeout=900)
        assert process.returncode == 0, f"the {library} run failed:\n{log[-5000:]}"
        results[library] = json.loads(out.read_text())
    return results


def _tokens(text):
    text = re.sub(r"0x[0-9a-f]+", "0x?", text).replace("gpugrad", "torch")
    return [(m.group(), True) if _NUMBER.fullmatch(m.group()) else (m.group(), False)
            for m in re.finditer(r"[-+]?[\w.+-]+|\S", text)]


def test_switch_imports_touches_only_import_lines():
    source = ("import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\nimport torch.utils.data\n"
              "x = torch.ones(2)\n")
    assert switch_imports(source) == ("import gpugrad as torch\nimport gpugrad.nn as nn\n"
                                      "from gpugrad.utils.data import DataLoader\nimport gpugrad.utils.data\n"
                                      "x = torch.ones(2)\n")


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_script_prints_what_torch_prints(script, printed):
    theirs_run, ours_run = printed["torch"][script.stem], printed["gpugrad"][script.stem]
    assert theirs_run["error"] is None, f"{script.name} fails under torch:\n{theirs_run['error']}"
    assert ours_run["error"] is None, f"{script.name} fails under gpugrad:\n{ours_run['error']}"
    expected, actual = theirs_run["stdout"], ours_run["stdout"]
    ours, theirs = _tokens(actual), _tokens(expected)
    assert len(ours) == len(theirs), f"outputs differ:\n--- gpugrad\n{actual}\n--- torch\n{expected}"
    for (a, a_num), (e, e_num) in zip(ours, theirs):
        context = f"gpugrad printed {a!r} where torch printed {e!r}:\n--- gpugrad\n{actual}\n--- torch\n{expected}"
        if a_num and e_num:
            assert float(a) == pytest.approx(float(e), rel=2e-4, abs=1e-6, nan_ok=True), context
        else:
            assert a == e, context
