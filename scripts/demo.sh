#!/usr/bin/env bash
# `make demo`: train the GPT example on the Python standard library, then print a sample.
# With an NVIDIA GPU: CuPy for the driver's CUDA (13 from driver 580 on, else 12) and the small
# model on the GPU; elsewhere the tiny model on the CPU (about 3 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
driver=""
if command -v nvidia-smi >/dev/null 2>&1; then
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n 1 || true)
fi
if [ -n "$driver" ]; then
    major=${driver%%.*}
    if [ "$major" -ge 580 ]; then extra=cuda13; else extra=cuda12; fi
    echo "NVIDIA GPU found (driver $driver): installing CuPy ($extra), training the small model on the GPU"
    "$PY" -m pip install -q -e ".[example,$extra]"
    if "$PY" -c "import sys, gpugrad; sys.exit(0 if gpugrad.cuda.is_available() else 1)"; then
        exec "$PY" examples/train_gpt.py --size small --device cuda
    fi
    echo "CuPy cannot use this GPU; training the tiny model on the CPU instead"
else
    echo "No NVIDIA GPU (no working nvidia-smi): training the tiny model on the CPU"
fi
exec "$PY" examples/train_gpt.py --size tiny --device cpu --max-minutes 2.5
