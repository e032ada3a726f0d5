"""Every kernels/*.cu compiles for sm_80 and sm_90 without a GPU.

NVRTC (what cupy.RawModule runs at run time), with exactly the runtime's
options (KERNELS.md): fails on a compile error, on any warning, on register
spills, and on a name expression that does not lower.  nvcc cross-checks the
same instantiations where it is installed.  On a GPU machine the real
RawModules are built and every entry point fetched.
"""

import pathlib
import re
import shutil
import subprocess

import pytest

from gpugrad.cuda import kernels, launch

ARCHS = ["sm_80", "sm_90"]
FILES = sorted(kernels.INSTANTIATIONS)
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
REGISTERS = re.compile(r"Used (\d+) registers")
ENTRY = re.compile(r"Compiling entry function '([^']+)'")
MAX_THREADS = 512   # the kernels' __launch_bounds__ and the launcher's largest block
# The row forwards compiled for two blocks of MAX_THREADS per SM (common.cuh, forward_min_blocks): at most
# 64 registers on every arch, so that warp-per-row launches hold 32 warps per SM (the row clusters and
# double take one block)
TWO_BLOCKS = re.compile(r"(cross_entropy|logsumexp)_forward<(float|__half|__nv_bfloat16)(, (int|long long))?>")
# The row cluster forwards (a cluster size last), launched with up to launch.CLUSTER_THREADS threads a block
CLUSTER_FORWARDS = re.compile(r"(cross_entropy|logsumexp)_forward<[^<>]*, \d+>")


def test_every_kernel_file_is_instantiated():
    on_disk = sorted(p.name for p in kernels.kernel_dir().glob("*.cu"))
    assert on_disk == FILES


def _check_ptxas_log(log, what):
    assert "error" not in log.lower(), f"{what}:\n{log}"
    assert "warning" not in log.lower(), f"{what} has warnings:\n{log}"
    spills = [(int(a), int(b)) for a, b in SPILLS.findall(log)]
    assert spills, f"{what}: no ptxas resource report in the log:\n{log}"
    assert all(a == 0 and b == 0 for a, b in spills), f"{what} spills registers:\n{log}"
    for registers in map(int, REGISTERS.findall(log)):
        assert registers * MAX_THREADS <= 65536, f"{what}: {registers} registers x {MAX_THREADS} threads"


def _registers_per_entry(log, lowered):
    """{name expression: registers} from a ptxas -v log (entries named by their lowered names)."""
    registers, entry = {}, None
    for line in log.splitlines():
        found = ENTRY.search(line)
        if found:
            entry = lowered.get(found.group(1))
            continue
        found = REGISTERS.search(line)
        if found and entry is not None:
            registers[entry] = int(found.group(1))
            entry = None
    assert set(registers) == set(lowered.values()), f"no register count for {set(lowered.values()) - set(registers)}"
    return registers


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_nvrtc_compiles_like_the_runtime(filename, arch):
    try:
        from cupy._core import core
        from cupy.cuda import nvrtc
        nvrtc.getVersion()
    except Exception as error:   # cupy or NVRTC missing: install the kernel-check extra
        pytest.skip(f"NVRTC not available ({error}); pip install 'gpugrad[kernel-check]'")
    options = core.assemble_cupy_compiler_options(kernels.options()) + (
        "-ftz=true", f"-arch={arch}", "--device-as-default-execution-space",
        "-Xptxas=-v", "-Xptxas=-warn-spills")
    program = nvrtc.createProgram(kernels.source(filename), filename, [], [])
    try:
        for name in kernels.INSTANTIATIONS[filename]:
            nvrtc.addNameExpression(program, name)
        try:
            nvrtc.compileProgram(program, list(options))
        except nvrtc.NVRTCError as error:
            pytest.fail(f"NVRTC failed on {filename} for {arch}: {error}\n{nvrtc.getProgramLog(program)}")
        log = nvrtc.getProgramLog(program)
        _check_ptxas_log(log, f"{filename} ({arch}, NVRTC)")
        lowered = {}
        for name in kernels.INSTANTIATIONS[filename]:
            mangled = nvrtc.getLoweredName(program, name)
            assert mangled, name
            lowered[mangled] = name
        registers = _registers_per_entry(log, lowered)
        print(f"{filename} ({arch}) registers:", ", ".join(f"{n} {r}" for n, r in registers.items()))
        for name, count in registers.items():
            if TWO_BLOCKS.fullmatch(name):
                assert count * 2 * MAX_THREADS <= 65536, f"{name} ({arch}): {count} registers, 2 blocks of 512"
            if CLUSTER_FORWARDS.fullmatch(name):
                assert count * launch.CLUSTER_THREADS <= 65536, (
                    f"{name} ({arch}): {count} registers x {launch.CLUSTER_THREADS} threads")
        assert nvrtc.getCUBIN(program)
    finally:
        nvrtc.destroyProgram(program)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", FILES)
def test_nvcc_compiles(filename, arch, tmp_path):
    nvcc = shutil.which("nvcc") or ("/usr/local/bin/nvcc" if pathlib.Path("/usr/local/bin/nvcc").exists() else None)
    if nvcc is None:
        pytest.skip("nvcc not found: the NVRTC check above is the one that matters")
    wrapper = tmp_path / f"check_{filename}"
    refs = "\n".join(f"    (void)&{name};" for name in kernels.INSTANTIATIONS[filename])
    wrapper.write_text(f'#include "{filename}"\nvoid gpugrad_instantiate() {{\n{refs}\n}}\n')
    result = subprocess.run(
        [nvcc, "-cubin", f"-arch={arch}", "--std=c++17", "-ftz=true", "-Xptxas", "-v",
         "-Xptxas", "-warn-spills", f"-I{kernels.kernel_dir()}", str(wrapper), "-o", str(tmp_path / "out.cubin")],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    _check_ptxas_log(result.stdout + result.stderr, f"{filename} ({arch}, nvcc)")


@pytest.mark.cuda
@pytest.mark.parametrize("filename", FILES)
def test_raw_module_builds_on_the_gpu(filename):
    from gpugrad.cuda import current_device
    for name in kernels.INSTANTIATIONS[filename]:
        assert kernels.get_function(filename, name, current_device()) is not None
