"""Where the sprites analogies lose against the truth: how much z depends on the identity at a fixed pose.

For each run (sprites only), on fresh renders of all 256 identities under random factors:
  - one attribute changed at a fixed pose: how far mu moves, as a fraction of the distance between
    two random images, and the PSNR of Dec(s, mu of the changed image) against the unchanged image,
    beside Dec(s, mu) (its own z). A z that encodes the pose alike for every identity loses nothing;
  - with --shapes, the same for every pair of shapes: PSNR of Dec(s of shape i, mu of shape j) against
    the render of shape i.

    python benchmarks/analogy_gap.py runs/sprites [RUN ...] [--shapes] [--n 1000]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from dvgan.data import sprites
from dvgan.eval.analogies import image_scores, true_images
from dvgan.eval.suite import load_run


def _encode(encoder, images: np.ndarray):
    with torch.no_grad():
        return encoder(torch.from_numpy(images))


def attribute_changes(run, n: int, rng) -> dict:
    """{attribute: (z distance / random-pair distance, PSNR with the changed z, PSNR with its own z)}."""
    size, channels = run["cfg"].image_size, run["cfg"].channels
    enc, dec = run["encoder"], run["decoder"]
    factors = sprites.sample_factors(n, rng)
    base = rng.integers(0, sprites.NUM_IDENTITIES, n)
    x = true_images(base, factors, size, channels)
    s, mu, _ = _encode(enc, x)
    random_pairs = (mu - mu[torch.from_numpy(rng.permutation(n))]).pow(2).sum(1).mean()
    with torch.no_grad():
        own = image_scores(dec(s, mu).numpy(), x)["psnr"]
    out = {}
    for k, attribute in enumerate(sprites.ATTRIBUTES):
        levels = len((sprites.SHAPES, sprites.COLOURS, sprites.PATTERNS)[k])
        changed = sprites.attributes_of(base)
        changed[:, k] = (changed[:, k] + rng.integers(1, levels, n)) % levels
        mu_c = _encode(enc, true_images(sprites.identity_of(changed), factors, size, channels))[1]
        with torch.no_grad():
            psnr = image_scores(dec(s, mu_c).numpy(), x)["psnr"]
        out[attribute] = (float((mu_c - mu).pow(2).sum(1).mean() / random_pairs), psnr, own)
    return out


def shape_matrix(run, n: int, rng) -> np.ndarray:
    """(8, 8) PSNR of Dec(s of shape i, mu of shape j) against shape i's render, same factors and
    colour-pattern throughout a column pair."""
    size, channels = run["cfg"].image_size, run["cfg"].channels
    factors = sprites.sample_factors(n, rng)
    colour, pattern = np.divmod(rng.integers(0, len(sprites.COLOURS) * len(sprites.PATTERNS), n), len(sprites.PATTERNS))
    renders, codes = [], []
    for shape in range(len(sprites.SHAPES)):
        x = true_images(sprites.identity_of(np.stack([np.full(n, shape), colour, pattern], 1)), factors, size, channels)
        renders.append(x)
        codes.append(_encode(run["encoder"], x))
    m = np.zeros((len(renders), len(renders)))
    with torch.no_grad():
        for i, (x, (s, _, _)) in enumerate(zip(renders, codes)):
            for j, (_, mu, _) in enumerate(codes):
                m[i, j] = image_scores(run["decoder"](s, mu).numpy(), x)["psnr"]
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=1000, help="images per measurement")
    ap.add_argument("--shapes", action="store_true", help="also the shape-by-shape table")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| run | " +
          " | ".join(f"{a} changed: z moves, PSNR (own z)" for a in sprites.ATTRIBUTES) + " |")
    print("|---" * (1 + len(sprites.ATTRIBUTES)) + "|")
    matrices = {}
    for path in args.runs:
        run = load_run(path)
        if run["data"].renderer is None:
            raise SystemExit(f"{path}: its data has no renderer (it draws sprites at fresh factors)")
        rng = np.random.default_rng(args.seed)
        changes = attribute_changes(run, args.n, rng)
        cells = [f"{d:.3f}, {p:.2f} dB ({own:.2f})" for d, p, own in changes.values()]
        print(f"| `{path}` | " + " | ".join(cells) + " |")
        if args.shapes:
            matrices[path] = shape_matrix(run, max(args.n // 5, 20), rng)
    for path, m in matrices.items():
        print(f"\n`{path}`: PSNR (dB) of Dec(s of the row's shape, mu of the column's shape) against the row's "
              "render, same pose and colour-pattern\n")
        print("| s from \\ z from | " + " | ".join(sprites.SHAPES) + " |")
        print("|---" * (1 + len(sprites.SHAPES)) + "|")
        for name, row in zip(sprites.SHAPES, m):
            print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in row) + " |")


if __name__ == "__main__":
    main()
