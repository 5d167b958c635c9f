"""The one image preprocessing path, shared by training, evaluation and the engine.

Any image -> Pillow mode "L" (1 channel) or "RGB" (3 channels) -> resized to size x size with
bilinear filtering (Pillow, reducing_gap off) -> float32 in [-1, 1] as x / 127.5 - 1.
Alpha is composited on black; 16-bit and palette images are converted through Pillow.
"""
from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import InputError, UsageError
# The float form of the images; imported from here by the data loaders, evaluation and the engine.
from ..pixels import float_to_uint8, uint8_to_float  # noqa: F401

RESIZE = "bilinear"  # recorded in checkpoints and bundles
MAX_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs: images over 64 megapixels


class ImageError(InputError):
    """An input image that cannot be used; the message names the image and the problem."""


class ImagePathError(ImageError, UsageError):
    """A path that names no image file (missing, or a folder): a usage error, exit code 2."""
    exit_code = 2


def open_image(source) -> Image.Image:
    """Open a path, bytes or PIL image and fully decode it; raise ImageError on anything unusable."""
    if isinstance(source, Image.Image):
        return source
    name = source if isinstance(source, (str, os.PathLike)) else "<bytes>"
    try:
        if isinstance(source, (bytes, bytearray)):
            fp = io.BytesIO(source)
        else:
            if os.path.isdir(source):
                raise ImagePathError(f"{name}: is a directory, expected an image file")
            if not os.path.exists(source):
                raise ImagePathError(f"{name}: no such file")
            if os.path.getsize(source) == 0:
                raise ImageError(f"{name}: empty file")
            fp = source
        with Image.open(fp) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise ImageError(f"{name}: {w}x{h} pixels is over the {MAX_PIXELS} pixel limit")
            im.load()
            return im.copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{name}: not a readable image ({type(exc).__name__})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"{name}: not a readable image ({exc})") from None


def to_mode(im: Image.Image, channels: int) -> Image.Image:
    """Convert any Pillow image to "L" or "RGB"; alpha is composited on black."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / hi * 255.0, 0, 255).astype(np.uint8), "L")
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA")
    if im.mode == "La":  # Pillow converts premultiplied LA only to LA
        im = im.convert("LA")
    if im.mode in ("RGBA", "LA", "RGBa"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("L" if channels == 1 else "RGB")


def image_to_uint8(im: Image.Image, size: int, channels: int) -> np.ndarray:
    """Pillow image -> uint8 (channels, size, size) after mode conversion and resizing."""
    if not im.width or not im.height:
        raise ImageError(f"image is {im.width}x{im.height} pixels: nothing to use")
    try:
        im = to_mode(im, channels)
    except (ValueError, OSError) as exc:  # a mode Pillow cannot convert
        raise ImageError(f"image of mode {im.mode!r} cannot be converted ({exc})") from None
    if im.size != (size, size):
        im = im.resize((size, size), Image.BILINEAR, reducing_gap=None)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy()
