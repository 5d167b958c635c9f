"""The identity probe on s of one run, seed by seed, beside a nearest-class-mean read-out of the same codes:

  python benchmarks/probe_seeds.py RUN [RUN ...]

Per run: the evaluation's MLP probe (train-test protocol, the same items as `dvgan eval`) on s for probe
seeds 0, 1, 2, each test error in %; and the error of naming each test code by the training identity whose
mean s is nearest in cosine (`probes.nearest_class_mean`). A probe whose errors swing between seeds while the nearest mean
errs on none is the probe failing, not the code (benchmarks/RESULTS.md, "Faces: a probe kept underfit on
small sets"). For runs with a train-test protocol (within-identity splits: faces, MNIST).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from dvgan.eval import probes, suite


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[2].strip())
    torch.set_num_threads(1)
    for run_dir in sys.argv[1:]:
        run = suite.load_run(run_dir)
        labels = run["data"].labels
        fit, held, _ = suite.probe_sets(run["split"], labels, suite.FULL, 0)["train-test"]
        feat = suite.Features(run, np.concatenate([fit, held]), 0)
        s_fit, s_held = feat("s", fit), feat("s", held)
        mlp = [probes.classify(s_fit, labels[fit], s_held, labels[held], seed=sd)["test_error"] for sd in range(3)]
        nearest = probes.nearest_class_mean(s_fit, labels[fit], s_held)
        print(f"{run_dir}: MLP probe on s, seeds 0-2: " + ", ".join(f"{100 * e:.1f}%" for e in mlp)
              + f"; nearest class mean: {100 * np.mean(nearest != labels[held]):.1f}% ({len(held)} test images)")


if __name__ == "__main__":
    main()
