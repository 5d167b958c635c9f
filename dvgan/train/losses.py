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
