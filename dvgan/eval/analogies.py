"""Single-image analogies scored against the truth (sprites only).

The swap Dec(s_a, mu_b) should show a's identity in b's pose. The sprites renderer draws exactly that
image, render(identity of a, factors of b), so the swap gets a pixel error instead of a look. Images
are float in [-1, 1]; MSE is the mean over pixels and channels; PSNR = 10 log10(PEAK^2 / MSE) with
PEAK = 2.0 (the peak-to-peak range of [-1, 1]), computed per pair and averaged, capped at
PSNR_CAP dB for an exact match. Baselines: "copy a" (right identity, wrong pose), "copy b" (right
pose, wrong identity) and "identity mean" (the mean image of a's identity: right identity, no pose).
A model that disentangles beats all three.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import sprites
from ..data.preprocess import uint8_to_float
from ..prior import draw

PEAK = 2.0                          # peak-to-peak of [-1, 1] images
MSE_FLOOR = PEAK ** 2 / 10 ** 10.0  # PSNR of an exact match: capped at 100 dB
PSNR_CAP = 100.0
BATCH = 256


def true_images(identity, factors, size: int, channels: int) -> np.ndarray:
    """render(identity, factors) as the data loader delivers it: float32 (N, C, size, size) in [-1, 1].

    Grey images use the loader's conversion (ITU-R 601 luma, rounded), so a rendered image is
    byte-identical to the dataset image with the same identity and factors.
    """
    rgb = np.concatenate([sprites.render(identity[i:i + 512], factors[i:i + 512], size)
                          for i in range(0, len(identity), 512)])  # uint8 (N, H, W, 3)
    if channels == 1:
        grey = np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114]))
        return uint8_to_float(grey.astype(np.uint8)[:, None])
    return uint8_to_float(rgb.transpose(0, 3, 1, 2))


def true_swap_images(identity, factors, size: int, channels: int) -> np.ndarray:
    """The truth behind a swap grid: (N, N, C, H, W) float in [-1, 1], cell (i, j) = render(identity[j],
    factors[i]), so that row i keeps the pose of image i and column j the identity of image j."""
    n = len(identity)
    truth = true_images(np.tile(np.asarray(identity), n), np.repeat(np.asarray(factors), n, axis=0), size, channels)
    return truth.reshape(n, n, *truth.shape[1:])


def image_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Mean MSE and mean per-image PSNR (dB, PEAK = 2.0) of pred against truth, both (N, C, H, W)."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2, axis=(1, 2, 3))
    psnr = np.minimum(10.0 * np.log10(PEAK ** 2 / np.maximum(mse, MSE_FLOOR)), PSNR_CAP)
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean())}


def pairs(labels, n_pairs: int, seed: int = 0) -> tuple:
    """(a, b): n_pairs seeded index pairs into labels with labels[a] != labels[b]."""
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        raise ValueError("analogy pairs need at least two identities")
    rng = np.random.default_rng(seed)
    a, b = [], []
    while len(a) < n_pairs:
        i, j = rng.integers(0, len(labels), (2, 4 * n_pairs))
        keep = labels[i] != labels[j]
        a += i[keep].tolist()
        b += j[keep].tolist()
    return np.asarray(a[:n_pairs]), np.asarray(b[:n_pairs])


def _batched(fn, *arrays) -> np.ndarray:
    """fn over aligned BATCH-sized slices of numpy arrays (as tensors), results concatenated as numpy."""
    return np.concatenate([fn(*(torch.from_numpy(a[i:i + BATCH]) for a in arrays)).numpy()
                           for i in range(0, len(arrays[0]), BATCH)])


def model_swap(encoder, decoder):
    """A swap function (x_a, x_b) -> Dec(s_a, mu_b), numpy float (N, C, H, W) in, out, batched."""
    @torch.no_grad()
    def swap(x_a: np.ndarray, x_b: np.ndarray) -> np.ndarray:
        return _batched(lambda a, b: decoder(encoder(a)[0], encoder(b)[1]), x_a, x_b)
    return swap


def model_sample(encoder, decoder):
    """A conditional generator (x_a, z) -> Dec(s_a, z), numpy float in, out, batched."""
    @torch.no_grad()
    def sample(x_a: np.ndarray, z: np.ndarray) -> np.ndarray:
        return _batched(lambda a, zz: decoder(encoder(a)[0], zz), x_a, z)
    return sample


def nearest_render_psnr(images: np.ndarray, identity: int, size: int, channels: int, n_renders: int,
                        rng: np.random.Generator) -> np.ndarray:
    """Per image: PSNR (dB) against the closest of n_renders renders of identity at random factors."""
    refs = true_images(np.full(n_renders, identity), sprites.sample_factors(n_renders, rng), size, channels)
    a = torch.from_numpy(np.ascontiguousarray(images, np.float32)).flatten(1).double()
    r = torch.from_numpy(refs).flatten(1).double()
    d = (a.pow(2).sum(1, keepdim=True) - 2 * a @ r.T + r.pow(2).sum(1)[None]) / a.shape[1]  # MSE to each render
    mse = d.min(dim=1).values.clamp_min(MSE_FLOOR).numpy()
    return np.minimum(10.0 * np.log10(PEAK ** 2 / mse), PSNR_CAP)


def sprite_samples(sample, swap, data, split: dict, size: int, channels: int, z_dim: int, n_ids: int,
                   per_id: int = 4, n_renders: int = 512, seed: int = 0, prior=None) -> dict:
    """Conditional samples Dec(s_a, z) of unseen identities, z drawn from prior (dvgan/prior.py; None:
    N(0, I)), scored by how close each comes to a true image of a's identity in some pose: PSNR against
    the nearest of n_renders renders of identity a at random factors. Beside it, scored the same way:
    samples with the paper's z ~ N(0, I) ("standard_normal", when a prior is given), swaps Dec(s_a, mu_b)
    (z from a real image), fresh renders of a (a perfect sampler; below 100 dB only because the renders
    cover the poses sparsely) and renders of another identity (a sampler that loses the identity).
    """
    test = np.asarray(split["test"], dtype=np.int64)
    ids = np.unique(data.labels[test])
    if len(ids) < 2:
        return {}
    rng = np.random.default_rng(seed + 3)
    ids = rng.choice(ids, min(n_ids, len(ids)), replace=False)
    scores = {}
    for identity in ids:
        own = test[data.labels[test] == identity]
        others = test[data.labels[test] != identity]
        x_a = np.repeat(data.float_images(own[rng.integers(len(own), size=1)]), per_id, axis=0)
        x_b = data.float_images(rng.choice(others, per_id, replace=False))
        eps = rng.standard_normal((per_id, z_dim), dtype=np.float32)
        other_ids = rng.choice(ids[ids != identity], per_id)
        candidates = {"model": sample(x_a, draw(prior, eps))}
        if prior is not None:
            candidates["standard_normal"] = sample(x_a, eps)
        candidates.update(
            swap=swap(x_a, x_b),
            real=true_images(np.full(per_id, identity), sprites.sample_factors(per_id, rng), size, channels),
            other_identity=true_images(other_ids, sprites.sample_factors(per_id, rng), size, channels))
        stacked = np.concatenate(list(candidates.values()))
        psnr = nearest_render_psnr(stacked, int(identity), size, channels, n_renders, rng)
        for k, part in zip(candidates, np.split(psnr, len(candidates))):
            scores.setdefault(k, []).extend(part.tolist())
    return {"n_identities": int(len(ids)), "per_identity": per_id, "n_renders": n_renders,
            **{k: float(np.mean(v)) for k, v in scores.items()}}


def score_analogies(swap, x_a, x_b, truth, identity_mean) -> dict:
    """The swap and the three baselines scored against truth; all arrays (N, C, H, W) in [-1, 1]."""
    return {"n_pairs": int(len(x_a)),
            "model": image_scores(swap(x_a, x_b), truth),
            # Dec(s_a, mu_a) against x_a: the reconstruction, a ceiling for the analogies
            "reconstruction": image_scores(swap(x_a, x_a), x_a),
            # The swap with one code read from the truth render(id_a, factors_b) itself: what the model
            # would score if z encoded b's pose as it encodes that pose on a ("z from the truth"), or if s
            # held a's identity as it does on the truth ("s from the truth").
            "z_from_truth": image_scores(swap(x_a, truth), truth),
            "s_from_truth": image_scores(swap(truth, x_b), truth),
            "copy_a": image_scores(x_a, truth),
            "copy_b": image_scores(x_b, truth),
            "identity_mean": image_scores(identity_mean, truth)}


def _identity_means(images_of, identities) -> np.ndarray:
    """Mean image of each listed identity, (N, C, H, W); images_of(identity) -> float images."""
    means = {int(i): images_of(int(i)).mean(axis=0) for i in np.unique(identities)}
    return np.stack([means[int(i)] for i in identities])


def sprite_analogies(swap, data, split: dict, size: int, channels: int, n_pairs: int, seed: int = 0) -> dict:
    """Analogy scores on the run's test identities ("unseen") and on fresh renders of its training
    identities ("seen").

    unseen: pairs (a, b) of test-split images of different identities; truth = render(id_a, factors_b);
    the identity mean averages the test images of a's identity.
    seen: pairs of different training identities, each drawn under fresh random factors with the
    renderer; truth = render(id_a, factors_b); the identity mean averages a's training-split images.
    """
    out = {}
    test = np.asarray(split["test"], dtype=np.int64)
    if len(np.unique(data.labels[test])) >= 2:
        a, b = pairs(data.labels[test], n_pairs, seed)
        a, b = test[a], test[b]
        truth = true_images(data.labels[a], data.factors[b], size, channels)
        mean = _identity_means(lambda i: data.float_images(test[data.labels[test] == i]), data.labels[a])
        out["unseen"] = score_analogies(swap, data.float_images(a), data.float_images(b), truth, mean)
    train = np.asarray(split["train"], dtype=np.int64)
    train_ids = np.unique(data.labels[train])
    if len(train_ids) >= 2:
        rng = np.random.default_rng(seed + 1)
        a_ids, b_ids = (train_ids[k] for k in pairs(train_ids, n_pairs, seed + 2))
        f_a, f_b = sprites.sample_factors(n_pairs, rng), sprites.sample_factors(n_pairs, rng)
        mean = _identity_means(lambda i: data.float_images(train[data.labels[train] == i]), a_ids)
        out["seen"] = score_analogies(swap, true_images(a_ids, f_a, size, channels),
                                      true_images(b_ids, f_b, size, channels),
                                      true_images(a_ids, f_b, size, channels), mean)
    return out
