"""Run the scripts of ``tests/torch_scripts`` in one process (torch, or gpugrad
with each script's imports switched), so the corpus pays for one import of the
library instead of one per script: ``python run_torch_scripts.py
{torch,gpugrad} OUT.json SCRIPT...``.  Each script runs as ``__main__`` (a
module of its own, so what it pickles resolves) in a directory of its own,
with the library's global state reset between scripts; OUT.json maps each
script's name to what it printed, its traceback if it raised, and its
seconds (wall and CPU)."""

import contextlib
import io
import json
import os
import pathlib
import re
import sys
import tempfile
import time
import traceback
import types


def switch_imports(source):
    """The one change a user makes: ``import torch`` becomes ``import gpugrad as
    torch``, ``from torch.x import y`` becomes ``from gpugrad.x import y`` (import
    lines only; the rest of the script is untouched; ``import torch.utils.data``
    becomes ``import gpugrad.utils.data``, which the alias reaches)."""
    lines = []
    for line in source.splitlines():
        line = re.sub(r"^(\s*)import torch$", r"\1import gpugrad as torch", line)
        line = re.sub(r"^(\s*)import torch((?:\.\w+)+) as ", r"\1import gpugrad\2 as ", line)
        line = re.sub(r"^(\s*)import torch((?:\.\w+)+)$", r"\1import gpugrad\2", line)
        line = re.sub(r"^(\s*)from torch(\.| )", r"\1from gpugrad\2", line)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _reset(library):
    library.set_default_dtype(library.float32)
    library.set_grad_enabled(True)


def run(library_name, paths):
    library = __import__(library_name)
    results = {}
    main = sys.modules["__main__"]
    home = os.getcwd()
    for path in map(pathlib.Path, paths):
        source = path.read_text()
        if library_name == "gpugrad":
            source = switch_imports(source)
        module = types.ModuleType("__main__")
        module.__file__ = str(path)
        output = io.StringIO()
        started, cpu = time.perf_counter(), time.process_time()
        error = None
        with tempfile.TemporaryDirectory() as directory:
            os.chdir(directory)
            sys.modules["__main__"] = module
            try:
                with contextlib.redirect_stdout(output):
                    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 (the corpus' own scripts)
                if library_name == "gpugrad" and "torch" in sys.modules:
                    raise RuntimeError("the script imported torch itself (an import switch_imports missed)")
            except BaseException:        # noqa: BLE001 (a script's failure is its result)
                error = traceback.format_exc()
            finally:
                sys.modules["__main__"] = main
                os.chdir(home)
                _reset(library)
        results[path.stem] = {"stdout": output.getvalue(), "error": error,
                              "seconds": round(time.perf_counter() - started, 2),
                              "cpu_seconds": round(time.process_time() - cpu, 2)}
    return results


if __name__ == "__main__":
    name, out, *scripts = sys.argv[1:]
    pathlib.Path(out).write_text(json.dumps(run(name, scripts)))
