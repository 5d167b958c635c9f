"""Training speed: a sprites run with the sprites recipe, and the share of step time spent outside
the forward and backward passes (data sampling, metrics, checkpoints, swap grids).

  python benchmarks/bench_train.py [--steps 2000] [--config configs/sprites.toml]
  python benchmarks/bench_train.py --compare 75edd9d --config configs/sprites-warp.toml --steps 400 --reps 3
  python benchmarks/bench_train.py --compare 75edd9d --own-config --config configs/sprites-warp.toml --steps 400 --reps 3
  python benchmarks/bench_train.py --compare HEAD --config configs/sprites-warp.toml --set train.zadv_steps=17 --steps 400

Wraps the two Algorithm 1 step functions with timers inside a real `train()` call, so the
overhead figure is measured on the same run as the total.

--compare REF trains the same recipe for the same steps with the code of commit REF (checked out
into a temporary git worktree and imported from there, with this environment's packages) and with
this tree, alternating REF and this code, and prints each one's steps/s (from metrics.jsonl, first
logged step to last, so start-up and data generation are left out), the medians and their ratio.
With --own-config each code trains the config file at --config's path in its own tree instead: the
recipe as each commit ships it (say, the demo's), so a cheaper recipe counts with the faster code.
With --set TABLE.FIELD=VALUE (repeatable) only this tree's runs change the recipe so: against
--compare HEAD, what a change of recipe costs a step.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import dvgan.train.loop as loop
from dvgan.train.recipe import build_configs


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def cpu_model() -> str:
    """The 'model name' line of /proc/cpuinfo with its cpu family and model numbers, which tell apart
    generations that share a name (the platform's processor string elsewhere)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    return f"{fields['model name']} (cpu family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def logged_pace(run_dir: str) -> float:
    """Steps/s of a finished run between its first and last logged step (metrics.jsonl), so start-up and
    data generation are left out."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    first, last = rows[0], rows[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"])


def steps_per_s(tree: str, config: str, steps: int, out: str, overrides=()) -> float:
    """Train the recipe (with overrides, TABLE.FIELD=VALUE each) with the dvgan found in tree; its logged_pace."""
    env = {**os.environ, "PYTHONPATH": tree}
    sets = [arg for o in overrides for arg in ("--set", o)]
    subprocess.run([sys.executable, "-m", "dvgan.cli.train", "--config", config, "--steps", str(steps),
                    "--seed", "0", "--out", out, "--no-progress", "-q", *sets], env=env, check=True, cwd=tree)
    return logged_pace(out)


def compare(ref: str, config: str, steps: int, reps: int, own_config: bool = False, overrides=()) -> None:
    config = os.path.abspath(config)
    relative = os.path.relpath(config, ROOT)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a killed run still removes its worktree
    with tempfile.TemporaryDirectory() as tmp:
        ref_tree = os.path.join(tmp, "ref")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-q", ref_tree, ref], check=True)
        try:
            trees, pace = {"ref": ref_tree, "this": ROOT}, {"ref": [], "this": []}
            for rep in range(reps):
                for name in ("ref", "this") if rep % 2 == 0 else ("this", "ref"):
                    recipe = os.path.join(trees[name], relative) if own_config else config
                    sets = overrides if name == "this" else ()
                    pace[name].append(steps_per_s(trees[name], recipe, steps, os.path.join(tmp, f"{name}-{rep}"), sets))
                    print(f"rep {rep + 1}/{reps} {name}: {pace[name][-1]:.2f} steps/s", flush=True)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", ref_tree], check=False)
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    ref_med, this_med = statistics.median(pace["ref"]), statistics.median(pace["this"])
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}")
    whose = "each commit's own version of " if own_config else ""
    changed = f"  this tree's runs with --set {' '.join(overrides)}" if overrides else ""
    print(f"recipe: {whose}{relative}  steps {steps}  reps {reps} (alternating){changed}")
    print("| code | steps/s, each rep | median |")
    print("|---|---|---|")
    print(f"| {ref} | {', '.join(f'{v:.2f}' for v in pace['ref'])} | {ref_med:.2f} |")
    print(f"| this tree ({head.strip()}) | {', '.join(f'{v:.2f}' for v in pace['this'])} | {this_med:.2f} |")
    print(f"ratio this / {ref}: {this_med / ref_med:.2f}x")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "sprites.toml"))
    ap.add_argument("--compare", metavar="REF", help="also train with the code of this commit, alternating")
    ap.add_argument("--reps", type=int, default=3, help="runs of each code with --compare")
    ap.add_argument("--own-config", action="store_true",
                    help="with --compare, each code trains its own commit's version of --config")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="TABLE.FIELD=VALUE",
                    help="with --compare, this tree's runs change the recipe so (repeatable)")
    args = ap.parse_args()
    if args.overrides and not args.compare:
        ap.error("--set needs --compare")
    if args.compare:
        return compare(args.compare, args.config, args.steps, args.reps, args.own_config, args.overrides)
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
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"recipe: {os.path.relpath(args.config)}  batch {tcfg.batch_size}  steps {args.steps}")
    print(f"| total wall (incl. data generation) | training loop | forward+backward+update | outside fwd/bwd | steps/s |")
    print(f"|---|---|---|---|---|")
    print(f"| {total:.1f} s | {loop_s:.1f} s | {step_s:.1f} s | {100 * (1 - step_s / loop_s):.1f}% | "
          f"{args.steps / loop_s:.2f} |")
    print(f"final losses: { {k: round(v, 4) for k, v in summary['losses'].items()} }")


if __name__ == "__main__":
    main()
