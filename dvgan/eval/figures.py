"""Figures like the paper's: swap grids (Fig. 2a), interpolation grids (Fig. 2b), sample rows (Fig. 5),
retrieval strips (Fig. 4), and training curves. Grids are uint8 (H, W, C) arrays; save_png writes them."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..data.preprocess import float_to_uint8
from ..prior import draw
from ..files import atomic_write

PAD = 2  # pixels between tiles


def tile(rows, pad: int = PAD, fill: int = 255) -> np.ndarray:
    """rows: list of rows, each a list of uint8 (C, H, W) images or None (blank) -> uint8 (H', W', C)."""
    first = next(im for row in rows for im in row if im is not None)
    c, h, w = first.shape
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    out = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            if im is not None:
                y, x = pad + i * (h + pad), pad + j * (w + pad)
                out[y:y + h, x:x + w] = im.transpose(1, 2, 0)
    return out


@torch.no_grad()
def swap_grid(encoder, decoder, x_s: torch.Tensor, x_z: torch.Tensor) -> np.ndarray:
    """The paper's Fig. 2a: top row gives s, left column gives z (its mu), cell (i, j) = Dec(s_j, mu_i).

    x_s (M, C, H, W), x_z (N, C, H, W) in [-1, 1]; the result has (N + 1) x (M + 1) tiles with the
    top-left corner blank. With x_s == x_z the diagonal shows reconstructions.
    """
    was = encoder.training, decoder.training
    encoder.eval(), decoder.eval()
    s, _, _ = encoder(x_s)
    _, mu, _ = encoder(x_z)
    m, n = len(x_s), len(x_z)
    out = decoder(s.repeat(n, 1), mu.repeat_interleave(m, 0)).view(n, m, *x_s.shape[1:])
    encoder.train(was[0]), decoder.train(was[1])
    u8 = lambda t: float_to_uint8(t.cpu().numpy())  # noqa: E731
    return headed_grid(u8(x_s), u8(x_z), u8(out))


def headed_grid(top: np.ndarray, left: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """top (M, C, H, W) across the first row, left (N, C, H, W) down the first column, cells
    (N, M, C, H, W) inside, the corner blank; all uint8."""
    return tile([[None] + list(top)] + [[left[i]] + list(cells[i]) for i in range(len(left))])


def save_png(path: str, grid: np.ndarray, scale: int = 2) -> None:
    """Write a uint8 (H, W, C) grid as PNG, enlarged by an integer factor, atomically."""
    from PIL import Image
    img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    atomic_write(path, lambda f: img.save(f, format="PNG"))


def training_curves(metrics_path: str, png_path: str) -> None:
    """Plot every loss term of a metrics.jsonl against step into one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_path) as f:
        rows = [json.loads(ln) for ln in f if ln.strip()]
    if not rows:
        return
    keys = [k for k in rows[-1] if k not in ("step", "time", "images_per_s")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in rows]
    for k in keys:
        vals = [r.get(k, np.nan) for r in rows]
        (axes[1] if k.startswith("adv") or k.startswith("gan") else axes[0]).plot(steps, vals, label=k)
    axes[0].set_yscale("log")
    axes[0].set_title("reconstruction and KL")
    axes[1].set_title("adversarial terms")
    for ax in axes:
        ax.set_xlabel("step")
        if ax.lines:  # a run without the adversary has nothing to plot on the right
            ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(png_path, lambda f: fig.savefig(f, format="png", dpi=90))
    plt.close(fig)


@torch.no_grad()
def interpolation_grid(encoder, decoder, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> np.ndarray:
    """The paper's Fig. 2b: s interpolates from a to b along the columns, mu along the rows.

    x_a, x_b (1, C, H, W) in [-1, 1]. Cell (i, j) = Dec(s_a + (s_b - s_a) j / (steps - 1),
    mu_a + (mu_b - mu_a) i / (steps - 1)), so each row has a constant z and each column a constant s;
    the real a stands left of the top row and the real b right of the bottom row. The result has
    steps x (steps + 2) tiles.
    """
    was = encoder.training, decoder.training
    encoder.eval(), decoder.eval()
    s, mu, _ = encoder(torch.cat([x_a, x_b]))
    t = torch.linspace(0, 1, steps)[:, None]
    s_path, mu_path = s[0] + t * (s[1] - s[0]), mu[0] + t * (mu[1] - mu[0])  # (steps, dim)
    out = decoder(s_path.repeat(steps, 1), mu_path.repeat_interleave(steps, 0))  # row i = mu_path[i]
    encoder.train(was[0]), decoder.train(was[1])
    cells = float_to_uint8(out.cpu().numpy()).reshape(steps, steps, *out.shape[1:])
    a, b = float_to_uint8(x_a.cpu().numpy())[0], float_to_uint8(x_b.cpu().numpy())[0]
    rows = [[a if i == 0 else None] + list(cells[i]) + [b if i == steps - 1 else None] for i in range(steps)]
    return tile(rows)


@torch.no_grad()
def sample_grid(encoder, decoder, x: torch.Tensor, n_samples: int = 8, seed: int = 0, z_prior=None) -> np.ndarray:
    """The paper's Fig. 5: each row is a test image (left) then Dec(s of it, z) for n_samples draws of z,
    from z_prior (dvgan/prior.py) or, without one, from N(0, I).

    x (N, C, H, W) in [-1, 1]; the same seeded z's are used in every row, so a column shares its z.
    The result has N x (n_samples + 1) tiles.
    """
    was = encoder.training, decoder.training
    encoder.eval(), decoder.eval()
    s, mu, _ = encoder(x)
    eps = torch.randn(n_samples, mu.shape[1], generator=torch.Generator().manual_seed(seed)).numpy()
    z = torch.from_numpy(draw(z_prior, eps)).to(mu)
    out = decoder(s.repeat_interleave(n_samples, 0), z.repeat(len(x), 1))
    encoder.train(was[0]), decoder.train(was[1])
    cells = float_to_uint8(out.cpu().numpy()).reshape(len(x), n_samples, *out.shape[1:])
    real = float_to_uint8(x.cpu().numpy())
    return tile([[real[i]] + list(cells[i]) for i in range(len(x))])


def retrieval_strips(images: np.ndarray, queries, neighbour_idx: np.ndarray) -> np.ndarray:
    """The paper's Fig. 4: each row is a query, a white lane, then its neighbours nearest first.

    images uint8 (N, C, H, W); queries (Q,) indices; neighbour_idx (Q, k) indices into images.
    The result has Q x (k + 2) tiles.
    """
    return tile([[images[q], None] + [images[j] for j in nb] for q, nb in zip(queries, neighbour_idx)])
