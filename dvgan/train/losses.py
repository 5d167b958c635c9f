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
