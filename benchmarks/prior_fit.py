"""How the sampling prior is fitted: conditional-sample scores of a sprites run for z drawn from
N(0, I), from a Gaussian with the posterior means' per-dimension mean and variance ("diagonal"), and
from one with their full covariance (what dvgan fits), each fitted to N training images.

  python benchmarks/prior_fit.py RUN_DIR [--sizes 1024,2048,8000] [--ids 16]

Scores are those of `dvgan eval` (nearest-render PSNR of Dec(s_a, z) for --ids unseen identities, 4
draws each; the same draws for every row), beside swaps and renders of another identity.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from dvgan import prior
from dvgan.eval import analogies, suite


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--sizes", default="1024,2048,8000")
    ap.add_argument("--ids", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    run = suite.load_run(args.run)
    cfg, data, split = run["cfg"], run["data"], run["split"]
    train = np.asarray(split["train"], np.int64)
    swap = analogies.model_swap(run["encoder"], run["decoder"])
    sample = analogies.model_sample(run["encoder"], run["decoder"])

    def score(fitted):
        return analogies.sprite_samples(sample, swap, data, split, cfg.image_size, cfg.channels, cfg.z_dim,
                                        args.ids, seed=0, prior=fitted)

    base = score(None)
    print(f"{args.run}: z {cfg.z_dim} dims, step {run['state'].get('step')}; swaps {base['swap']:.2f} dB, "
          f"another identity {base['other_identity']:.2f} dB")
    print("| prior | fitted to | samples (dB) |\n|---|---|---|")
    print(f"| N(0, I) | - | {base['model']:.2f} |")
    images_of = lambda rows: torch.from_numpy(data.float_images(train[rows]))  # noqa: E731
    for n in (int(x) for x in args.sizes.split(",")):
        full = prior.fit_z_prior(run["encoder"], len(train), images_of, int(run["state"]["train_config"]["seed"]), n)
        cov = full["scale"] @ full["scale"].T
        diagonal = {"mean": full["mean"], "scale": torch.diag(cov.diagonal().clamp_min(0).sqrt())}
        for name, fitted in (("diagonal", diagonal), ("full covariance", full)):
            print(f"| {name} | {full['n_images']} images | {score(fitted)['model']:.2f} |")


if __name__ == "__main__":
    main()
