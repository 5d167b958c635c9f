"""Training steps/s of the default recipe on 1 and on all torch threads, on an idle machine and beside
one busy process (a one-thread matrix-multiply loop standing in for another job).

  python benchmarks/bench_busy.py [--steps 60] [--reps 3]

What `dvgan demo` decides on when other processes keep cores busy (demo._threads_for_free_cores).
Each cell is the median of --reps timings of --steps steps (after 5 warm-up steps); thread counts
alternate within each repetition so that both see the same machine.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from dvgan.config import ModelConfig, TrainConfig
from dvgan.train.loop import Trainer

BUSY = ("import torch, time\n"
        "torch.set_num_threads(1)\n"
        "a = torch.randn(512, 512)\n"
        "while True:\n"
        "    a = torch.tanh(a @ a)\n")


def steps_per_s(trainer: Trainer, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    for _ in range(5):
        trainer.train_step()
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    full = torch.get_num_threads()
    counts = sorted({1, full})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(ModelConfig(), TrainConfig(), {"spec": "sprites:100"}, tmp, device="cpu")
        rows = {}
        for machine in ("idle", "one busy process"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY]) if machine != "idle" else None
            try:
                if busy:
                    time.sleep(2)
                got = {n: [] for n in counts}
                for _ in range(args.reps):
                    for n in counts:
                        got[n].append(steps_per_s(trainer, n, args.steps))
                rows[machine] = {n: statistics.median(v) for n, v in got.items()}
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}")
    print(f"default recipe, batch {TrainConfig().batch_size}; steps/s, median of {args.reps} x {args.steps} steps")
    print("| machine | " + " | ".join(f"{n} thread(s)" for n in counts) + " |")
    print("|---|" + "---|" * len(counts))
    for machine, r in rows.items():
        print(f"| {machine} | " + " | ".join(f"{r[n]:.2f}" for n in counts) + " |")


if __name__ == "__main__":
    main()
