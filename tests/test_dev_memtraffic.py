"""scripts/dev_memtraffic.py, the developer tool behind benchmarks/README.md's
issue-29 model figures: it loads the emulator's memtraffic_gpugrad.py and
replaces two of its functions.  Checked here without emulating a launch (a run
at any shape first compiles every kernel with NVRTC, minutes): the replaced
functions on made-up launches, in a subprocess (the script puts the emulator's
folder first on sys.path).  Skipped where the emulator is not there."""

import os
import subprocess
import sys

import pytest
from emulator import CUEMU

CHECK = r"""
import sys, types
sys.path.insert(0, sys.argv[1])
import dev_memtraffic as tool
module = tool.install(tool.load_script())
M, gpu = module.MODEL, {"copy_fraction": 0.9, "peak": 3.35e12}

def summary(kernel, grid, block, span=None):
    s = {"kernel": kernel, "grid": [grid, 1, 1], "block": [block, 1, 1],
         "gpu": {"H100 SXM": {"dram_read": 2.6e6, "dram_write": 2.6e6, "concurrent_blocks": 264}}}
    if span is not None:
        s["span"] = span
    return s

# (b) a span kernel: 65536 rows of 10 floats, 256 spans of 256 rows, one wave; a vector round, three barriers
# and three shared-memory trips a span; the loss's exchange (a group sum, the ticket's L2 round trip, the last
# block's read and sum) and under 'mean' the arrival word's broadcast (with weights: the share's and the slots'
# sums, and their read)
facts = {"loss_sum": True, "denominator": True, "with_dx": True, "weights": False}
mean = module.model_launch(summary("cross_entropy_span_forward<float, long long>", 256, 256, facts),
                           65536, 10, 4, "H100 SXM", gpu, None)
span = M["dram_latency_s"] + 3 * (M["barrier_s"] + M["smem_latency_s"])
group_sum = 5 * M["shuffle_level_s"] + 2 * (M["barrier_s"] + M["smem_latency_s"])
loss_sum = 2 * group_sum + 2 * M["l2_latency_s"]
broadcast = M["barrier_s"] + M["smem_latency_s"]
assert abs(mean["t_lat"] - (span + loss_sum + broadcast)) < 1e-12, mean
assert mean["t"] == M["launch_s"] + max(mean["t_lat"], mean["t_bw"])
assert mean["bound"] == ("latency" if mean["t_lat"] > mean["t_bw"] else "bandwidth")
weighted = module.model_launch(summary("cross_entropy_span_forward<float, long long>", 256, 256,
                                       dict(facts, weights=True)), 65536, 10, 4, "H100 SXM", gpu, None)
assert abs(weighted["t_lat"] - (mean["t_lat"] + 2 * group_sum + M["l2_latency_s"])) < 1e-12, weighted
several = module.model_launch(summary("cross_entropy_span_forward<float, long long>", 128, 256, facts),
                              65536, 10, 4, "H100 SXM", gpu, None)           # two spans a block
assert abs(several["t_lat"] - (2 * span + loss_sum + broadcast + group_sum + M["dram_latency_s"])) < 1e-12, several
total = module.model_launch(summary("cross_entropy_span_forward<float, long long>", 256, 256,
                                    dict(facts, denominator=False)), 65536, 10, 4, "H100 SXM", gpu, None)
assert abs(total["t_lat"] - (span + loss_sum)) < 1e-12, total
two = module.model_launch(summary("softmax_span_forward<float, false>", 128, 256), 65536, 10, 4, "H100 SXM", gpu,
                          None)
assert abs(two["t_lat"] - 2 * span) < 1e-12, two            # two spans a block
# other kernels keep the script's formula
assert "rounds" in module.model_launch(summary("logsumexp_forward<float>", 1024, 4) | {"shared_mem": 0,
    "reread_bytes": 0, "read_sectors": 0}, 65536, 10, 4, "H100 SXM", gpu, None)

# (a) a sampled launch reading 8 bytes a block is scaled by blocks, one reading rows by their share
def profile(read, blocks_run=8, total_blocks=64):
    return types.SimpleNamespace(ranges={0: {"unique_read_bytes": read}}, blocks_run=blocks_run,
                                 total_blocks=total_blocks, scale=total_blocks / blocks_run)
scales = module.coverage_scale([profile(64), profile(1 << 19), profile(64, 64, 64)], 1 << 23)
assert scales == [8.0, 16.0, 1.0], scales
print("ok")
"""


def test_dev_memtraffic_replaces_the_scale_and_the_span_model():
    if not (CUEMU / "memtraffic_gpugrad.py").is_file():
        pytest.skip(f"the CUDA emulator ({CUEMU}; GPUGRAD_CUEMU) is not available")
    scripts = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
    run = subprocess.run([sys.executable, "-c", CHECK, scripts], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), (run.stdout + run.stderr)[-4000:]
