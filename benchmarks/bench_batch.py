"""Throughput of Engine.swap and Engine.sample against batch size (1 to 4096), as a table and a PNG.

    python benchmarks/bench_batch.py [--backend onnxruntime] [--reps 5] [--png benchmarks/engine_batch.png]

The sprites model at the paper's size (s 64, z 512; random weights) on this machine's CPU. swap at
batch B: B specified and B unspecified images, paired (encodes 2B images, decodes B); sample at batch
B: one image, n = B.
Batches over the bundle's max_batch (256) are cut by the engine, except that the torch backend's fused
swap and sample take torch_backend.SWAP_CHUNK rows per call. Median of --reps calls.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

from bench_engine import make_bundle, median_time

BATCHES = (1, 4, 16, 64, 256, 1024, 4096)


def main():
    from dvgan.config import ModelConfig
    from dvgan.engine import Engine
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--png", default="benchmarks/engine_batch.png")
    args = p.parse_args()
    cfg = ModelConfig(z_dim=512)  # the size the recorded numbers were measured at
    rows = []
    with tempfile.TemporaryDirectory() as work:
        eng = Engine.load(make_bundle(cfg, work), args.backend, "cpu")
        rng = np.random.default_rng(0)
        pool = rng.uniform(-1, 1, (2 * max(BATCHES), 3, 32, 32)).astype(np.float32)
        for b in BATCHES:
            reps = args.reps if b <= 1024 else max(3, args.reps)
            t_swap = median_time(lambda: eng.swap(pool[:b], pool[b:2 * b]), reps)
            t_sample = median_time(lambda: eng.sample(pool[0], b, seed=1), reps)
            rows.append((b, b / t_swap, b / t_sample))
            print(rows[-1], flush=True)
    print(f"\n{eng.backend.describe()}, sprites model s 64 z 512, median of {args.reps}")
    print(f"{'batch':>6} {'swap img/s':>11} {'sample img/s':>13}")
    for b, sw, sa in rows:
        print(f"{b:6d} {sw:11.0f} {sa:13.0f}")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dvgan.files import atomic_write
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="swap")
    ax.plot([r[0] for r in rows], [r[2] for r in rows], "s-", label="sample")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("images / s")
    ax.set_title(f"dvgan engine, {eng.backend.describe()}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
    atomic_write(args.png, lambda f: fig.savefig(f, format="png", dpi=90))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
