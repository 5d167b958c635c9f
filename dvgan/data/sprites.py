"""Procedural sprites: identities are (shape, colour, pattern) combinations drawn under continuous
unspecified factors (x, y, scale, rotation). Offline and deterministic from a seed.

``render(identity, factors)`` draws the true image for any combination, which is what lets the
evaluation score swaps Dec(s_a, mu_b) against the ground truth render(identity of a, factors of b).
"""
from __future__ import annotations

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "ellipse", "half-disc")
COLOURS = {  # RGB in [0, 1]
    "red": (0.95, 0.15, 0.15), "green": (0.15, 0.85, 0.2), "blue": (0.2, 0.35, 1.0),
    "yellow": (0.95, 0.9, 0.1), "magenta": (0.9, 0.2, 0.9), "cyan": (0.1, 0.9, 0.9),
    "orange": (1.0, 0.55, 0.05), "white": (0.95, 0.95, 0.95),
}
PATTERNS = ("solid", "stripes", "checker", "spots")
ATTRIBUTES = ("shape", "colour", "pattern")
NUM_IDENTITIES = len(SHAPES) * len(COLOURS) * len(PATTERNS)  # 256

# Unspecified factors, each drawn uniformly and independently within these ranges.
FACTORS = ("x", "y", "scale", "rotation")
# The sprite is large (its radius up to RADIUS of the image size) so that shape and pattern, not only
# colour and position, carry a fair share of the pixels at 32 x 32.
FACTOR_RANGES = np.array([
    [0.38, 0.62],               # x: centre, fraction of the width
    [0.38, 0.62],               # y: centre, fraction of the height
    [0.7, 1.0],                 # scale: radius as a fraction of RADIUS * size
    [-np.pi / 6, np.pi / 6],    # rotation, radians: under every shape's period of symmetry but the circle's
], dtype=np.float64)
RADIUS = 0.36
MARK = (0.0, -0.5, 0.2)  # orientation mark: centre (u, v) and radius in the sprite's frame (v < 0 is up)

_SUPERSAMPLE = 2  # anti-aliasing: render at 2x and average


def attributes_of(identity) -> np.ndarray:
    """identity (N,) -> (N, 3) indices into SHAPES, COLOURS, PATTERNS."""
    ident = np.asarray(identity, dtype=np.int64)
    if np.any((ident < 0) | (ident >= NUM_IDENTITIES)):
        raise ValueError(f"sprite identities are 0..{NUM_IDENTITIES - 1}")
    n_col, n_pat = len(COLOURS), len(PATTERNS)
    return np.stack([ident // (n_col * n_pat), (ident // n_pat) % n_col, ident % n_pat], axis=-1)


def identity_of(attributes) -> np.ndarray:
    """(N, 3) indices into SHAPES, COLOURS, PATTERNS -> identity (N,); the inverse of attributes_of."""
    a = np.asarray(attributes, dtype=np.int64)
    return (a[..., 0] * len(COLOURS) + a[..., 1]) * len(PATTERNS) + a[..., 2]


def identity_name(identity: int) -> str:
    shape, colour, pattern = attributes_of([identity])[0]
    return f"{list(COLOURS)[colour]}-{PATTERNS[pattern]}-{SHAPES[shape]}"


def sample_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) factors drawn independently and uniformly within FACTOR_RANGES."""
    lo, hi = FACTOR_RANGES[:, 0], FACTOR_RANGES[:, 1]
    return (lo + (hi - lo) * rng.random((n, len(FACTORS)))).astype(np.float32)


def _inside(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Membership of object-frame coordinates (radius 1) in one shape."""
    r = np.hypot(u, v)
    if SHAPES[shape] == "circle":
        return r <= 1.0
    if SHAPES[shape] == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if SHAPES[shape] == "triangle":  # regular, pointing up
        k = np.arange(3) * 2 * np.pi / 3 - np.pi / 2
        proj = u[..., None] * np.cos(k) + v[..., None] * np.sin(k)
        return proj.max(axis=-1) <= 0.55
    if SHAPES[shape] == "star":  # five points, radius between 0.45 and 1.0
        theta = np.arctan2(v, u) + np.pi / 2
        edge = 0.45 + 0.55 * np.abs(np.cos(2.5 * theta)) ** 3
        return r <= edge
    if SHAPES[shape] == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if SHAPES[shape] == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if SHAPES[shape] == "ellipse":
        return (u / 1.0) ** 2 + (v / 0.55) ** 2 <= 1.0
    return (r <= 1.0) & (v >= -0.1)  # half-disc


def _pattern(pattern: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Brightness multiplier in [0.35, 1] on the object, in the object's frame (it turns with it)."""
    dark = 0.35
    if PATTERNS[pattern] == "solid":
        return np.ones_like(u)
    if PATTERNS[pattern] == "stripes":
        return np.where(np.floor(v * 2.5) % 2 == 0, 1.0, dark)
    if PATTERNS[pattern] == "checker":
        return np.where((np.floor(u * 2.2) + np.floor(v * 2.2)) % 2 == 0, 1.0, dark)
    cu, cv = u * 2.0 - np.round(u * 2.0), v * 2.0 - np.round(v * 2.0)  # spots on a grid
    return np.where(cu ** 2 + cv ** 2 <= 0.12, dark, 1.0)


def render(identity, factors, size: int = 32) -> np.ndarray:
    """True images: identity (N,) ints, factors (N, 4) (x, y, scale, rotation) -> uint8 (N, size, size, 3).

    Deterministic: the same inputs give the same bytes. Background is black.
    """
    ident = np.atleast_1d(np.asarray(identity, dtype=np.int64))
    fac = np.atleast_2d(np.asarray(factors, dtype=np.float32))
    if fac.shape != (len(ident), len(FACTORS)):
        raise ValueError(f"factors must be (N, {len(FACTORS)}) for N identities, got {fac.shape}")
    attrs = attributes_of(ident)
    n = len(ident)
    ss = size * _SUPERSAMPLE
    grid = ((np.arange(ss) + 0.5) / ss).astype(np.float32)  # pixel centres in [0, 1]
    py, px = np.meshgrid(grid, grid, indexing="ij")
    x, y, scale, rot = (fac[:, i][:, None, None] for i in range(4))
    radius = scale * RADIUS
    dx, dy = (px[None] - x) / radius, (py[None] - y) / radius
    cos, sin = np.cos(-rot), np.sin(-rot)
    u, v = cos * dx - sin * dy, sin * dx + cos * dy  # (N, ss, ss) object frame
    colours = np.array(list(COLOURS.values()))
    shade = np.zeros((n, ss, ss), dtype=np.float32)
    for shape in np.unique(attrs[:, 0]):  # elementwise maths, batched over images of one shape
        sel = attrs[:, 0] == shape
        shade[sel] = _inside(shape, u[sel], v[sel])
    for pattern in np.unique(attrs[:, 2]):
        sel = attrs[:, 2] == pattern
        shade[sel] *= _pattern(pattern, u[sel], v[sel])
    # A dark mark above the centre shows which way is up on every sprite, the circle and ring too:
    # rotation is visible for every identity, so z can hold it the same way for all of them.
    shade *= np.hypot(u - MARK[0], v - MARK[1]) > MARK[2]
    out = shade[..., None] * colours[attrs[:, 1]][:, None, None, :]
    out = out.reshape(n, size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(2, 4))
    return np.clip(np.round(out * 255.0), 0, 255).astype(np.uint8)


def generate(per_identity: int = 100, size: int = 32, seed: int = 0, identities=None):
    """The sprites dataset: every identity drawn ``per_identity`` times under random factors.

    Returns (images uint8 (N, size, size, 3), identity (N,), factors float32 (N, 4)).
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(NUM_IDENTITIES) if identities is None else np.asarray(identities, dtype=np.int64)
    identity = np.repeat(ids, per_identity)
    factors = sample_factors(len(identity), rng)
    images = np.concatenate([render(identity[i:i + 512], factors[i:i + 512], size)
                             for i in range(0, len(identity), 512)])
    return images, identity, factors


def luma(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) -> uint8 (...): ITU-R 601 luma, rounded, as Pillow's "L" conversion."""
    return np.round(rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


class Renderer:
    """The true image of any identity under any factors, as the data loader delivers it: uint8
    (N, channels, size, size), grey through the loader's luma. ``sample`` draws fresh factors."""

    def __init__(self, size: int, channels: int):
        self.size, self.channels = size, channels

    def draw(self, identity, factors) -> np.ndarray:
        identity = np.asarray(identity, dtype=np.int64)
        factors = np.asarray(factors, dtype=np.float32)
        rgb = np.concatenate([render(identity[i:i + 512], factors[i:i + 512], self.size)
                              for i in range(0, len(identity), 512)]) if len(identity) else \
            np.zeros((0, self.size, self.size, 3), np.uint8)
        return luma(rgb)[:, None] if self.channels == 1 else rgb.transpose(0, 3, 1, 2)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return sample_factors(n, rng)
