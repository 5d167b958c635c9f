"""Two cores, two ways: one training process on two threads (the recipe's batch) against two processes of
one thread each under DistributedDataParallel on gloo (half the batch each: the same triplets a step).

  python benchmarks/bench_ddp.py [--steps 400] [--reps 3] [--config configs/sprites-warp.toml]

Each way trains the recipe for --steps steps from scratch, taking turns, --reps times; steps/s comes from
metrics.jsonl (first logged step to last, so start-up and data generation are left out). Prints each
rep, the medians, their ratio and the CPU model.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

from bench_train import cpu_model, logged_pace  # benchmarks/ is on the path when this runs as a script
from dvgan.train.recipe import build_configs


# way: (OMP threads per process, the command before dvgan.cli.train's own arguments, processes)
WAYS = {
    "one process, 2 threads": ("2", [sys.executable, "-m", "dvgan.cli.train"], 1),
    "two processes (DDP, gloo), 1 thread each": (
        "1", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              "-m", "dvgan.cli.train"], 2),
}


def recipe_batch(config: str) -> int:
    """The batch the recipe trains with, read as dvgan-train reads it."""
    return build_configs(None, config, (), {})[1].batch_size


def train(way: str, config: str, batch: int, steps: int, out: str) -> float:
    threads, command, processes = WAYS[way]
    if batch % processes:
        raise SystemExit(f"{config}: batch {batch} does not split over {processes} processes")
    args = ["--config", config, "--steps", str(steps), "--out", out, "--no-progress",
            "--set", f"train.batch_size={batch // processes}"]
    subprocess.run([*command, *args], env={**os.environ, "OMP_NUM_THREADS": threads}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return logged_pace(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--config", default="configs/sprites-warp.toml")
    args = ap.parse_args()
    ways, batch = tuple(WAYS), recipe_batch(args.config)
    rates = {w: [] for w in ways}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for i, way in enumerate(ways):
                rates[way].append(train(way, args.config, batch, args.steps, os.path.join(tmp, f"r{rep}-{i}")))
                print(f"rep {rep}: {way}: {rates[way][-1]:.2f} steps/s", flush=True)
    print(f"\n{cpu_model()}; {args.config}, {args.steps} steps, {args.reps} reps\n")
    print("| way | steps/s, each rep | median |\n|---|---|---|")
    for way in ways:
        print(f"| {way} | {', '.join(f'{r:.2f}' for r in rates[way])} | {statistics.median(rates[way]):.2f} |")
    one, two = (statistics.median(rates[w]) for w in ways)
    print(f"\nDDP against one process: {two / one:.2f}x")


if __name__ == "__main__":
    main()
