#!/usr/bin/env bash
# The engine's GPU benchmark in one invocation (about 3 to 5 minutes; hard limit 7 minutes).
# Needs python with torch (CUDA), onnx and onnxruntime; run from anywhere, no network.
# Prints the card's name and a short table last; writes it to $OUT/gpu_results.txt when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
exec timeout 420 "$PY" benchmarks/gpu/bench_gpu.py "$@"
