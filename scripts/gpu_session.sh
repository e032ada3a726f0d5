#!/usr/bin/env bash
# On a lent GPU machine (python3 with torch CUDA, cupy, pytest, tokenizers; no network),
# from the repository root; each mode fits one 10-minute call:
#   scripts/gpu_session.sh tests              # the CUDA half of the test suite against torch CUDA: in
#                                             # TEST_WORKERS (8) processes where pytest-xdist is installed
#                                             # (112 s with 12 on the H200), each test stopped after
#                                             # TEST_TIMEOUT (120) s where pytest-timeout is
#   scripts/gpu_session.sh bench [GROUP ...]  # the benchmark suite, torch.compile included (all groups,
#                                             # or these: losses linear_ce gpt softmax elementwise matmul
#                                             # mlp overhead); the record is rewritten after every case
#   scripts/gpu_session.sh quick [GROUP ...]  # the same without torch.compile (faster)
#   scripts/gpu_session.sh gpt [STEPS]        # the GPT example (small) on the GPU, then the same script on
#                                             # torch (python -m benchmarks.gpt_torch): wall time, final loss
#   scripts/gpu_session.sh memory [STEPS [SIZE]]  # 10,000 training steps (small), GPU memory in use at
#                                             # every 1000th; training stops at 7.5 minutes with what it has
#   scripts/gpu_session.sh all [PHASE:SECONDS ...]  # a 15-minute lease: all four above in one 10-minute call, each
#                                             # cut short by its own time limit (tests in parallel with
#                                             # pytest-xdist, the bench without torch.compile, 1000 GPT steps,
#                                             # memory for 1.2 minutes); everything in $OUT/results.tar.gz.
#                                             # PHASE: tests bench probe kernels gpt memory (GPT_STEPS,
#                                             # MEMORY_MINUTES)
#   scripts/gpu_session.sh kernels            # the fused losses' kernels under ncu: time, DRAM bytes
#   scripts/gpu_session.sh probe              # scripts/gpu_probe.py, the kernel tests it covers, and
#                                             # compute-sanitizer racecheck/initcheck on it (~90 s)
# Logs and results go under $OUT (the device tool brings them back), else ./gpu-results.
# A 30-minute session, one call each: tests; bench losses; bench softmax elementwise matmul mlp overhead
# linear_ce gpt; gpt; memory (issue 8's points 1-5 in that order).
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv > "$out/gpu.csv" 2>&1
mode=${1:-tests}
shift || true
only=()
[ $# -gt 0 ] && only=(--only "$@")
runs=/tmp/gpugrad-runs      # checkpoints stay here (too large to bring back); figures and plots go to $out

train() {   # name, command...: run, keep the log, the figures and the curves
  local name=$1
  shift
  "$@" --out "$runs/$name" --quiet 2>&1 | tee "$out/$name.log"
  cp "$runs/$name"/*.json "$out/$name.json" 2>/dev/null
  cp "$runs/$name"/*.png "$out/$name.png" 2>/dev/null
}

case "$mode" in
  tests)
    args=(-q -m cuda -p no:cacheprovider)
    python3 -c "import xdist" 2>/dev/null && args+=(-n "${TEST_WORKERS:-8}")
    python3 -c "import pytest_timeout" 2>/dev/null && args+=(--timeout "${TEST_TIMEOUT:-120}")
    python3 -m pytest "${args[@]}" 2>&1 | tee "$out/test-gpu.log" ;;
  bench) python3 -m benchmarks --out "$out" "${only[@]}" 2>&1 | tee "$out/bench.log" ;;
  quick) python3 -m benchmarks --no-compile --out "$out" "${only[@]}" 2>&1 | tee "$out/bench.log" ;;
  gpt)
    steps=${1:-3000}
    train gpt-gpugrad python3 examples/train_gpt.py --size small --steps "$steps"
    train gpt-torch python3 -m benchmarks.gpt_torch --size small --steps "$steps" ;;
  memory)
    steps=${1:-10000}
    train gpt-memory python3 examples/train_gpt.py --size "${2:-small}" --steps "$steps" --eval-interval 1000 \
      --eval-batches 2 --sample '' --max-minutes "${MEMORY_MINUTES:-7.5}" ;;
  probe)      # scripts/gpu_probe.py plainly, the failing kernel tests one process, then under compute-sanitizer
    python3 scripts/gpu_probe.py --repeats 3 2>&1 | tee "$out/probe.log"
    timeout 90 python3 -m pytest -q -p no:cacheprovider --timeout 60 \
      "tests/test_nn_functional.py::test_cross_entropy_at_extreme_logits" \
      "tests/test_nn_functional.py::test_cross_entropy_second_derivatives" \
      "tests/test_ops_fused.py::test_logsumexp_sum_backward_is_one_launch" \
      tests/test_cuda_kernels.py -k "extreme or second or one_launch or (test_cross_entropy and 65536)" 2>&1 \
      | tee "$out/probe-tests.log" | tail -15
    for tool in racecheck initcheck; do
      timeout 75 compute-sanitizer --tool "$tool" --print-limit 20 python3 scripts/gpu_probe.py --quick --repeats 1 \
        > "$out/sanitizer-$tool.log" 2>&1
      echo "--- $tool rc=$?"; grep -v "^=========     \|^ *$" "$out/sanitizer-$tool.log" | tail -25 | cut -c1-220
    done ;;
  kernels)    # each fused loss's kernels under Nsight Compute: time and DRAM bytes per case (gpu_kernels.py)
    ncu --clock-control none --profile-from-start off --csv --page raw \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      python3 scripts/gpu_kernels.py > "$out/ncu.csv" 2> "$out/ncu.log"
    echo "ncu rc=$?"; tail -3 "$out/ncu.log"; wc -l "$out/ncu.csv" ;;
  all)
    here=$0
    work=/tmp/gpugrad-all
    rm -rf "$work"; mkdir -p "$work"
    pack() { tar czf "$out/results.tar.gz.tmp" -C "$work" . && mv "$out/results.tar.gz.tmp" "$out/results.tar.gz"; }
    phase() {   # name, seconds, mode args...
      local name=$1 limit=$2
      shift 2
      echo "=== $name (limit ${limit}s) $(date -u +%T)"
      local t0=$SECONDS
      OUT="$work/$name" timeout -k 5 "$limit" bash "$here" "$@" > "$work/$name.out" 2>&1
      echo "=== $name rc=$? in $((SECONDS - t0))s"
      pack
    }
    { nvidia-smi; python3 -m pip list 2>/dev/null | grep -Ei '^(torch|cupy|numpy|ml.dtypes|pytest|tokenizers) '; } \
      > "$work/machine.txt" 2>&1
    python3 -c "import gpugrad, cupy; print('gpugrad cuda', gpugrad.cuda.is_available(), cupy.cuda.runtime.getDeviceCount())" \
      >> "$work/machine.txt" 2>&1
    tail -3 "$work/machine.txt"
    # the phases and their limits in seconds: `all tests:115 gpt:70 ...` (default: all four, 10 minutes)
    [ $# -gt 0 ] || set -- tests:210 bench:130 gpt:130 memory:95
    for item in "$@"; do
      case "${item%%:*}" in
        tests) TEST_WORKERS=12 phase tests "${item#*:}" tests ;;
        bench) phase bench "${item#*:}" quick ;;
        probe) phase probe "${item#*:}" probe ;;
        kernels) phase kernels "${item#*:}" kernels ;;
        gpt) phase gpt "${item#*:}" gpt "${GPT_STEPS:-1000}" ;;
        memory) MEMORY_MINUTES=${MEMORY_MINUTES:-1.2} phase memory "${item#*:}" memory 10000 ;;
        *) echo "unknown phase $item" >&2 ;;
      esac
    done
    grep -h "rel\|FAILED\|passed\|failed" "$work"/probe/probe.log "$work"/probe.out 2>/dev/null | tail -25 | cut -c1-160
    for f in tests/test-gpu.log gpt/gpt-gpugrad.log gpt/gpt-torch.log memory/gpt-memory.log bench/bench.log; do
      echo "--- $f"; tail -n 12 "$work/$f" 2>/dev/null | cut -c1-200
    done ;;
  *) echo "usage: $0 tests | bench [GROUP ...] | quick [GROUP ...] | gpt [STEPS] | memory [STEPS [SIZE]] | all | probe" >&2
     exit 2 ;;
esac
