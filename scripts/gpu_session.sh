#!/usr/bin/env bash
# On a lent GPU machine (python3 with torch CUDA, cupy, pytest, tokenizers; no network),
# from the repository root; each mode fits one 10-minute call:
#   scripts/gpu_session.sh tests              # the CUDA half of the test suite against torch CUDA
#   scripts/gpu_session.sh bench [GROUP ...]  # the benchmark suite, torch.compile included (all groups,
#                                             # or these: losses linear_ce gpt softmax elementwise matmul
#                                             # mlp overhead); the record is rewritten after every case
#   scripts/gpu_session.sh quick [GROUP ...]  # the same without torch.compile (faster)
#   scripts/gpu_session.sh gpt [STEPS]        # the GPT example (small) on the GPU, then the same script on
#                                             # torch (python -m benchmarks.gpt_torch): wall time, final loss
#   scripts/gpu_session.sh memory [STEPS [SIZE]]  # 10,000 training steps (small), GPU memory in use at
#                                             # every 1000th; training stops at 7.5 minutes with what it has
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
  tests) python3 -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$out/test-gpu.log" ;;
  bench) python3 -m benchmarks --out "$out" "${only[@]}" 2>&1 | tee "$out/bench.log" ;;
  quick) python3 -m benchmarks --no-compile --out "$out" "${only[@]}" 2>&1 | tee "$out/bench.log" ;;
  gpt)
    steps=${1:-3000}
    train gpt-gpugrad python3 examples/train_gpt.py --size small --steps "$steps"
    train gpt-torch python3 -m benchmarks.gpt_torch --size small --steps "$steps" ;;
  memory)
    steps=${1:-10000}
    train gpt-memory python3 examples/train_gpt.py --size "${2:-small}" --steps "$steps" --eval-interval 1000 \
      --eval-batches 2 --sample '' --max-minutes 7.5 ;;
  *) echo "usage: $0 tests | bench [GROUP ...] | quick [GROUP ...] | gpt [STEPS] | memory [STEPS [SIZE]]" >&2
     exit 2 ;;
esac
