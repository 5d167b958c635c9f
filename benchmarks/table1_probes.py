"""The paper's Table 1 (attributes of identities never seen in training) read by other probes than
`dvgan eval`'s, to tell a code that lacks an attribute from a probe that fails to carry it over:

  python benchmarks/table1_probes.py RUN [--probes mlp,linear,nearest,pixels_linear]

On the same items as `dvgan eval` (the run's training images fit, its test images test, subsampled as
there), per attribute, test error in %:
  mlp      the evaluation's own probe on s (two layers, 256 hidden units, early stopping)
  linear   a linear softmax probe on standardized s (300 full-batch Adam steps, weight decay 1e-3)
  nearest  each test image takes the attributes of the training identity whose mean s is nearest
           (cosine, standardized s)
  pixels   the evaluation's probe on the raw pixels: what one image shows without any model (slow:
           a 3,072-wide input at 32x32, about ten minutes an attribute on one thread)
  pixels_linear  the linear probe on the raw pixels (fast)
  cnn      the evaluation's small CNN (as its identity probes) trained on the images with the attribute
           labels: a supervised reading of what one frame at this size shows of a new character
For runs on data with attributes (lpc:, sprites). On LPC sheets whose attributes.json lists the
attributes drawn in every frame, the mean over those follows the mean over all (lpc_table.data_doc).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from dvgan.eval import probes, suite
from lpc_table import data_doc  # benchmarks/ is on the path when this runs as a script


def linear_probe(x_fit, y_fit, x_eval, y_eval, steps: int = 300, weight_decay: float = 1e-3) -> float:
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    xf = torch.tensor((x_fit - mean) / std, dtype=torch.float32)
    xe = torch.tensor((x_eval - mean) / std, dtype=torch.float32)
    classes, y = np.unique(y_fit, return_inverse=True)
    torch.manual_seed(0)
    net = torch.nn.Linear(xf.shape[1], len(classes))
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=weight_decay)
    target = torch.tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xf), target).backward()
        opt.step()
    with torch.no_grad():
        pred = classes[net(xe).argmax(1).numpy()]
    return float(np.mean(pred != y_eval))


def nearest_identity(s_fit, labels_fit, attrs_fit, s_eval) -> np.ndarray:
    """Attributes (N_eval, A) of the training identity whose mean s is nearest each test code."""
    ids = np.unique(labels_fit)
    attrs = np.stack([attrs_fit[labels_fit == i][0] for i in ids])
    return attrs[np.searchsorted(ids, probes.nearest_class_mean(s_fit, labels_fit, s_eval))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--probes", default="mlp,linear,nearest,pixels_linear")
    args = ap.parse_args()
    which = args.probes.split(",")
    unknown = sorted(set(which) - {"mlp", "linear", "nearest", "pixels", "pixels_linear", "cnn"})
    if unknown:
        ap.error(f"unknown probe(s) {', '.join(unknown)}: use mlp, linear, nearest, pixels, pixels_linear or cnn")
    torch.set_num_threads(1)
    run = suite.load_run(args.run)
    data, split = run["data"], run["split"]
    items = suite._table1_items(split, data.labels, suite.FULL, 0)
    if data.attributes is None or items is None:
        raise SystemExit(f"{args.run}: no attributes or no training identities: Table 1 does not apply")
    fit, held = items
    feat = suite.Features(run, np.concatenate([fit, held]), 0)
    names = data.meta.get("attribute_names")
    s_fit, s_eval = feat("s", fit), feat("s", held)
    near = nearest_identity(s_fit, data.labels[fit], data.attributes[fit], s_eval) if "nearest" in which else None
    table = {}
    for a, name in enumerate(names):
        y_fit, y_eval = data.attributes[fit, a], data.attributes[held, a]
        row = {"chance": probes.chance_error(y_eval)}
        if "mlp" in which:
            row["mlp"] = probes.classify(s_fit, y_fit, s_eval, y_eval, seed=0)["test_error"]
        if "linear" in which:
            row["linear"] = linear_probe(s_fit, y_fit, s_eval, y_eval)
        if "nearest" in which:
            row["nearest"] = float(np.mean(near[:, a] != y_eval))
        if "pixels" in which:
            row["pixels"] = probes.classify(feat("pixels", fit), y_fit, feat("pixels", held), y_eval, seed=0)["test_error"]
        if "pixels_linear" in which:
            row["pixels_linear"] = linear_probe(feat("pixels", fit), y_fit, feat("pixels", held), y_eval)
        if "cnn" in which:
            row["cnn"] = probes.cnn_classify(feat("images", fit), y_fit, feat("images", held), y_eval,
                                             seed=0, epochs=suite.FULL["cnn_epochs"])["test_error"]
        table[name] = row
        print(name, {k: round(100 * v, 1) for k, v in row.items()}, flush=True)
    cols = list(next(iter(table.values())))
    print("| attribute | " + " | ".join(cols) + " |")
    print("|---|" + "---|" * len(cols))
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{100 * row[c]:.1f}" for c in cols) + " |")
    doc = data_doc(args.run)
    drawn = [n for n in (doc[0].get("visible_attributes", []) if doc else []) if n in table]
    means = [("**mean**", list(table))] + ([(f"mean of the {len(drawn)} drawn in every frame", drawn)] if drawn else [])
    for label, names in means:
        print(f"| {label} | " + " | ".join(f"{100 * np.mean([table[n][c] for n in names]):.1f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
