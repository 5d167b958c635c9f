"""MNIST from the standard IDX files (gzip-compressed or raw)."""
from __future__ import annotations

import gzip
import os
import struct

import numpy as np

_IMAGE_FILES = ("t10k-images-idx3-ubyte", "train-images-idx3-ubyte")
_LABEL_FILES = ("t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte")


def _find(directory: str, names) -> str | None:
    for name in names:
        for suffix in (".gz", ""):
            path = os.path.join(directory, name + suffix)
            if os.path.isfile(path):
                return path
    return None


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (unsigned-byte data) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path}: unreadable IDX file ({exc})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: truncated IDX file ({body.size} of {int(np.prod(dims))} bytes)")
    return body.reshape(dims)


def load(directory: str):
    """(images uint8 (N, 28, 28), labels int64 (N,)) from a folder with the test or train IDX files.

    The test-set files (t10k-*) are preferred when both are present.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"mnist:{directory}: no such directory")
    images, labels = _find(directory, _IMAGE_FILES), _find(directory, _LABEL_FILES)
    if images is None or labels is None:
        raise ValueError(f"mnist:{directory}: no IDX image and label files (t10k-images-idx3-ubyte[.gz], ...)")
    x, y = read_idx(images), read_idx(labels).astype(np.int64)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"mnist:{directory}: image and label files do not match ({x.shape}, {y.shape})")
    return x, y
