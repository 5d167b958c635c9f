"""Probe fitting speed: Adam's per-tensor loop against foreach, and probe jobs one at a time against
side by side (probes.run_jobs), on synthetic codes shaped like a sprites run's.

  python benchmarks/bench_probes.py [--reps 3] [--epochs 4]

Part 1 times seconds per probe epoch for each optimizer setting, the two alternating within each
repetition, after one warm-up fit each; median of --reps. Part 2 fits the same list of jobs with one
worker and with one per core, checks that the results are equal, and prints both wall times.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from dvgan.eval import probes

N, CLASSES = 3825, 51   # a sprites test split's probe-train part and its identities
DIMS = (64, 128, 3072)  # s, z (mu) and raw pixels of the default model on 32x32 RGB


def _codes(dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, N)
    x = rng.normal(size=(N, dim)).astype(np.float32)
    x[:, :8] += 0.05 * y[:, None]  # a weak label signal, so early stopping behaves as on real codes
    return x, y


def _adam(foreach: bool):
    base = torch.optim.Adam

    def make(params, lr, **kw):
        return base(params, lr=lr, foreach=foreach)
    return make


def optimizer_epochs(reps: int, epochs: int) -> None:
    real = probes.torch.optim.Adam
    try:
        for dim in DIMS:
            x, y = _codes(dim)
            times = {False: [], True: []}
            for rep in range(reps + 1):  # the first round is the warm-up
                for foreach in (False, True):
                    probes.torch.optim.Adam = _adam(foreach)
                    t = time.perf_counter()
                    _, ran = probes.fit_mlp(x, y, max_epochs=epochs, patience=epochs + 1)
                    if rep:
                        times[foreach].append((time.perf_counter() - t) / ran)
            loop, fused = (statistics.median(times[k]) for k in (False, True))
            print(f"dim {dim:5d}: s/epoch per-tensor {loop:.3f}, foreach {fused:.3f} (ratio {loop / fused:.2f})")
    finally:
        probes.torch.optim.Adam = real


def side_by_side(epochs: int) -> None:
    jobs = []
    for dim in DIMS:
        x, y = _codes(dim, seed=dim)
        half = N * 3 // 4
        jobs += [(probes.classify, (x[:half], y[:half], x[half:], y[half:]), {"seed": sd, "max_epochs": epochs})
                 for sd in range(2)]
    walls = {}
    results = {}
    for workers in (1, None):
        t = time.perf_counter()
        results[workers] = probes.run_jobs(jobs, workers=workers)
        walls[workers] = time.perf_counter() - t
    same = results[1] == results[None]
    print(f"{len(jobs)} probe jobs: one at a time {walls[1]:.1f} s, side by side {walls[None]:.1f} s "
          f"(ratio {walls[1] / walls[None]:.2f}); results equal: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    optimizer_epochs(args.reps, args.epochs)
    side_by_side(args.epochs)


if __name__ == "__main__":
    main()
