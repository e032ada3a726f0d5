"""Developer tool: the emulator's memory-traffic profiler and time MODEL (cuemu's
``memtraffic_gpugrad.py``) on this checkout, with the two changes the figures
of benchmarks/README.md (issue 29) were measured with.

    python scripts/dev_memtraffic.py --shapes 65536x10 --dtypes float32,bfloat16 --skip-kernels --budget 700000
    python scripts/dev_memtraffic.py --from-json t.json          # the model again on saved traffic
    (any of memtraffic_gpugrad.py's options; --project defaults to this checkout)

``memtraffic_gpugrad.py`` (in the emulator's folder, tests/emulator.py says
where: GPUGRAD_CUEMU, by default the team's beside the checkout) runs the real
kernels on the CPU, records every global-memory access of each launch, and puts
an occupancy and time MODEL of an H100 and an H200 on top (its docstring and
``MODEL`` name the assumptions).  This tool runs it unchanged but for three
changes, made in its module before ``main()``:

(a) ``coverage_scale``: a sampled launch is scaled to the whole grid by the
    share of the logits its blocks read.  A launch whose blocks read far less
    than the logits (cross-entropy's and log-sum-exp's check of the upstream
    gradient: 8 bytes a block) would then count as a whole read of the logits;
    it is scaled by the blocks run instead (``memtraffic.Profile.scale``).
(b) ``model_launch``: the script's latency formula follows common.cuh's
    ``traverse`` (row groups of lanes); kernels named ``*_span_*`` (short rows
    by spans: common.cuh's ``SpanLoad`` and ``store_span``, a thread per row)
    get one of their own, ``span_latency`` below: per span, one DRAM round per
    SPAN_UNROLL (4) vectors a thread loads (the spans of a kernel's inputs in
    flight together), three barriers and three shared-memory round trips; and
    once per launch, for cross-entropy's forward (cross_entropy.cu's
    SpanExchange), the loss's exchange: the block's partial (one group sum),
    its ticket (an atomic's L2 round trip: the partials carry their launch's
    tag, so no fence comes before it), and the last block's read of the
    partials (an L2 round trip) and their sum (a group sum); under 'mean' with
    the gradient in the forward, the denominator: the arrival word (read in
    the ticket's L2 round trip) broadcast by a barrier through shared memory,
    with weights or several spans a block the share's group sum (and with
    several spans a DRAM round for their targets), with weights the slots' read
    (an L2 round trip) and their sum (a group sum).  The claim of a block's own
    slot is an L2 round trip in flight with its span's loads.  Other kernels
    keep the script's formula.
(c) ``model_launch`` again: the script charges a row cluster's merge as its
    split-row merge (a fence and an atomic, then one L2 round trip per chunk
    in a serial loop) and charges it to the log-sum-exp and cross-entropy
    forwards only.  Row cluster launches (``Profile.cluster`` larger than one
    block, kept in the summary as "cluster"; in a saved --json without it, a
    launch of several chunks whose kernel name ends in a cluster size) get
    ``cluster_latency`` below, from common.cuh's ``cluster_merge``: per row, a
    cluster.sync(), one distributed-shared-memory round trip (lane k of warp
    0 reads block k's slot: all S at once), a warp's merge of the S states and
    a barrier to hand the result on; a cluster.sync() once at the end
    (``cluster_done``); both the sync and the distributed-shared-memory read
    taken as an L2 round trip (CLUSTER_SYNC_S, DSMEM_S: assumptions, no
    figure of ours).  The rest follows the script's formulas per kernel
    (rounds of loads over a chunk, the block's reduction, the second pass from
    shared memory), softmax's included, with these differences for the
    cross-entropy forward: the row's loads go out with the target's (only
    label smoothing, which these calls do not use, reads x_t first; x_t is
    read after the row, from L2, while the reductions run), the mean's
    denominator is a group sum (the script's block tree for other launches),
    and a grid of one cluster writes the loss from the first block's thread 0
    (no last-block sum: no fence, no atomic); a grid of several clusters
    pays the last-block sum (two group sums, a fence and an atomic).

Everything about time, occupancy and % of peak is a MODEL, not a measurement;
bytes, sectors and launches are measured on the emulator.  Nothing in gpugrad
imports this file and no user needs it (a user's clone has no emulator); it
changes nothing on disk but the files its options name.
"""

import math
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from emulator import CUEMU  # noqa: E402  (the one place that says where the emulator is)

SCRIPT = CUEMU / "memtraffic_gpugrad.py"
SPAN_UNROLL = 4            # common.cuh: vectors in flight per thread of SpanLoad
FAR_LESS = 1 / 16          # (a): a launch reading under this share of the logits is scaled by blocks
# (b): the arguments of the span kernels whose accesses say what a launch did (their positions in
# cross_entropy_span_forward's parameter list): the exchange (written: the loss's), the mean's denominator
# (written with dx: the gradient in the forward under 'mean'), dx, the class weights (read)
CE_SPAN_ARGS = {"weight": 4, "dx": 13, "denominator": 14, "exchange": 15}
# (c): a cluster.sync() and a distributed-shared-memory read, each taken as an L2 round trip (assumptions)
CLUSTER_SYNC_S = None      # None: the script's MODEL["l2_latency_s"]
DSMEM_S = None


def load_script():
    """memtraffic_gpugrad.py as a module (its folder on sys.path, as when it runs)."""
    if not SCRIPT.is_file():
        sys.exit(f"no CUDA emulator at {CUEMU} (set GPUGRAD_CUEMU to its folder)")
    sys.path.insert(0, str(CUEMU))
    import memtraffic_gpugrad
    return memtraffic_gpugrad


def coverage_scale_by_blocks(original):
    """(a): the script's coverage_scale, but by the blocks run for a sampled launch whose blocks read far
    less than the logits (extrapolated by blocks, under FAR_LESS of them)."""
    def coverage_scale(launches, primary_bytes):
        out = original(launches, primary_bytes)
        for k, p in enumerate(launches):
            if p.blocks_run == p.total_blocks or not p.ranges:
                continue
            best = max(p.ranges, key=lambda rid: p.ranges[rid]["unique_read_bytes"])
            if p.ranges[best]["unique_read_bytes"] * p.scale < FAR_LESS * primary_bytes:
                out[k] = p.scale
        return out
    return coverage_scale


def span_facts(p):
    """What a span launch did, from the arguments it wrote and read: {"loss_sum", "denominator", "with_dx",
    "weights"}."""
    base = p.name.split("<")[0]
    written = {rid for rid, r in p.ranges.items() if r["unique_write_bytes"] or r["kinds"].get("atomic")}
    read = {rid for rid, r in p.ranges.items() if r["unique_read_bytes"]}
    if base == "cross_entropy_span_forward":
        with_dx = CE_SPAN_ARGS["dx"] in written
        return {"loss_sum": CE_SPAN_ARGS["exchange"] in written, "with_dx": with_dx,
                "denominator": with_dx and CE_SPAN_ARGS["denominator"] in written,
                "weights": CE_SPAN_ARGS["weight"] in read}
    return {"loss_sum": False, "denominator": False, "with_dx": False, "weights": False}


def summarize_with_span_facts(original):
    def summarize_launch(p, scale, resources, gpu_name, memtraffic):
        s = original(p, scale, resources, gpu_name, memtraffic)
        if "_span_" in p.name:
            s["span"] = span_facts(p)
        s["cluster"] = list(getattr(p, "cluster", (1, 1, 1)))
        return s
    return summarize_launch


def cluster_blocks(s):
    """(c): the blocks of a launch's row cluster (1: none)."""
    if "cluster" in s:
        return math.prod(s["cluster"])
    last = s["kernel"].rstrip(">").split(",")[-1].strip()
    return int(last) if "," in s["kernel"] and last.isdigit() and s["grid"][1] == int(last) else 1


def cluster_latency(s, rows, cols, itemsize, gpu_name, module):
    """(c): the latency chain of a row cluster launch (seconds) and its parts."""
    M = module.MODEL
    base = s["kernel"].split("<")[0]
    gx, splits = s["grid"][0], s["grid"][1]
    lanes = s["block"][0]
    chunk = -(-cols // splits)
    per_vector = 16 // itemsize
    misaligned = (cols * itemsize) % 16 != 0 or (chunk * itemsize) % 16 != 0
    rounds = max(module.traverse_rounds(chunk, 0, lanes, per_vector),
                 module.traverse_rounds(chunk, per_vector - 1, lanes, per_vector) if misaligned else 0)
    L, L2, smem, barrier, level = (M["dram_latency_s"], M["l2_latency_s"], M["smem_latency_s"], M["barrier_s"],
                                   M["shuffle_level_s"])
    sync = L2 if CLUSTER_SYNC_S is None else CLUSTER_SYNC_S
    dsmem = L2 if DSMEM_S is None else DSMEM_S
    levels = int(math.log2(min(lanes, 32))) if lanes > 1 else 0
    reduce = levels * level + ((5 * level + 2 * barrier + 2 * smem) if lanes > 32 else 0.0)
    merge = sync + dsmem + 5 * level + barrier + smem       # cluster_merge, per row
    g = s["gpu"][gpu_name]
    dram_reread = max(0.0, g["dram_read"] - s["read_sectors"] * 32)
    hit = 1.0 - (dram_reread / s["reread_bytes"] if s["reread_bytes"] else 0.0)
    second = smem if s["shared_mem"] else hit * L2 + (1 - hit) * L     # the second pass (the script's)
    once = {"cluster_done": sync}
    if base == "cross_entropy_forward":
        with_dx = s.get("with_dx", False)
        t_group = rounds * L + reduce + merge + (rounds * second if with_dx else 0.0)
        if with_dx:                                         # the mean's denominator (charged under 'sum' too)
            once["denominator"] = -(-rows // lanes) * L2 + reduce
        if gx > 1:
            once["loss_sum"] = 2 * reduce + M["atomic_fence_s"]
    elif base in ("softmax_forward", "softmax_backward"):
        t_group = rounds * L + reduce + merge + rounds * second
    else:                                                   # logsumexp_forward (dx from shared memory)
        t_group = rounds * L + reduce + merge
    concurrent = g["concurrent_blocks"]
    waves = -(-(gx * splits) // max(1, concurrent))
    groups_per_block = -(-rows // gx)
    t_lat = waves * groups_per_block * t_group + sum(once.values())
    return t_lat, {"rounds": rounds, "waves": waves, "groups_per_block": groups_per_block, "t_group": t_group,
                   "merge": merge, "once": once}


def span_latency(s, rows, cols, itemsize, gpu_name, M):
    """(b): the latency chain of a span kernel's launch (seconds) and its parts."""
    base = s["kernel"].split("<")[0]
    per_span, blocks = s["block"][0], s["grid"][0]
    vector = 16 // itemsize
    spans = -(-rows // per_span)
    spans_per_block = -(-spans // blocks)
    span_rows = min(rows, per_span)
    vectors = -(-(span_rows * cols) // vector)
    per_thread = -(-vectors // per_span)            # each input's span: the inputs' loads in flight together
    rounds = -(-per_thread // SPAN_UNROLL)
    L, L2, smem, barrier = M["dram_latency_s"], M["l2_latency_s"], M["smem_latency_s"], M["barrier_s"]
    t_span = rounds * L + 3 * (barrier + smem)
    # a group sum over the block: one pass of warp shuffles, two barriers, two shared-memory round trips
    group_sum = int(math.log2(32)) * M["shuffle_level_s"] + 2 * (barrier + smem)
    facts = s.get("span", {})
    once = 0.0
    parts = {}
    if base == "cross_entropy_span_forward":
        if facts.get("loss_sum"):
            # the block's partial, its ticket, the last block's read of the partials and their sum
            parts["loss_sum"] = group_sum + L2 + L2 + group_sum
        if facts.get("denominator"):
            # the arrival word (read in the ticket's round trip), broadcast; the share's sum with weights or
            # several spans a block (and their targets' DRAM round); the weight slots read and added
            d = barrier + smem
            if facts.get("weights") or spans_per_block > 1:
                d += group_sum + (L if spans_per_block > 1 else 0.0)
            if facts.get("weights"):
                d += L2 + group_sum
            parts["denominator"] = d
        once = sum(parts.values())
    concurrent = s["gpu"][gpu_name]["concurrent_blocks"]
    waves = -(-blocks // max(1, concurrent))
    t_lat = waves * spans_per_block * t_span + once
    return t_lat, {"rounds": rounds, "waves": waves, "groups_per_block": spans_per_block, "t_group": t_span,
                   "once": parts}


def model_with_spans(original, module):
    def model_launch(s, rows, cols, itemsize, gpu_name, gpu, memtraffic):
        if "_span_" not in s["kernel"]:
            return original(s, rows, cols, itemsize, gpu_name, gpu, memtraffic)
        M = module.MODEL
        t_lat, parts = span_latency(s, rows, cols, itemsize, gpu_name, M)
        g = s["gpu"][gpu_name]
        t_bw = (g["dram_read"] + g["dram_write"]) / (gpu["copy_fraction"] * gpu["peak"])
        return {"t": M["launch_s"] + max(t_bw, t_lat), "t_bw": t_bw, "t_lat": t_lat,
                "bound": "bandwidth" if t_bw >= t_lat else "latency", **parts}
    return model_launch


def model_with_clusters(original, module):
    def model_launch(s, rows, cols, itemsize, gpu_name, gpu, memtraffic):
        if cluster_blocks(s) <= 1:
            return original(s, rows, cols, itemsize, gpu_name, gpu, memtraffic)
        t_lat, parts = cluster_latency(s, rows, cols, itemsize, gpu_name, module)
        g = s["gpu"][gpu_name]
        t_bw = (g["dram_read"] + g["dram_write"]) / (gpu["copy_fraction"] * gpu["peak"])
        return {"t": module.MODEL["launch_s"] + max(t_bw, t_lat), "t_bw": t_bw, "t_lat": t_lat,
                "bound": "bandwidth" if t_bw >= t_lat else "latency", **parts}
    return model_launch


def install(module):
    """Make (a), (b) and (c) in the script's module."""
    module.coverage_scale = coverage_scale_by_blocks(module.coverage_scale)
    module.summarize_launch = summarize_with_span_facts(module.summarize_launch)
    module.model_launch = model_with_clusters(model_with_spans(module.model_launch, module), module)
    return module


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--from-json" not in argv and not any(a == "--project" or a.startswith("--project=") for a in argv):
        argv[:0] = ["--project", str(ROOT)]
    module = install(load_script())
    saved = sys.argv
    sys.argv = [str(SCRIPT)] + argv
    try:
        module.main()
    finally:
        sys.argv = saved


if __name__ == "__main__":
    main()
