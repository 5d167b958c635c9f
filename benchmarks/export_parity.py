"""Export parity and time: train briefly on sprites, export with --fp16, print the measured errors.

For each (image size, channels, trunk) at the paper's Sprites code sizes (s 64, z 512), trains
--steps steps on CPU, runs export_bundle(fp16=True) and prints one table row from the manifest:
fp32 max abs error against PyTorch, fp16 image max abs error and smallest code cosine against fp32,
and the export's wall time.

  python benchmarks/export_parity.py --steps 20 --out /tmp/export_parity
"""
from __future__ import annotations

import argparse
import os
import time

from dvgan.config import ModelConfig, TrainConfig
from dvgan.export import export_bundle, load_manifest
from dvgan.train.loop import train

VARIANTS = [(32, 3, "conv5"), (64, 3, "conv5"), (64, 1, "conv3"), (32, 1, "conv3")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--out", default="/tmp/export_parity")
    args = ap.parse_args()
    print("| size | ch | trunk | fp32 max abs | fp16 image max abs | fp16 code min cosine | export s |")
    print("|---|---|---|---|---|---|---|")
    for size, channels, trunk in VARIANTS:
        run = os.path.join(args.out, f"{size}-{channels}-{trunk}")
        train(ModelConfig(image_size=size, channels=channels, s_dim=64, z_dim=512, trunk=trunk, width=args.width,
                          adv_width=args.width),
              TrainConfig(steps=args.steps, batch_size=16, sample_every=0, ckpt_every=args.steps),
              {"spec": "sprites:12"}, run, device="cpu", progress=False)
        started = time.perf_counter()
        bundle = export_bundle(run, fp16=True)
        seconds = time.perf_counter() - started
        ver = load_manifest(bundle)["verification"]
        fp32 = max(v for g in ("encoder", "decoder") for v in ver["fp32"][g].values())
        img = ver["fp16"]["decoder"]["image"]["max_abs"]
        cos = min(v["min_cosine"] for v in ver["fp16"]["encoder"].values())
        print(f"| {size} | {channels} | {trunk} | {fp32:.2e} | {img:.2e} | {cos:.7f} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
