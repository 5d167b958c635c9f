"""Where a training step of the demo's recipe (demo.RECIPE) spends its time.

  python benchmarks/profile_step.py [--steps 40] [--threads 2] [--top 20]

Runs --steps steps after 10 warm-up steps under torch.profiler and prints:
- the wall time per step, and the CPU time the process used per step (user + system, so 2.0x the wall
  means both cores were busy all the time);
- the share of the wall spent inside torch's operators (the self time of every profiled op on the
  calling thread; an op's own worker threads run within it) and the rest: Python, autograd bookkeeping
  and the optimizer's loop between the ops;
- the ops with the most self CPU time, and how many op calls one step makes;
- with --shapes N, the N convolution calls that take the most time, by input shape;
- the arithmetic of one step (torch.utils.flop_counter: convolutions and matrix products, forward and
  backward) and the rate it ran at, to compare with what the CPU's matrix products reach.
--set model.width=16 (and the like) profiles a variant of the recipe.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from bench_step_parts import recipe_with, warm_trainer  # benchmarks/ is on the path when this runs as a script
from bench_train import cpu_model


def matmul_rate(n: int = 2048, reps: int = 5) -> float:
    """GFLOP/s of torch's n x n float32 matrix product on this machine (the best of reps)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(reps))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--shapes", type=int, default=0, metavar="N",
                    help="also the N convolution calls (forward and backward) that take the most time, by input shape")
    ap.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="change one setting of the recipe (model.* or train.*), as dvgan-train --set")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as out:
        trainer = warm_trainer(recipe_with(args.set), out)
        # Unprofiled timing first: the profiler's own bookkeeping slows the step.
        t, c = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            trainer.train_step()
        wall, cpu = (time.perf_counter() - t) / args.steps, (time.process_time() - c) / args.steps
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes > 0) as prof:
            t = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            prof_wall = (time.perf_counter() - t) / args.steps
        with FlopCounterMode(display=False) as flops:
            trainer.train_step()
    events = prof.key_averages()
    # Self time of the leaf work; autograd's Python-visible nodes and optimizer wrappers have their own
    # self time too, so every event counts once.
    self_us = sum(e.self_cpu_time_total for e in events) / args.steps
    calls = sum(e.count for e in events) / args.steps
    print(f"wall {1000 * wall:.1f} ms/step ({1 / wall:.2f} steps/s); process CPU time {1000 * cpu:.1f} ms/step "
          f"= {cpu / wall:.2f} cores busy on average")
    print(f"under the profiler: wall {1000 * prof_wall:.1f} ms/step; ops' self CPU time {self_us / 1000:.1f} ms/step "
          f"({self_us / 1e6 / prof_wall:.0%} of the wall); {calls:.0f} op calls "
          f"per step ({1e6 * prof_wall / calls:.1f} us of wall per call)")
    gflop = flops.get_total_flops() / 1e9
    print(f"arithmetic: {gflop:.2f} GFLOP per step, run at {gflop / wall:.0f} GFLOP/s; a 2048^3 matrix product "
          f"runs at {matmul_rate():.0f} GFLOP/s here")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=48))
    if args.shapes:
        print_conv_shapes(prof, args.steps, args.shapes)


def print_conv_shapes(prof, steps: int, count: int) -> None:
    """The convolutions (forward: aten::convolution, backward: aten::convolution_backward) that take the
    most time, each input shape apart: which layers the step's time goes to."""
    convs = [e for e in prof.key_averages(group_by_input_shape=True)
             if e.key in ("aten::convolution", "aten::convolution_backward")]
    convs.sort(key=lambda e: -e.cpu_time_total)
    for e in convs[:count]:
        shapes = [shape for shape in e.input_shapes if shape][:3]  # input, weight or grad, ...
        print(f"{e.key:28s} {e.cpu_time_total / 1000 / steps:6.2f} ms/step  {shapes}")


if __name__ == "__main__":
    main()
