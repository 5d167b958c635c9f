"""How the pose lives in s: each pose factor read from s by a linear classifier and by `dvgan eval`'s MLP
probe, on the same items (the first probe protocol: the test characters' frames, part to fit, part to
test). A factor the MLP reads and the linear classifier does not is held in s nonlinearly, where no
penalty on s's covariance (train.sinv_whiten) can reach it.

  python benchmarks/pose_in_s.py RUN        # RUN: a run whose data set knows its poses (lpc, sprites)
"""
from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F

from dvgan.eval import probes
from dvgan.eval.suite import FULL, encode, load_run, probe_sets


def linear_error(x_fit: np.ndarray, y_fit: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                 l2: float = 1e-4) -> float:
    """Test error of a multinomial logistic regression on standardised features (L-BFGS, a light L2)."""
    centre, scale = x_fit.mean(0), x_fit.std(0) + 1e-8
    xf, xe = (torch.tensor((x - centre) / scale, dtype=torch.float32) for x in (x_fit, x_eval))
    classes, yf = np.unique(y_fit, return_inverse=True)
    yf = torch.tensor(yf)
    torch.manual_seed(0)
    lin = torch.nn.Linear(xf.shape[1], len(classes))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(lin(xf), yf) + l2 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = classes[lin(xe).argmax(1).numpy()]
    return float(np.mean(pred != y_eval))


def main(run_dir: str) -> None:
    run = load_run(run_dir)
    data = run["data"]
    if not data.knows_truth:
        sys.exit(f"{run_dir}: its data set does not know the images' poses")
    sets = probe_sets(run["split"], data.labels, FULL, seed=0)
    protocol = next(iter(sets))
    fit, held, _ = sets[protocol]
    s_fit = encode(run["engine"], data.float_images(fit))["s"]
    s_held = encode(run["engine"], data.float_images(held))["s"]
    print(f"{run_dir}: protocol {protocol}, {len(fit)} fit / {len(held)} test frames")
    print("| factor | error from s, linear | error from s, MLP probe | chance |")
    print("|---|---|---|---|")
    for f, name in enumerate(data.factor_space.names):
        y_fit, y_held = data.factors[fit, f], data.factors[held, f]
        mlp = probes.classify(s_fit, y_fit, s_held, y_held, seed=0)
        print(f"| {name} | {100 * linear_error(s_fit, y_fit, s_held, y_held):.1f}% | "
              f"{100 * mlp['test_error']:.1f}% | {100 * mlp['chance_error']:.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: python benchmarks/pose_in_s.py RUN")
    main(sys.argv[1])
