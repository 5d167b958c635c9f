"""Nearest-neighbour retrieval in code space (the paper's Fig. 4), scored.

Distance is Euclidean (L2) on the raw codes: z is a Gaussian code whose norm carries information
that a cosine distance would throw away. Every item queries all the others (leave-one-out).
By s, an item of the same identity is relevant: precision@k and
mean average precision. By z, a good model retrieves neighbours that share the unspecified factors,
not the identity: identity precision@k should sit at chance, and on data with known factors
(sprites) the neighbours' factor distance should be well below that of random pairs.
"""
from __future__ import annotations

import numpy as np
import torch

CHUNK = 512  # query rows ranked at once (CHUNK x N similarities in memory)


def _ranked(codes):
    """Yield (query rows, the other items sorted nearest first (len(rows), N - 1)) chunk by chunk."""
    c = torch.as_tensor(np.asarray(codes, np.float64))
    sq = (c * c).sum(dim=1)
    n = len(c)
    for start in range(0, n, CHUNK):
        rows = torch.arange(start, min(start + CHUNK, n))
        sim = 2 * c[rows] @ c.T - sq               # (Q, N): -||q - c||^2 up to a per-row constant
        sim[torch.arange(len(rows)), rows] = -np.inf  # never retrieve the query itself
        order = sim.argsort(dim=1, descending=True, stable=True)[:, :n - 1]
        yield rows.numpy(), order.numpy()


def neighbours(codes, k: int = 10) -> np.ndarray:
    """(N, k) indices of each item's k nearest other items by L2 distance, nearest first."""
    return np.concatenate([order[:, :k] for _, order in _ranked(codes)])


def identity_retrieval(codes, labels, k: int = 10) -> dict:
    """Precision@k and mean average precision of same-label retrieval, with their chance levels.

    Average precision of a query = mean over its relevant items of (relevant items ranked at or
    above it) / (its rank); queries with no other item of their label are left out of the mean.
    Chance precision = probability that a random other item shares the query's label; best
    precision = the most precision@k can reach, min(k, other items of the label) / k averaged over the
    queries (below 1 when labels have fewer than k + 1 items: ORL's 2 test faces a person give 0.1).
    """
    labels = np.asarray(labels)
    prec, aps = [], []
    for rows, order in _ranked(codes):
        rel = labels[order] == labels[rows][:, None]            # (Q, N - 1)
        prec.append(rel[:, :k].mean(axis=1))
        hits = np.cumsum(rel, axis=1)
        ranks = np.arange(1, rel.shape[1] + 1)
        n_rel = rel.sum(axis=1)
        ap = np.where(rel, hits / ranks, 0.0).sum(axis=1) / np.maximum(n_rel, 1)
        aps.append(ap[n_rel > 0])
    _, counts = np.unique(labels, return_counts=True)
    n = len(labels)
    best = np.sum(counts * np.minimum(k, counts - 1)) / (k * n)
    return {"precision_at_k": float(np.concatenate(prec).mean()), "map": float(np.concatenate(aps).mean()),
            "chance_precision": float(np.sum(counts * (counts - 1)) / max(n * (n - 1), 1)),
            "best_precision": float(best), "k": k}


def normalize_factors(factors, ranges) -> np.ndarray:
    """factors (N, F) -> factors / (hi - lo): a distance of 1 spans a factor's whole range."""
    ranges = np.asarray(ranges, np.float64)
    return np.asarray(factors, np.float64) / (ranges[:, 1] - ranges[:, 0])


def factor_retrieval(codes, factors, ranges, k: int = 10, seed: int = 0) -> dict:
    """Mean normalized factor distance |f_i - f_j| / range to the k nearest neighbours vs random pairs.

    Returned per factor and averaged over factors; ``ratio`` = neighbours / random (1 = the code knows
    nothing of the factors, 0 = neighbours share them exactly). For factors drawn uniformly and
    independently, random pairs are 1/3 apart on average.
    """
    f = normalize_factors(factors, ranges)
    nb = neighbours(codes, k)
    near = np.abs(f[nb] - f[:, None, :]).mean(axis=(0, 1))  # (F,)
    rng = np.random.default_rng(seed)
    n = len(f)
    i = rng.integers(0, n, 20 * n)
    j = (i + rng.integers(1, n, len(i))) % n  # j != i
    rand = np.abs(f[i] - f[j]).mean(axis=0)
    return {"neighbour_distance": float(near.mean()), "random_distance": float(rand.mean()),
            "ratio": float(near.mean() / max(rand.mean(), 1e-12)),
            "per_factor": {"neighbour": near.tolist(), "random": rand.tolist()}, "k": k}
