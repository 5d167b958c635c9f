"""The pixel format every layer shares: uint8 images (..., C, H, W) and their float32 form in [-1, 1].

Numpy only. data.preprocess (which decodes and resizes images), the engine and the figures all
convert through here, so an image means the same numbers everywhere.
"""
from __future__ import annotations

import numpy as np


def uint8_to_float(x: np.ndarray) -> np.ndarray:
    """uint8 (..., C, H, W) -> float32 in [-1, 1]."""
    return x.astype(np.float32) / 127.5 - 1.0


def float_to_uint8(x: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8, rounding and clipping."""
    return np.clip(np.round((np.asarray(x, dtype=np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
