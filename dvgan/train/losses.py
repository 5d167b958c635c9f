"""Loss terms beyond Algorithm 1's reconstruction, KL and adversarial terms."""
from __future__ import annotations

import torch

def within_identity_spread(s_a: torch.Tensor, s_b: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """E||s_a - s_b||^2 / E||s - s'||^2 over independent pairs: how far apart two images of one identity
    are in s, as a fraction of how far apart two images of any identities are (0 = s is the same for
    every image of an identity). s_a[i], s_b[i] (B, d) share an identity; ``others`` only help
    estimate the overall spread. A 0-dim tensor.
    """
    pool = torch.cat([s_a, s_b] if others is None else [s_a, s_b, others])
    within = (s_a - s_b).pow(2).sum(1).mean()
    overall = 2.0 * (pool - pool.mean(0)).pow(2).sum(1).mean()
    return within / (overall + 1e-8)


def within_identity_share_whitened(s_a: torch.Tensor, s_b: torch.Tensor, others: torch.Tensor | None = None,
                                   shrink: float = 0.02) -> torch.Tensor:
    """within_identity_spread measured after whitening s: tr(R^-1 W) / d, with every dimension of s first
    scaled to unit variance, W the within-identity covariance (from the pairs s_a[i], s_b[i] of one
    identity) and R the correlation of all the codes plus shrink x I, so that the batch's estimate can be
    inverted.

    The plain ratio lets a factor that varies within an identity live on in a direction of s with little
    variance, where a probe that standardises its inputs still reads it. Here every direction counts
    alike: 0 when s is the same for every image of an identity; about 1 / (1 + shrink) when s is unrelated
    to the identity. A 0-dim tensor, unchanged by the scale of each dimension.
    """
    pool = torch.cat([s_a, s_b] if others is None else [s_a, s_b, others])
    centre, scale = pool.mean(0), pool.std(0, unbiased=False).clamp_min(1e-6)
    unit = (pool - centre) / scale
    corr = unit.T @ unit / len(pool)
    corr = corr + shrink * torch.eye(corr.shape[0], dtype=corr.dtype, device=corr.device)
    diff = (s_a - s_b) / scale                         # each row's covariance is twice the within-identity one
    within = diff.T @ diff / (2 * len(diff))
    return torch.linalg.solve(corr, within).diagonal().sum() / corr.shape[0]


def paired_between_share(c_a: torch.Tensor, c_b: torch.Tensor, others: torch.Tensor | None = None) -> torch.Tensor:
    """The share of the codes' variance that lies between identities, from pairs c_a[i], c_b[i] (B, d) of
    two images of one identity, per dimension and averaged over the dimensions: E[(c_a - m)(c_b - m)] / v,
    m and v each dimension's mean and variance over all the codes (``others`` only help estimate them).
    What varies within an identity is independent between the two images of a pair and averages out of
    the product, so with one pair per identity it estimates each dimension's between-identity share
    without the bias between_identity_share has when identities have one or two codes in a batch; and
    a few dimensions that carry an identity's offset (a decoder may read the pose from only a few) count
    as much as the many that do not. About 0 for codes unrelated to the identity, 1 for codes fixed by
    it; a single batch may read below 0. A 0-dim tensor, unchanged by each dimension's scale.
    """
    pool = torch.cat([c_a, c_b] if others is None else [c_a, c_b, others])
    centre, var = pool.mean(0), pool.var(0, unbiased=False)
    between = ((c_a - centre) * (c_b - centre)).mean(0)
    return (between / (var + 1e-12)).mean()


def between_identity_share(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The share of the codes' variance that lies between identities: sum_c n_c ||m_c - m||^2 over
    sum_i ||c_i - m||^2, with m the mean of all codes (N, d) and m_c that of identity c (ids (N,)).
    0 when every identity's codes have one mean; 1 when each identity's codes are one point. A 0-dim
    tensor, unchanged by the codes' scale. Within one batch it cannot reach 0 for unrelated codes
    (about (C - 1) / (N - 1) for C identities), but its gradient still moves the means together.
    """
    uniq, group = torch.unique(ids, return_inverse=True)
    counts = torch.bincount(group, minlength=len(uniq)).to(codes.dtype)          # (C,)
    sums = torch.zeros(len(uniq), codes.shape[1], dtype=codes.dtype, device=codes.device)
    means = sums.index_add(0, group, codes) / counts[:, None]                   # (C, d)
    centre = codes.mean(0)
    between = (counts[:, None] * (means - centre).pow(2)).sum()
    total = (codes - centre).pow(2).sum()
    return between / (total + 1e-8)
