#!/usr/bin/env bash
# Recipe sweep on a GPU machine (PyTorch with CUDA; no install step: the package runs from the tree).
# Data is carried in .data/ (copies of MNIST and ORL faces). Results land in $OUT/sweep.jsonl.
set -u
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
export PYTHONPATH="$PWD" SWEEP_THREADS=1 PYTHONUNBUFFERED=1
# Copy the results as they come, so a run stopped at its time limit still returns what finished.
(while sleep 5; do cp /tmp/sweep/sweep.jsonl "${OUT:-/tmp}/" 2>/dev/null; done) &
python3 benchmarks/sweep.py --grid benchmarks/grids/recipes.json --out /tmp/sweep --device cuda \
  --jobs "${JOBS:-10}" --data-root .data --budget "${BUDGET:-330}" | cut -c1-400
cp /tmp/sweep/sweep.jsonl "${OUT:-/tmp}/" 2>/dev/null
for r in /tmp/sweep/*/; do n=$(basename "$r"); ls "$r"samples/ >/dev/null 2>&1 && cp "$(ls -d "$r"samples/* | tail -1)" "${OUT:-/tmp}/$n.png" 2>/dev/null; done
true
