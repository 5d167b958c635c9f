"""What each part of a training step of the demo's recipe (demo.RECIPE) costs, and what each way of
making the step faster gives.

  python benchmarks/bench_step_parts.py [--steps 30] [--reps 3] [--only NAME ...] [--set TABLE.KEY=VALUE ...]

Times one step of the recipe as it is and with each variant below: critics changed or taken out,
a narrower model, the warping decoder's templates drawn as before 6b2143d, and ways of running the
same arithmetic faster (torch.compile with inductor's CPU backend, channels_last memory format, Adam's
multi-tensor and fused updates, denormals flushed to zero, oneDNN off). Each timing is --steps steps
after 10 warm-up steps (torch.compile compiles during the warm-up); the variants take turns within each
of --reps rounds, so a change of the machine's load falls on all of them alike, and each row is the
median over the rounds, on torch's default threads. Compare them as ratios.
--set changes the recipe itself before the variants apply (say, model.width=32 for the recipe as it
was before its width went to 16).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time

import torch

from dvgan import demo
from dvgan.config import ModelConfig, TrainConfig
from dvgan.train.loop import Trainer
from dvgan.train.recipe import parse_overrides

from bench_train import cpu_model  # benchmarks/ is on the path when this runs as a script


def channels_last(trainer: Trainer) -> None:
    for module in (trainer.autoencoder, trainer.adversary):
        module.to(memory_format=torch.channels_last)
    images = trainer.float_images
    trainer.float_images = lambda index: images(index).contiguous(memory_format=torch.channels_last)


def compiled(trainer: Trainer) -> None:
    trainer.ae_run = torch.compile(trainer.autoencoder)
    trainer.adv_run = torch.compile(trainer.adversary)


def template_twice(trainer: Trainer) -> None:
    """The warping decoder's work as it was before commit 6b2143d: s2's template drawn a second time for
    its second image (Dec(z_prior, s2)), here drawn and left unused, which costs the same. (With the
    plain decoder, model.warp = false, nothing calls the template and it times the recipe again.)"""
    decoder = trainer.autoencoder.decoder
    draw = decoder.template

    def template(s: torch.Tensor) -> torch.Tensor:  # s1, s1', s2 of a triplet batch
        b = s.shape[0] // 3
        return draw(torch.cat([s, s[2 * b:]]))[:3 * b]
    decoder.template = template


@contextlib.contextmanager
def flush_denormal():
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def no_onednn():
    with torch.backends.mkldnn.flags(enabled=False):
        yield


def adam(**options):
    def change(trainer: Trainer) -> None:
        for name in ("opt_gen", "opt_adv"):  # the same groups (parameters, rates), a new update rule
            groups = [{**group, **options} for group in getattr(trainer, name).param_groups]
            setattr(trainer, name, torch.optim.Adam(groups))
    return change


VARIANTS = {  # name: (model changes, train changes, a change made to the built trainer[, a process-wide setting])
    "the recipe": ({}, {}, None),
    "image adversary at the default width (adv_width 32)": ({"adv_width": 32}, {}, None),
    "image adversary at width 8": ({"adv_width": 8}, {}, None),
    "no latent critic (w_zadv 0)": ({}, {"w_zadv": 0.0}, None),
    "one latent critic update (zadv_steps 1)": ({}, {"zadv_steps": 1}, None),
    "no image adversary (w_gan 0)": ({}, {"w_gan": 0.0}, None),
    "no prior samples for the adversary": ({}, {"adv_prior_fake": False, "gan_prior": False}, None),
    "model width 32": ({"width": 32}, {}, None),
    "model width 24": ({"width": 24}, {}, None),
    "model width 16": ({"width": 16}, {}, None),
    "s2's template drawn twice (as before 6b2143d)": ({}, {}, template_twice),
    "channels_last": ({}, {}, channels_last),
    "torch.compile (autoencoder and adversary)": ({}, {}, compiled),
    "Adam, multi-tensor (foreach)": ({}, {}, adam(foreach=True)),
    "Adam, fused": ({}, {}, adam(fused=True)),
    "denormals flushed to zero": ({}, {}, None, flush_denormal),
    "oneDNN off (torch's own convolutions)": ({}, {}, None, no_onednn),
}


def recipe_with(sets) -> dict:
    """demo.RECIPE with --set TABLE.KEY=VALUE changes: {"model": {...}, "train": {...}}."""
    changes = parse_overrides(sets)
    return {table: {**values, **changes.get(table, {})} for table, values in demo.RECIPE.items()}


def warm_trainer(recipe: dict, out: str, model_changes=None, train_changes=None, change=None) -> Trainer:
    """A Trainer of the recipe on the demo's data (sprites:100) writing to out, with the changes made and
    10 steps taken, so that what is timed next is neither first-call set-up nor compilation."""
    trainer = Trainer(ModelConfig(**{**recipe["model"], **(model_changes or {})}),
                      TrainConfig(**{**recipe["train"], **(train_changes or {})}),
                      {"spec": "sprites:100"}, out, device="cpu")
    if change is not None:
        change(trainer)
    for _ in range(10):
        trainer.train_step()
    return trainer


def seconds_per_step(recipe: dict, variant, steps: int) -> float:
    model_changes, train_changes, change, *setting = variant
    with (setting[0]() if setting else contextlib.nullcontext()), tempfile.TemporaryDirectory() as out:
        trainer = warm_trainer(recipe, out, model_changes, train_changes, change)
        t = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", nargs="+", metavar="NAME", help="the variants whose names start so (the recipe always runs)")
    ap.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="change one setting of the recipe (model.* or train.*), as dvgan-train --set")
    args = ap.parse_args()
    recipe = recipe_with(args.set)
    names = [n for n in VARIANTS if n == "the recipe" or not args.only or n.startswith(tuple(args.only))]
    print(f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f}; recipe: demo.RECIPE{' with ' + ' '.join(args.set) if args.set else ''}")
    times = {n: [] for n in names}
    for _ in range(args.reps):
        for name in names:
            times[name].append(seconds_per_step(recipe, VARIANTS[name], args.steps))
    base = statistics.median(times["the recipe"])
    for name in names:
        s = statistics.median(times[name])
        each = ", ".join(f"{1000 * t:.0f}" for t in times[name])
        print(f"{name:52s} {1000 * s:7.1f} ms/step ({each})  {base / s:.2f}x the recipe's speed", flush=True)


if __name__ == "__main__":
    main()
