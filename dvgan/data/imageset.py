"""ImageSet: identity-labelled images, and what a data set knows beyond the identity.

Evaluation asks an ImageSet what it can measure, never which data set it is:
  factors + factor_space   each image's unspecified factors (its pose): continuous (sprites: x, y,
                           scale, rotation; regressed) or categorical (LPC: action, direction, frame;
                           classified)
  attributes               each image's identity attributes (meta["attribute_names"], ["attribute_values"])
  true_images()            the true image of any identity in any pose: drawn by the factor space's
                           renderer where it has one (sprites), else looked up among the set's own
                           images (LPC sheets: a's sheet at b's action, direction and frame)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .preprocess import uint8_to_float


@dataclass(frozen=True)
class FactorSpace:
    """What the columns of ImageSet.factors are.

    names       one per column
    values      categorical factors: each factor's value names (the column holds indices into them);
                None for continuous factors
    ranges      continuous factors: (low, high) of each; None for categorical ones
    same_pose   categorical factors: the ones two images must share to count as "the same pose" in
                retrieval by z (LPC: action and direction)
    renderer    draws any identity in any pose, or None: ``draw(identity (N,), factors (N, F))`` ->
                uint8 (N, C, H, W) as the loader delivers images, ``sample(n, rng)`` -> factors (n, F)
    """
    names: tuple
    values: tuple | None = None
    ranges: tuple | None = None
    same_pose: tuple = ()
    renderer: object = None

    @property
    def categorical(self) -> bool:
        return self.values is not None


@dataclass
class ImageSet:
    images: np.ndarray                 # uint8 (N, C, H, W)
    labels: np.ndarray                 # int64 (N,), identity label
    sources: list                      # (N,) where each image came from (file path, "sprites:i", "sheet.png:r3c5")
    identity_names: list               # name of each label value
    factors: np.ndarray | None = None  # (N, F): each image's unspecified factors, described by factor_space
    attributes: np.ndarray | None = None  # int64 (N, A): identity attributes (meta["attribute_names"])
    spec: str = ""
    meta: dict = field(default_factory=dict)
    factor_space: FactorSpace | None = None
    _by_pose: dict | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self):
        return len(self.labels)

    def subset(self, idx) -> "ImageSet":
        idx = np.asarray(idx, dtype=np.int64)
        pick = lambda a: None if a is None else a[idx]  # noqa: E731
        return ImageSet(self.images[idx], self.labels[idx], [self.sources[i] for i in idx],
                        self.identity_names, pick(self.factors), pick(self.attributes), self.spec, self.meta,
                        self.factor_space)

    def float_images(self, idx=None) -> np.ndarray:
        """float32 (N, C, H, W) in [-1, 1]."""
        return uint8_to_float(self.images if idx is None else self.images[idx])

    @property
    def knows_truth(self) -> bool:
        """Whether true_images can answer: the set knows each image's pose."""
        return self.factors is not None and self.factor_space is not None

    @property
    def renderer(self):
        """The factor space's renderer (draws any pose, fresh factors included), or None."""
        return self.factor_space.renderer if self.factor_space is not None else None

    def true_images(self, identity, factors) -> tuple:
        """The true image of identity[i] in pose factors[i]: (uint8 (N, C, H, W), found bool (N,)).

        A renderer draws every pair. Without one the image is the set's own image of that identity in
        that pose; where the set has none, found is False and the image is all zeros.
        """
        identity = np.asarray(identity, dtype=np.int64)
        factors = np.asarray(factors)
        if not self.knows_truth:
            raise ValueError(f"{self.spec or 'this data set'}: the images' poses are unknown")
        if self.renderer is not None:
            return self.renderer.draw(identity, factors), np.ones(len(identity), bool)
        if self._by_pose is None:
            self._by_pose = {(int(lab), f.tobytes()): i for i, (lab, f) in enumerate(zip(self.labels, self.factors))}
        rows = np.array([self._by_pose.get((int(i), np.asarray(f, self.factors.dtype).tobytes()), -1)
                         for i, f in zip(identity, factors)], dtype=np.int64)
        found = rows >= 0
        out = np.zeros((len(rows), *self.images.shape[1:]), np.uint8)
        out[found] = self.images[rows[found]]
        return out, found

    def swap_truth(self, a, b) -> tuple:
        """What Dec(s_a, mu_b) should draw: the image of a's identity in b's pose (see true_images)."""
        a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
        return self.true_images(self.labels[a], self.factors[b])
