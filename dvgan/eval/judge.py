"""Whose identity the drawings show: a classifier trained on real images names swaps and samples.

Where every test identity was also seen in training (MNIST's fixed split, ORL faces' within-identity
split), a small CNN trained on the real training images can read the identity of any drawing. For
pairs (a, b) of test images of different identities it names the swap Dec(s_a, mu_b): a
disentangling model draws a's identity ("follows s") and not b's ("follows z"). It names the
conditional samples Dec(s_a, z) too, z from the sampling prior and from the paper's N(0, I). The
same classifier on the real test images is the ceiling; chance is the majority-class frequency.
"""
from __future__ import annotations

import numpy as np

from ..prior import draw
from . import analogies, probes


def applies(split: dict, labels) -> bool:
    """True when every test identity has training images, so a classifier of them can judge."""
    train = np.asarray(split.get("train", []), np.int64)
    test = np.asarray(split["test"], np.int64)
    return len(train) > 0 and bool(np.isin(np.unique(labels[test]), np.unique(labels[train])).all())


def fit_judge(data, split: dict, *, fit_images: int, epochs: int, seed: int = 0) -> dict:
    """The CNN that judges: trained on up to fit_images real training images (stratified, seeded).

    A smaller training set gets more epochs, as many image passes as fit_images would take: with the
    epochs alone it named too few of ORL's real test faces to judge (benchmarks/RESULTS.md, "ORL faces").
    Returns {"net", "classes", "n_fit", "epochs"}.
    """
    fit = probes.subsample(np.asarray(split["train"], np.int64), data.labels, fit_images, seed)
    epochs = max(int(epochs), int(np.ceil(epochs * fit_images / max(len(fit), 1))))
    with probes.single_thread():
        net, classes = probes.fit_cnn(data.float_images(fit), data.labels[fit], seed=seed, epochs=epochs)
    return {"net": net, "classes": classes, "n_fit": int(len(fit)), "epochs": epochs}


def judged_drawings(swap, sample, data, split: dict, z_dim: int, n_pairs: int, judge: dict, *, seed: int = 0,
                    prior=None, temperature: float = 1.0) -> dict:
    """Identity accuracy of swaps and conditional samples as the fit_judge CNN reads them.

    swap(x_a, x_b) -> Dec(s_a, mu_b) and sample(x_a, z) -> Dec(s_a, z) take and give float images.
    Fractions in [0, 1]: "real" (the CNN on the test images), "swap_follows_s" and "swap_follows_z"
    (named as a's or as b's identity), "samples" (z drawn from prior at temperature, prior.draw;
    N(0, I) when None) and, when a prior is given, "standard_normal"; "chance" = majority-class
    frequency of the test images; the judge's "n_fit" and "epochs".
    """
    labels = data.labels
    test = np.asarray(split["test"], np.int64)
    name = lambda images: probes.cnn_predict(judge["net"], judge["classes"], images)  # noqa: E731
    with probes.single_thread():
        ia, ib = analogies.pairs(labels[test], n_pairs, seed + 5)
        a, b = test[ia], test[ib]
        x_a, x_b = data.float_images(a), data.float_images(b)
        eps = np.random.default_rng(seed + 6).standard_normal((n_pairs, z_dim), dtype=np.float32)
        drawn = {"swap": swap(x_a, x_b), "samples": sample(x_a, draw(prior, eps, temperature))}
        if prior is not None:
            drawn["standard_normal"] = sample(x_a, eps)
        named = {k: name(v) for k, v in drawn.items()}
        real = name(data.float_images(test))
    result = {"n_pairs": int(n_pairs), "n_fit": judge["n_fit"], "epochs": judge["epochs"],
              "real": float(np.mean(real == labels[test])),
              "chance": 1.0 - probes.chance_error(labels[test]),
              "swap_follows_s": float(np.mean(named["swap"] == labels[a])),
              "swap_follows_z": float(np.mean(named["swap"] == labels[b])),
              "samples": float(np.mean(named["samples"] == labels[a]))}
    if "standard_normal" in named:
        result["standard_normal"] = float(np.mean(named["standard_normal"] == labels[a]))
    return result
