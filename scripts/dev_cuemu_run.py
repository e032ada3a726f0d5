"""Developer tool: the CUDA emulator's kernel matrix (cuemu's ``run.py``) on this checkout.

    python scripts/dev_cuemu_run.py [run.py's options: --quick, --filter REGEX, --jobs N, -v, ...]
    make kernels-emulated [RUN_ARGS="--quick"]

``run.py`` (in the emulator's folder, tests/emulator.py says where: GPUGRAD_CUEMU,
by default the team's beside the checkout) launches each fused kernel through
the index ``gpugrad/cuda/fused.py`` over many shapes, layouts and special
values, on a minimal CuPy stand-in of its own (cuemu.py's ``FakeCupy``).  The
launchers call plain CuPy, and that stand-in lacks some of what they call:
device attributes and the compute capability, ``cuda.get_current_stream``,
``cuda.alloc_pinned_memory`` (the error word), ``broadcast_to``, an array's
``.data.ptr``, a kernel's ``shared_size_bytes``, and an address passed as a
64-bit integer to a pointer parameter (which CuPy passes as is).  CuPy has no
call the stand-in answers for any of these (save ``broadcast_to``), so this
tool supplies them, as the emulator's full stand-in ``fakecupy.py`` models them
(an H100, or an A100 under CUEMU_ARCH=80), and then runs ``run.py`` unchanged;
its worker processes run this file too, so each gets the same additions.

Nothing in gpugrad imports this file and no user needs it (a user's clone has
no emulator); it changes nothing on disk.
"""

import os
import pathlib
import sys

import numpy

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from emulator import CUEMU  # noqa: E402  (the one place that says where the emulator is)

RUN_PY = CUEMU / "run.py"


def complete_stand_in():
    """Give cuemu.py's CuPy stand-in what gpugrad's launchers call on CuPy."""
    sys.path.insert(0, str(CUEMU))
    import cuemu
    import fakecupy  # imported only for its device model; not installed as cupy

    def device_model(device):
        return fakecupy.Device(device.id)

    cuemu._Device.attributes = property(lambda self: device_model(self).attributes)
    cuemu._Device.compute_capability = property(lambda self: device_model(self).compute_capability)
    cuemu._Cuda.get_current_stream = staticmethod(fakecupy.get_current_stream)
    cuemu._Cuda.alloc_pinned_memory = staticmethod(fakecupy.alloc_pinned_memory)
    cuemu.DeviceArray.data = property(lambda self: fakecupy.MemoryPointer(self.__array_interface__["data"][0]))
    cuemu.FakeCupy.broadcast_to = lambda self, a, shape: numpy.broadcast_to(a, shape, subok=True)
    cuemu.Function.shared_size_bytes = property(lambda self: self.static_shared_bytes)

    launch = cuemu.Function.__call__

    def call(self, grid, block, args, shared_mem=0, stream=None):
        # CuPy passes a 64-bit integer's bytes to any parameter, a pointer included (an address)
        args = [cuemu.RawPointer(arg) if pointee and _is_address(arg) else arg
                for arg, (_, pointee) in zip(args, self.params)] + list(args[len(self.params):])
        return launch(self, grid, block, args, shared_mem, stream)

    cuemu.Function.__call__ = call


def _is_address(arg):
    if isinstance(arg, bool):
        return False
    if isinstance(arg, int):
        return True
    return isinstance(arg, numpy.integer) and arg.dtype.itemsize == 8


def main():
    if not RUN_PY.is_file():
        sys.exit(f"no CUDA emulator at {CUEMU} (set GPUGRAD_CUEMU to its folder)")
    complete_stand_in()
    if "--worker" not in sys.argv and not any(a == "--kernels" or a.startswith("--kernels=") for a in sys.argv):
        sys.argv[1:1] = ["--kernels", str(ROOT / "kernels"), "--project", str(ROOT)]
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    # run.py as __main__, with __file__ naming this tool: its workers start this file, so they are completed too
    namespace = {"__name__": "__main__", "__file__": str(pathlib.Path(__file__).resolve())}
    sys.path.insert(0, str(CUEMU))
    exec(compile(RUN_PY.read_text(), str(RUN_PY), "exec"), namespace)


if __name__ == "__main__":
    main()
