"""How much of the pose a 32x32 LPC frame shows at all: action, direction and frame read from the raw
pixels and by a small CNN on the images, on the same items and split as `dvgan eval`'s pose probes from
z and s (the first probe protocol: the test characters' frames, part to fit, part to test).

  python benchmarks/lpc_pose_ceiling.py RUN        # RUN: any lpc run; its split.json picks the characters

The first frame of several actions is the same standing figure, so no code can read every action from
one frame: these numbers are the anchor beside the targets on z (direction 98%, action 95%).
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from dvgan import data as data_mod
from dvgan.eval import probes
from dvgan.eval.suite import FULL, probe_sets


def main(run_dir: str) -> None:
    with open(os.path.join(run_dir, "split.json")) as f:
        split = json.load(f)
    with open(os.path.join(run_dir, "config.json")) as f:
        spec = json.load(f)["data"]["spec"]
    data = data_mod.load(spec, image_size=32)
    sets = probe_sets(split, data.labels, FULL, seed=0)
    protocol = next(iter(sets))
    fit, held, _ = sets[protocol]
    images_fit, images_held = data.float_images(fit), data.float_images(held)
    names = data.factor_space.names
    jobs = []
    for f, name in enumerate(names):
        y_fit, y_held = data.factors[fit, f], data.factors[held, f]
        jobs.append((probes.classify, (images_fit.reshape(len(fit), -1), y_fit, images_held.reshape(len(held), -1), y_held),
                     {"seed": 0, "max_epochs": FULL["max_epochs"]}))
        jobs.append((probes.cnn_classify, (images_fit, y_fit, images_held, y_held),
                     {"seed": 0, "epochs": FULL["cnn_epochs"]}))
    results = probes.run_jobs(jobs)
    print(f"protocol {protocol}: {len(fit)} fit / {len(held)} test frames of {len(np.unique(data.labels[held]))} characters")
    print("| factor | accuracy, raw pixels (MLP) | accuracy, CNN on the images | chance accuracy |")
    print("|---|---|---|---|")
    for f, name in enumerate(names):
        mlp, cnn = results[2 * f], results[2 * f + 1]
        print(f"| {name} | {100 * (1 - mlp['test_error']):.1f}% | {100 * (1 - cnn['test_error']):.1f}% | "
              f"{100 * (1 - mlp['chance_error']):.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: python benchmarks/lpc_pose_ceiling.py RUN")
    main(sys.argv[1])
