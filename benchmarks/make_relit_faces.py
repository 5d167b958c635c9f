"""Write a face set whose variation is mostly light, for checking a face recipe on data it was not tuned on.

Each output image is a source face under one light: a Lambertian shading of an ellipsoid the size of
the image, from a direction drawn at random (azimuth up to +-120 degrees, elevation -30 to 70), plus a
little ambient light, times a random exposure. Lights from far to the side leave half the face dark
and lights from behind leave it almost black, the way a light stage photographs faces (the kind of
data of the paper's Extended Yale B). It is a stand-in, not real light: the shape is one ellipsoid
for every face, so shadows follow no real nose or brow.

    python benchmarks/make_relit_faces.py SOURCE_DIR OUT_DIR --per-person 48 --seed 0

SOURCE_DIR holds one folder per person (ORL's layout); OUT_DIR gets the same folders with PNGs.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from PIL import Image


def shading(h: int, w: int, azimuth: float, elevation: float, ambient: float) -> np.ndarray:
    """(h, w) light on an ellipsoid filling the image, lit from (azimuth, elevation) in radians."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (x + 0.5) / w * 2 - 1          # -1 left .. 1 right
    v = 1 - (y + 0.5) / h * 2          # -1 bottom .. 1 top
    r2 = np.clip(u ** 2 + v ** 2, 0, 0.98)
    normal = np.stack([u, v, np.sqrt(1 - r2)], axis=-1)    # outward normal of the unit sphere, stretched
    light = np.array([np.sin(azimuth) * np.cos(elevation), np.sin(elevation), np.cos(azimuth) * np.cos(elevation)])
    return ambient + np.clip(normal @ light, 0, None)


def relight(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One grey face (h, w) uint8 under a random light, uint8."""
    az = np.deg2rad(rng.uniform(-120, 120))
    el = np.deg2rad(rng.uniform(-30, 70))
    lit = face.astype(np.float32) * shading(*face.shape, az, el, ambient=rng.uniform(0.02, 0.15))
    return np.clip(lit * rng.uniform(0.8, 1.4), 0, 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--per-person", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    people = sorted(d for d in os.listdir(args.source) if os.path.isdir(os.path.join(args.source, d)))
    for person in people:
        folder = os.path.join(args.source, person)
        faces = [np.asarray(Image.open(os.path.join(folder, f)).convert("L"))
                 for f in sorted(os.listdir(folder)) if not f.startswith(".")]
        os.makedirs(os.path.join(args.out, person), exist_ok=True)
        for i in range(args.per_person):
            face = faces[rng.integers(len(faces))]
            Image.fromarray(relight(face, rng)).save(os.path.join(args.out, person, f"{i:03d}.png"))
    print(f"wrote {len(people)} people x {args.per_person} images to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
