"""The z prior that conditional sampling draws from: a Gaussian fitted to the training posterior means.

The paper samples Dec(s, z ~ N(0, I)). With a KL weight below 1 and a critic on mu (the default
recipe), the posterior means of real images do not fill N(0, I): they sit off-centre, some directions
nearly unused and others stretched, so most N(0, I) draws land where the decoder never saw a code and
come out as noise (benchmarks/RESULTS.md, "Conditional samples from the fitted prior"). Drawing
z = mean + scale @ eps, eps ~ N(0, I), with the mean and covariance of mu over training images keeps
the draws where the decoder has learnt to draw. Training fits it each time it writes a checkpoint;
export carries it into the bundle; the engine and evaluation sample from it.

A prior is a dict {"mean": (z_dim,), "scale": (z_dim, z_dim), "n_images": int} with scale @ scale.T
equal to the covariance (tensors in a checkpoint, float32 arrays in a bundle). Importing this module
loads numpy only: the engine samples on ONNX Runtime without torch.
"""
from __future__ import annotations

import numpy as np

FIT_IMAGES = 2048  # training images per fit; more fit it no better (benchmarks/RESULTS.md, "Samples from
                   # the fitted prior, and z 128 as the default")
FIT_BATCH = 512
PRIORS = ("auto", "fitted", "standard")  # what a sampler draws z from (auto: fitted when there is one)


def fit_items(n_train: int, seed: int = 0, n: int = FIT_IMAGES) -> np.ndarray:
    """Sorted positions of the (at most n) training images a fit uses, seeded."""
    if n_train <= n:
        return np.arange(n_train)
    return np.sort(np.random.default_rng(seed).choice(n_train, n, replace=False))


def fit_z_prior(encoder, n_train: int, images_of, seed: int = 0, n: int = FIT_IMAGES) -> dict:
    """Fit the prior to mu of the training images fit_items(n_train, seed, n) picks.

    images_of(positions) -> float tensor (B, C, H, W) in [-1, 1], positions into the training split.
    Training and benchmarks/prior_fit.py both fit through here, so they agree. The encoder runs in
    inference mode (BatchNorm running statistics) and is put back as it was.
    """
    import torch

    from .ops import evaluating
    rows = fit_items(n_train, seed, n)
    with evaluating(encoder):
        mu = torch.cat([encoder(images_of(rows[a:a + FIT_BATCH]))[1].float().cpu()
                        for a in range(0, len(rows), FIT_BATCH)])
    return gaussian(mu)


def gaussian(codes) -> dict:
    """Mean and a covariance factor (eigenvectors times root eigenvalues) of codes, a tensor (N, D)."""
    import torch
    codes = codes.double()
    mean = codes.mean(0)
    centred = codes - mean
    cov = centred.T @ centred / max(len(codes) - 1, 1)
    w, v = torch.linalg.eigh(cov)
    scale = v * w.clamp_min(0).sqrt()
    return {"mean": mean.float(), "scale": scale.float(), "n_images": int(len(codes))}


def check_prior(prior, z_dim: int, where: str) -> str | None:
    """None if prior (tensors or arrays) has the shapes of z_dim and finite values, else what is wrong."""
    if not isinstance(prior, dict) or "mean" not in prior or "scale" not in prior:
        return f"{where}: z prior lacks 'mean' or 'scale'"
    mean, scale = np.asarray(prior["mean"]), np.asarray(prior["scale"])
    if mean.shape != (z_dim,) or scale.shape != (z_dim, z_dim):
        return (f"{where}: z prior has shapes {mean.shape} and {scale.shape}; the model's z has "
                f"{z_dim} dimensions")
    if not (np.isfinite(mean).all() and np.isfinite(scale).all()):
        return f"{where}: z prior holds non-finite values"
    return None


def draw(prior, eps: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """z = mean + temperature * eps @ scale.T for standard-normal eps (N, z_dim); float32. prior None:
    temperature * eps. A temperature below 1 keeps the draws nearer the mean (0: the mean itself)."""
    eps = np.asarray(eps, np.float32) * np.float32(temperature)
    if prior is None:
        return eps
    mean, scale = np.asarray(prior["mean"], np.float32), np.asarray(prior["scale"], np.float32)
    return (mean + eps @ scale.T).astype(np.float32)
