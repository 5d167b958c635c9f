"""Pictures that training, evaluation and the demo all draw: tiled grids of images, the swap grid
(the paper's Fig. 2a), PNG files and training curves. Grids are uint8 (H, W, C) arrays; save_png
writes them. The figures only evaluation draws are in dvgan/eval/figures.py."""
from __future__ import annotations

import json

import numpy as np

from . import ops
from .files import atomic_write
from .pixels import float_to_uint8

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


def headed_grid(top: np.ndarray, left: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """top (M, C, H, W) across the first row, left (N, C, H, W) down the first column, cells
    (N, M, C, H, W) inside, the corner blank; all uint8."""
    return tile([[None] + list(top)] + [[left[i]] + list(cells[i]) for i in range(len(left))])


def swap_grid(encoder, decoder, x_s, x_z) -> np.ndarray:
    """The paper's Fig. 2a: top row gives s, left column gives z (its mu), cell (i, j) = Dec(s_j, mu_i).

    x_s (M, C, H, W), x_z (N, C, H, W) float tensors in [-1, 1]; the result has (N + 1) x (M + 1) tiles
    with the top-left corner blank. With x_s == x_z the diagonal shows reconstructions. The models may
    be training: they draw in eval mode and are put back as they were.
    """
    with ops.evaluating(encoder, decoder):
        cells = ops.swap_grid(encoder, decoder, x_s, x_z)
    u8 = lambda t: float_to_uint8(t.cpu().numpy())  # noqa: E731
    return headed_grid(u8(x_s), u8(x_z), u8(cells))


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
