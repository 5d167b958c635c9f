"""Training speed: a sprites run with the sprites recipe, and the share of step time spent outside
the forward and backward passes (data sampling, metrics, checkpoints, swap grids).

  python benchmarks/bench_train.py [--steps 2000] [--config configs/sprites.toml]

Wraps the two Algorithm 1 step functions with timers inside a real `train()` call, so the
overhead figure is measured on the same run as the total.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import torch

import dvgan.train.loop as loop
from dvgan.cli.train import build_configs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--config", default=os.path.join(os.path.dirname(__file__), "..", "configs", "sprites.toml"))
    args = ap.parse_args()
    model, tcfg, data = build_configs(None, args.config, [f"train.steps={args.steps}"], {})
    inside = {"generator_step": 0.0, "adversary_step": 0.0}

    def timed(name, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                inside[name] += time.perf_counter() - t
        return wrapper

    loop.generator_step = timed("generator_step", loop.generator_step)
    loop.adversary_step = timed("adversary_step", loop.adversary_step)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        trainer_time = {}
        real_run = loop._run

        def run(trainer, *a, **k):  # time only the loop, not the data generation before it
            t = time.perf_counter()
            out = real_run(trainer, *a, **k)
            trainer_time["loop"] = time.perf_counter() - t
            return out

        loop._run = run
        summary = loop.train(model, tcfg, data, os.path.join(tmp, "run"), device="cpu", progress=False)
        total = time.perf_counter() - t0
    loop_s = trainer_time["loop"]
    step_s = inside["generator_step"] + inside["adversary_step"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"recipe: {os.path.relpath(args.config)}  batch {tcfg.batch_size}  steps {args.steps}")
    print(f"| total wall (incl. data generation) | training loop | forward+backward+update | outside fwd/bwd | steps/s |")
    print(f"|---|---|---|---|---|")
    print(f"| {total:.1f} s | {loop_s:.1f} s | {step_s:.1f} s | {100 * (1 - step_s / loop_s):.1f}% | "
          f"{args.steps / loop_s:.2f} |")
    print(f"final losses: { {k: round(v, 4) for k, v in summary['losses'].items()} }")


if __name__ == "__main__":
    main()
