"""The figures only evaluation draws: interpolation grids (the paper's Fig. 2b), sample rows (Fig. 5)
and retrieval strips (Fig. 4). Grids are uint8 (H, W, C) arrays; dvgan/figures.py has the swap grid
(Fig. 2a), which training draws too, and save_png, which writes them."""
from __future__ import annotations

import numpy as np
import torch

from .. import ops
from ..data.preprocess import float_to_uint8
from ..figures import tile


def interpolation_grid(encoder, decoder, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> np.ndarray:
    """The paper's Fig. 2b: s interpolates from a to b along the columns, mu along the rows.

    x_a, x_b (1, C, H, W) in [-1, 1]. Cell (i, j) = Dec(s_a + (s_b - s_a) j / (steps - 1),
    mu_a + (mu_b - mu_a) i / (steps - 1)), so each row has a constant z and each column a constant s;
    the real a stands left of the top row and the real b right of the bottom row. The result has
    steps x (steps + 2) tiles.
    """
    with ops.evaluating(encoder, decoder):
        out = ops.interpolate(encoder, decoder, x_a, x_b, steps)
    cells = float_to_uint8(out.cpu().numpy())
    a, b = float_to_uint8(x_a.cpu().numpy())[0], float_to_uint8(x_b.cpu().numpy())[0]
    rows = [[a if i == 0 else None] + list(cells[i]) + [b if i == steps - 1 else None] for i in range(steps)]
    return tile(rows)


def sample_grid(encoder, decoder, x: torch.Tensor, n_samples: int = 8, seed: int = 0, z_prior=None) -> np.ndarray:
    """The paper's Fig. 5: each row is a test image (left) then Dec(s of it, z) for n_samples draws of z,
    from z_prior (dvgan/prior.py) or, without one, from N(0, I).

    x (N, C, H, W) in [-1, 1]; the same seeded z's are used in every row, so a column shares its z.
    The result has N x (n_samples + 1) tiles.
    """
    with ops.evaluating(encoder, decoder):
        z = ops.draw_z(z_prior, n_samples, encoder.z_dim, torch.Generator().manual_seed(seed))
        out = ops.sample_grid(encoder, decoder, x, z.to(x))
    cells = float_to_uint8(out.cpu().numpy())
    real = float_to_uint8(x.cpu().numpy())
    return tile([[real[i]] + list(cells[i]) for i in range(len(x))])


def retrieval_strips(images: np.ndarray, queries, neighbour_idx: np.ndarray) -> np.ndarray:
    """The paper's Fig. 4: each row is a query, a white lane, then its neighbours nearest first.

    images uint8 (N, C, H, W); queries (Q,) indices; neighbour_idx (Q, k) indices into images.
    The result has Q x (k + 2) tiles.
    """
    return tile([[images[q], None] + [images[j] for j in nb] for q, nb in zip(queries, neighbour_idx)])
