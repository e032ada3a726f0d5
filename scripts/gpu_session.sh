#!/usr/bin/env bash
# On a lent GPU machine (python3 with torch CUDA, cupy, pytest; no network),
# from the repository root:
#   scripts/gpu_session.sh tests     # the CUDA half of the test suite against torch CUDA
#   scripts/gpu_session.sh bench     # the full benchmark suite (torch.compile included)
#   scripts/gpu_session.sh quick     # the benchmark without torch.compile (faster)
# Logs and results go under $OUT (the device tool brings them back), else ./gpu-results.
set -uo pipefail
out=${OUT:-gpu-results}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv > "$out/gpu.csv" 2>&1
case "${1:-tests}" in
  tests) python3 -m pytest -q -m cuda -p no:cacheprovider 2>&1 | tee "$out/test-gpu.log" ;;
  bench) python3 -m benchmarks --out "$out" 2>&1 | tee "$out/bench.log" ;;
  quick) python3 -m benchmarks --no-compile --out "$out" 2>&1 | tee "$out/bench.log" ;;
  *) echo "usage: $0 tests|bench|quick" >&2; exit 2 ;;
esac
