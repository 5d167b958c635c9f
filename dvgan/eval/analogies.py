"""Single-image analogies scored against the truth, on any data set that knows it (ImageSet.knows_truth).

The swap Dec(s_a, mu_b) should show a's identity in b's pose. A data set that knows its images' poses
has that image: the sprites renderer draws render(identity of a, factors of b); an LPC sheet has a's
own frame at b's action, direction and frame. So the swap gets a pixel error instead of a look. Images
are float in [-1, 1]; MSE is the mean over pixels and channels; PSNR = 10 log10(PEAK^2 / MSE) with
PEAK = 2.0 (the peak-to-peak range of [-1, 1]), computed per pair and averaged, capped at
PSNR_CAP dB for an exact match; SSIM (Wang et al., 2004: 11x11 Gaussian window, sigma 1.5,
K1 = 0.01, K2 = 0.03, on the images mapped to [0, 1], per channel) per pair and averaged. Baselines: "copy a"
(right identity, wrong pose), "copy b" (right pose, wrong identity) and "identity mean" (the mean
image of a's identity: right identity, no pose). A model that disentangles beats all three.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import ops
from ..data import sprites
from ..data.preprocess import uint8_to_float
from ..prior import draw

PEAK = 2.0                          # peak-to-peak of [-1, 1] images
MSE_FLOOR = PEAK ** 2 / 10 ** 10.0  # PSNR of an exact match: capped at 100 dB
PSNR_CAP = 100.0
BATCH = 256
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5   # Wang et al. (2004); the window shrinks to the image on smaller ones


def true_images(identity, factors, size: int, channels: int) -> np.ndarray:
    """render(identity, factors) as the data loader delivers it: float32 (N, C, size, size) in [-1, 1].

    Grey images use the loader's conversion (ITU-R 601 luma, rounded), so a rendered image is
    byte-identical to the dataset image with the same identity and factors.
    """
    return uint8_to_float(sprites.Renderer(size, channels).draw(identity, factors))


def swap_truth_grid(data, items) -> tuple:
    """The truth behind a swap grid of data set items: (uint8 (N, N, C, H, W), found bool (N, N)), cell
    (i, j) = the image of items[j]'s identity in items[i]'s pose (data.true_images), so that row i keeps
    the pose of image i and column j the identity of image j."""
    items = np.asarray(items, np.int64)
    n = len(items)
    truth, found = data.true_images(np.tile(data.labels[items], n), np.repeat(data.factors[items], n, axis=0))
    return truth.reshape(n, n, *truth.shape[1:]), found.reshape(n, n)


def ssim(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-image SSIM (N,) of pred against truth, float (N, C, H, W) in [-1, 1]: Wang et al.'s index on
    the images mapped to [0, 1] (its luminance term assumes non-negative pixels), dynamic range 1,
    averaged over channels and 'valid' window positions."""
    x = (torch.as_tensor(np.ascontiguousarray(pred, np.float64)) + 1) / 2
    y = (torch.as_tensor(np.ascontiguousarray(truth, np.float64)) + 1) / 2
    c, win = x.shape[1], min(SSIM_WINDOW, x.shape[2], x.shape[3])
    g = torch.exp(-((torch.arange(win, dtype=torch.float64) - (win - 1) / 2) ** 2) / (2 * SSIM_SIGMA ** 2))
    kernel = (torch.outer(g, g) / g.sum() ** 2).expand(c, 1, win, win)
    blur = lambda t: torch.nn.functional.conv2d(t, kernel, groups=c)  # noqa: E731
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    out = []
    for i in range(0, len(x), BATCH):
        a, b = x[i:i + BATCH], y[i:i + BATCH]
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
        index = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        out.append(index.mean(dim=(1, 2, 3)))
    return torch.cat(out).numpy() if out else np.zeros(0)


def image_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Mean MSE, mean per-image PSNR (dB, PEAK = 2.0) and mean per-image SSIM of pred against truth,
    both (N, C, H, W) in [-1, 1]."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(truth, np.float64)) ** 2, axis=(1, 2, 3))
    psnr = np.minimum(10.0 * np.log10(PEAK ** 2 / np.maximum(mse, MSE_FLOOR)), PSNR_CAP)
    return {"mse": float(mse.mean()), "psnr": float(psnr.mean()), "ssim": float(ssim(pred, truth).mean())}


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


def _on_numpy(op, encoder, decoder):
    """op(encoder, decoder, a, b, BATCH) (dvgan.ops.swap or sample) as a function of numpy arrays."""
    @torch.no_grad()
    def call(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return op(encoder, decoder, torch.from_numpy(a), torch.from_numpy(b), BATCH).numpy()
    return call


def model_swap(encoder, decoder):
    """A swap function (x_a, x_b) -> Dec(s_a, mu_b), numpy float (N, C, H, W) in and out, BATCH rows per call."""
    return _on_numpy(ops.swap, encoder, decoder)


def model_sample(encoder, decoder):
    """A conditional generator (x_a, z) -> Dec(s_a, z), numpy float in and out, BATCH rows per call."""
    return _on_numpy(ops.sample, encoder, decoder)


def nearest_render_psnr(images: np.ndarray, identity: int, size: int, channels: int, n_renders: int,
                        rng: np.random.Generator, renderer=None) -> np.ndarray:
    """Per image: PSNR (dB) against the closest of n_renders renders of identity at random factors
    (renderer: a data set's, default the sprites one at size and channels)."""
    renderer = renderer or sprites.Renderer(size, channels)
    refs = uint8_to_float(renderer.draw(np.full(n_renders, identity), renderer.sample(n_renders, rng)))
    a = torch.from_numpy(np.ascontiguousarray(images, np.float32)).flatten(1).double()
    r = torch.from_numpy(refs).flatten(1).double()
    d = (a.pow(2).sum(1, keepdim=True) - 2 * a @ r.T + r.pow(2).sum(1)[None]) / a.shape[1]  # MSE to each render
    mse = d.min(dim=1).values.clamp_min(MSE_FLOOR).numpy()
    return np.minimum(10.0 * np.log10(PEAK ** 2 / mse), PSNR_CAP)


def sprite_samples(sample, swap, data, split: dict, size: int, channels: int, z_dim: int, n_ids: int,
                   per_id: int = 4, n_renders: int = 512, seed: int = 0, prior=None) -> dict:
    """Conditional samples Dec(s_a, z) of unseen identities, z drawn from prior (dvgan/prior.py; None:
    N(0, I)), scored by how close each comes to a true image of a's identity in some pose: PSNR against
    the nearest of n_renders renders of identity a at random factors (data.renderer; size and channels
    are the renderer's). Beside it, scored the same way:
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
            real=uint8_to_float(data.renderer.draw(np.full(per_id, identity), data.renderer.sample(per_id, rng))),
            other_identity=uint8_to_float(data.renderer.draw(other_ids, data.renderer.sample(per_id, rng))))
        stacked = np.concatenate(list(candidates.values()))
        psnr = nearest_render_psnr(stacked, int(identity), size, channels, n_renders, rng, data.renderer)
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


def against_truth(swap, data, split: dict, n_pairs: int, seed: int = 0) -> dict:
    """Analogy scores on the run's test identities ("unseen") and on its training identities ("seen"),
    for a data set that knows the truth (data.knows_truth).

    unseen: pairs (a, b) of test-split images of different identities; truth = the image of a's identity
    in b's pose (data.swap_truth); the identity mean averages the test images of a's identity.
    seen: pairs of different training identities. With a renderer, each drawn under fresh random
    factors (truth = render(id_a, factors_b)); without one, pairs of training images, truth looked up
    as for unseen. The identity mean averages a's training-split images.
    Pairs whose truth the data set lacks (an empty cell of a's sheet) are left out; "n_missing" counts them.
    """
    out = {}
    labels = data.labels
    test = np.asarray(split["test"], dtype=np.int64)
    if len(np.unique(labels[test])) >= 2:
        a, b = pairs(labels[test], n_pairs, seed)
        out["unseen"] = _looked_up(swap, data, test, test[a], test[b])
    train = np.asarray(split["train"], dtype=np.int64)
    train_ids = np.unique(labels[train])
    if len(train_ids) < 2:
        return out
    if data.renderer is None:
        a, b = pairs(labels[train], n_pairs, seed + 2)
        out["seen"] = _looked_up(swap, data, train, train[a], train[b])
        return out
    rng = np.random.default_rng(seed + 1)
    a_ids, b_ids = (train_ids[k] for k in pairs(train_ids, n_pairs, seed + 2))
    f_a, f_b = data.renderer.sample(n_pairs, rng), data.renderer.sample(n_pairs, rng)
    mean = _identity_means(lambda i: data.float_images(train[labels[train] == i]), a_ids)
    drawn = lambda ids, f: uint8_to_float(data.renderer.draw(ids, f))  # noqa: E731
    out["seen"] = score_analogies(swap, drawn(a_ids, f_a), drawn(b_ids, f_b), drawn(a_ids, f_b), mean)
    return out


def _looked_up(swap, data, part: np.ndarray, a: np.ndarray, b: np.ndarray) -> dict:
    """score_analogies on items a, b of the data set; the identity mean over a's items in part."""
    truth, found = data.swap_truth(a, b)
    a, b = a[found], b[found]
    mean = _identity_means(lambda i: data.float_images(part[data.labels[part] == i]), data.labels[a])
    out = score_analogies(swap, data.float_images(a), data.float_images(b), uint8_to_float(truth[found]), mean)
    if not found.all():
        out["n_missing"] = int((~found).sum())
    return out
