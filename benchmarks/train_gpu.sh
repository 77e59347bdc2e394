#!/usr/bin/env bash
# The trainer on a lent GPU: t5-small's shape from scratch on CommonsenseQA with PaLM's rationales,
# bf16; records examples/s, peak memory and held-out accuracy. Under 8 minutes on one H200-class GPU
# with the default 3000 steps. Needs a Python with a CUDA torch and labelmill installed, and
# ../shared/data/cqa beside the repo. Writes $OUT/gpu.json (or train-gpu-out/ when $OUT is unset).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
OUT_DIR="${OUT:-train-gpu-out}"
timeout 480 "$PYTHON" -m benchmarks.train_gpu --out "$OUT_DIR" --max-steps "${MAX_STEPS:-3000}"
