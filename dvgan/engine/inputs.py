"""Turn what callers hold into the model's input: float32 (N, C, H, W) in [-1, 1].

Accepted: a file path, bytes, a PIL image, a uint8 array (H, W), (H, W, C) or (N, H, W, C), a float
array (C, H, W) or (N, C, H, W) already in [-1, 1] at the bundle's size, a torch tensor (as a float
array), or a list of paths / bytes / PIL images / uint8 HWC arrays. Decoded images go through the one
training preprocessing (dvgan.data.preprocess): mode conversion, bilinear resize, x / 127.5 - 1.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import InputError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
RANGE_SLACK = 1e-3  # float inputs may overshoot [-1, 1] by rounding, not by a different convention


# Pillow and the preprocessing module are imported only to decode images, so that float arrays
# need neither (a GPU host may carry only torch, onnx and onnxruntime).


def uint8_to_float(x: np.ndarray) -> np.ndarray:
    from ..data.preprocess import uint8_to_float as convert
    return convert(x)


def _decode(source, size: int, channels: int) -> np.ndarray:
    from ..data.preprocess import image_to_uint8, open_image
    return image_to_uint8(open_image(source), size, channels)


def _is_single_image(x) -> bool:
    if isinstance(x, (str, bytes, bytearray, os.PathLike)):
        return True
    return type(x).__module__.startswith("PIL.")  # a PIL image, without importing Pillow


def _uint8_image(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    """uint8 (H, W) or (H, W, C) -> uint8 (channels, size, size) through Pillow, as training does."""
    from PIL import Image

    from ..data.preprocess import image_to_uint8
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] not in (3, 4):
        raise InputError(f"uint8 image of shape {tuple(arr.shape)}: expected (H, W, C) with C = 1, 3 or 4")
    im = Image.fromarray(np.ascontiguousarray(arr))
    return image_to_uint8(im, size, channels)


def _float_batch(arr: np.ndarray, size: int, channels: int) -> np.ndarray:
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise InputError(f"float images of shape {tuple(arr.shape)}: expected (C, H, W) or (N, C, H, W)")
    if x.shape[1] != channels:
        raise InputError(f"float images have {x.shape[1]} channel(s) but the model takes {channels} "
                         f"(shape {tuple(x.shape)}, expected (N, {channels}, {size}, {size}))")
    if x.shape[2:] != (size, size):
        raise InputError(f"float images are {x.shape[2]}x{x.shape[3]} but the model takes {size}x{size}; "
                         "pass uint8 images or files to have them resized")
    if x.size:
        lo, hi = float(x.min()), float(x.max())  # NaN propagates through min and max: two passes, not three
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError("float images contain NaN or infinity")
        if lo < -1 - RANGE_SLACK or hi > 1 + RANGE_SLACK:
            raise InputError(f"float images must be in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
    return np.ascontiguousarray(x)


def to_batch(images, size: int, channels: int) -> np.ndarray:
    """Any accepted input -> float32 (N, channels, size, size) in [-1, 1]; InputError names the problem."""
    if hasattr(images, "detach") and hasattr(images, "cpu"):  # a torch tensor, without importing torch
        images = images.detach().cpu().numpy()
    if _is_single_image(images):
        return uint8_to_float(_decode(images, size, channels))[None]
    if isinstance(images, np.ndarray):
        if images.dtype == np.uint8:
            if images.ndim in (2, 3):
                return uint8_to_float(_uint8_image(images, size, channels))[None]
            if images.ndim == 4:
                return uint8_to_float(np.stack([_uint8_image(a, size, channels) for a in images])) \
                    if len(images) else np.zeros((0, channels, size, size), np.float32)
            raise InputError(f"uint8 images of shape {images.shape}: expected (H, W), (H, W, C) or (N, H, W, C)")
        if np.issubdtype(images.dtype, np.floating):
            return _float_batch(images, size, channels)
        raise InputError(f"images of dtype {images.dtype}: expected uint8 (H, W, C) or float (N, C, H, W)")
    if isinstance(images, (list, tuple)):
        if not images:
            return np.zeros((0, channels, size, size), np.float32)
        return np.concatenate([to_batch(im, size, channels) for im in images])
    raise UsageError(f"cannot use {type(images).__name__} as images: pass paths, PIL images, "
                     "uint8 (H, W, C) arrays or float (N, C, H, W) arrays")


def to_codes(name: str, codes, dim: int) -> np.ndarray:
    """Codes (N, dim) as float32; UsageError for another shape, InputError for NaN, inf or non-numbers."""
    try:
        a = np.ascontiguousarray(codes, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} codes cannot be read as float32 ({exc})") from None
    if a.ndim != 2 or a.shape[1] != dim:
        raise UsageError(f"{name} must have shape (N, {dim}), got {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name} codes contain NaN or infinity")
    return a


def list_images(folder: str) -> list[str]:
    """Image files under folder (recursively), sorted; UsageError if there are none."""
    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: no such folder")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
    if not found:
        raise UsageError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return found


__all__ = ["to_batch", "to_codes", "list_images", "IMAGE_SUFFIXES"]
