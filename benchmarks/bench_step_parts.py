"""What each critic costs in a training step of the demo's recipe (the warp recipe, demo.RECIPE).

  python benchmarks/bench_step_parts.py [--steps 30] [--reps 3]

Times one step of the recipe as it is, then with the image adversary at the default width (adv_width
32, where the recipe has 16), with the latent critic off (w_zadv 0), with one latent critic update
instead of five (zadv_steps 1), and with the image adversary off (w_gan 0). Each row is
the median of --reps timings of --steps steps after 10 warm-up steps, on torch's default threads; the
variants run one after another, so compare them as ratios within one run.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch

from dvgan import demo
from dvgan.config import ModelConfig, TrainConfig
from dvgan.train.loop import Trainer

VARIANTS = {  # name: (model changes, train changes)
    "the recipe": ({}, {}),
    "image adversary at the default width (adv_width 32)": ({"adv_width": 32}, {}),
    "no latent critic (w_zadv 0)": ({}, {"w_zadv": 0.0}),
    "one latent critic update (zadv_steps 1)": ({}, {"zadv_steps": 1}),
    "no image adversary (w_gan 0)": ({}, {"w_gan": 0.0}),
}


def seconds_per_step(model_changes: dict, train_changes: dict, steps: int, reps: int) -> float:
    model = ModelConfig(**{**demo.RECIPE["model"], **model_changes})
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(model, TrainConfig(**{**demo.RECIPE["train"], **train_changes}),
                          {"spec": "sprites:100"}, out, device="cpu")
        for _ in range(10):
            trainer.train_step()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            times.append((time.perf_counter() - t) / steps)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    base = None
    for name, (model_changes, train_changes) in VARIANTS.items():
        s = seconds_per_step(model_changes, train_changes, args.steps, args.reps)
        base = base or s
        print(f"{name:52s} {1000 * s:7.1f} ms/step  ({s / base:.2f} of the recipe)", flush=True)


if __name__ == "__main__":
    main()
