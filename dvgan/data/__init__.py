"""Identity-labelled image sets and their train/test splits.

A data spec names where images come from:
  ``sprites`` or ``sprites:PER_ID``  the built-in procedural sprites (256 identities)
  ``mnist:DIR``                      MNIST IDX files in DIR (labels = digits)
  ``lpc:DIR``                        LPC character sheets in DIR, one identity a sheet, the 5 x 4 pose
                                     grid (``lpc+hurt:DIR`` adds the "hurt" row); dvgan/data/lpc.py
  ``DIR``                            one sub-folder per identity, any image format Pillow reads

What a set knows beyond the identity (poses, attributes, a truth for any identity in any pose) is on
the ImageSet itself (dvgan/data/imageset.py), so evaluation asks the set, not its name.
"""
from __future__ import annotations

import functools
import logging
import os

import numpy as np

from ..errors import UsageError
from . import lpc, mnist, sprites
from .imageset import FactorSpace, ImageSet
from .preprocess import ImageError, image_to_uint8, open_image

log = logging.getLogger(__name__)

MNIST_TEST = 2000  # the last 2,000 MNIST images are the test split, everywhere
LPC_KINDS = ("lpc", "lpc+hurt")  # the 5 x 4 pose grid; with the "hurt" row
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}  # Pillow modes that load as 1 channel


class DataError(UsageError):
    """A data spec or data folder that cannot be used; the message says why."""


def default_channels(spec: str) -> int:
    """Channels a spec loads as: 3 for sprites, 1 for MNIST; for a folder, 1 if every image is greyscale.

    A folder is judged from the image headers alone (no pixel decoding); unreadable files are left to
    the loader, which skips them with a warning.
    """
    kind = spec.split(":", 1)[0]
    if kind in ("sprites", "mnist", *LPC_KINDS):
        return 1 if kind == "mnist" else 3
    if not os.path.isdir(spec):
        load(spec)  # raises the error that names what is wrong with the spec
    from PIL import Image
    for person in sorted(os.listdir(spec)):
        folder = os.path.join(spec, person)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            try:
                with Image.open(os.path.join(folder, name)) as im:
                    if im.mode not in GREY_MODES:
                        return 3
            except (OSError, ValueError, SyntaxError):
                continue
    return 1


def default_image_size(spec: str) -> int | None:
    """The image size a spec trains at unless told otherwise: 64 for LPC sheets (their cell size),
    None (the model's default) for the others."""
    return lpc.CELL if isinstance(spec, str) and spec.split(":", 1)[0] in LPC_KINDS else None


def load(spec: str, image_size: int = 32, channels: int | None = None, seed: int = 0) -> ImageSet:
    """Load a data spec at image_size x image_size; channels None = the data's own (1 or 3)."""
    if not isinstance(spec, str) or not spec:
        raise DataError("empty data spec")
    kind, _, arg = spec.partition(":")
    if kind == "sprites":
        return _load_sprites(spec, arg, image_size, channels, seed)
    if kind == "mnist":
        if not arg:
            raise DataError("mnist needs a folder: mnist:DIR")
        return _load_mnist(spec, arg, image_size, channels)
    if kind in LPC_KINDS:
        return _load_lpc(spec, arg, image_size, channels or 3, hurt=kind == "lpc+hurt")
    if os.path.isdir(spec):
        return _load_folder(spec, image_size, channels)
    if os.path.exists(spec):
        raise DataError(f"{spec}: not a folder (expected one sub-folder per identity)")
    raise DataError(f"unknown data spec {spec!r}: use sprites, sprites:PER_ID, mnist:DIR, lpc:DIR or an existing folder")


@functools.lru_cache(maxsize=1)
def _sprite_arrays(per_id: int, size: int, seed: int) -> tuple:
    """sprites.generate's arrays, read-only and kept for the next call: a process that loads the same
    sprites again (the demo trains on them, writes its gallery from them, evaluates on them) draws them
    once (what that saves: benchmarks/RESULTS.md, "README commands from a fresh clone")."""
    arrays = sprites.generate(per_id, size, seed)
    for a in arrays:
        a.flags.writeable = False
    return arrays


def _sprites_per_identity(spec: str, arg: str) -> int:
    try:
        per_id = int(arg) if arg else 100
    except ValueError:
        raise DataError(f"{spec}: sprites:PER_ID needs an integer, got {arg!r}") from None
    if per_id < 2:
        raise DataError(f"{spec}: at least 2 images per identity are needed")
    return per_id


def _sprite_channels(images: np.ndarray, channels: int | None) -> np.ndarray:
    """Rendered sprites uint8 (N, H, W, 3) -> (N, C, H, W); one channel is ITU-R 601 luma, as Pillow's "L"."""
    if channels == 1:
        return np.round(images.astype(np.float32) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)[:, None]
    return images.transpose(0, 3, 1, 2)


def _load_sprites(spec, arg, size, channels, seed) -> ImageSet:
    per_id = _sprites_per_identity(spec, arg)
    images, identity, factors = _sprite_arrays(per_id, size, seed)
    images = _sprite_channels(images, channels)
    names = [sprites.identity_name(i) for i in range(sprites.NUM_IDENTITIES)]
    space = FactorSpace(sprites.FACTORS, ranges=tuple(map(tuple, sprites.FACTOR_RANGES.tolist())),
                        renderer=sprites.Renderer(size, 1 if channels == 1 else 3))
    return ImageSet(np.ascontiguousarray(images), identity, [f"sprites:{i}" for i in range(len(identity))],
                    names, factors, sprites.attributes_of(identity), spec,
                    {"per_identity": per_id, "seed": seed, "factor_names": list(sprites.FACTORS),
                     "attribute_names": list(sprites.ATTRIBUTES),
                     "attribute_values": [list(sprites.SHAPES), list(sprites.COLOURS), list(sprites.PATTERNS)],
                     "default_split": {"holdout_identities": 0.2}},
                    space)


@functools.lru_cache(maxsize=1)
def _lpc_arrays(root: str, size: int, channels: int, hurt: bool, signature: tuple) -> dict:
    """lpc.load's arrays, read-only and kept for the next call with the same files (signature): the demo
    and `dvgan eval` load the same sheets several times in one process (672 sheets: tens of seconds)."""
    del signature  # part of the cache key only
    out = lpc.load(root, size, channels, hurt)
    for key in ("images", "labels", "factors", "attributes"):
        if out[key] is not None:
            out[key].flags.writeable = False
    return out


def _load_lpc(spec, root, size, channels, hurt) -> ImageSet:
    if not root:
        raise DataError(f"{spec}: lpc needs a folder of sheets: lpc:DIR")
    if not os.path.isdir(root):
        raise DataError(f"{spec}: no such folder {root}")
    try:
        a = _lpc_arrays(os.path.abspath(root), size, channels, hurt, lpc.signature(root))
    except lpc.SheetError as exc:
        raise DataError(str(exc)) from None
    meta = {"root": os.path.abspath(root), "factor_names": list(lpc.FACTORS),
            "default_split": {"holdout_identities": lpc.DEFAULT_HOLDOUT}}
    if a["attributes"] is not None:
        meta.update(attribute_names=a["attribute_names"], attribute_values=a["attribute_values"])
    return ImageSet(a["images"], a["labels"], list(a["sources"]), list(a["names"]), a["factors"], a["attributes"],
                    spec, meta, lpc.factor_space(hurt, a["columns"]))


def _mnist_arrays(directory: str) -> tuple:
    try:
        return mnist.load(directory)
    except ValueError as exc:
        raise DataError(str(exc)) from None


def _mnist_image(digit: np.ndarray, size: int, channels: int | None) -> np.ndarray:
    from PIL import Image
    return image_to_uint8(Image.fromarray(digit, "L"), size, channels or 1)


def _load_mnist(spec, directory, size, channels) -> ImageSet:
    x, y = _mnist_arrays(directory)
    images = np.stack([_mnist_image(im, size, channels) for im in x])
    return ImageSet(images, y, [f"mnist:{i}" for i in range(len(y))], [str(d) for d in range(10)],
                    spec=spec, meta={"directory": os.path.abspath(directory), "default_split": {"fixed_test": MNIST_TEST}})


def _load_folder(root, size, channels) -> ImageSet:
    people = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not people:
        raise DataError(f"{root}: no identity sub-folders (expected one folder per identity)")
    decoded, labels, sources, skipped = [], [], [], []
    for label, person in enumerate(people):
        folder = os.path.join(root, person)
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            try:
                decoded.append(open_image(path))
            except ImageError:
                skipped.append(os.path.join(person, name))
                continue
            labels.append(label)
            sources.append(os.path.relpath(path, root))
    if skipped:
        shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        log.warning("skipped %d file(s) that are not readable images: %s", len(skipped), shown)
    if not decoded:
        raise DataError(f"{root}: no readable images in its identity folders")
    if channels is None:
        channels = 1 if all(im.mode in GREY_MODES for im in decoded) else 3
    images = np.stack([image_to_uint8(im, size, channels) for im in decoded])
    return ImageSet(images, np.asarray(labels, dtype=np.int64), sources, people, spec=root,
                    meta={"root": os.path.abspath(root), "skipped": skipped})


def load_items(spec: str, sources, image_size: int, channels: int, seed: int = 0) -> list:
    """Some images of a data spec, named by their sources (ImageSet.sources: "sprites:i", "mnist:i", or a
    file's path within an identity folder), each drawn or read alone rather than loading the whole set.

    Returns one uint8 (C, H, W) per source, equal to load(spec, image_size, channels, seed).images[i],
    or None for a source the spec does not hold (a file since removed, an index out of range).
    """
    kind, _, arg = spec.partition(":")
    if kind == "sprites":
        per_id = _sprites_per_identity(spec, arg)
        idx = [_item_number(s, "sprites", sprites.NUM_IDENTITIES * per_id) for s in sources]
        found = np.array([i for i in idx if i is not None], dtype=np.int64)
        # The factors of every image come from one seeded stream, as in sprites.generate; drawing them is
        # cheap, rendering is not: only the images asked for are rendered.
        factors = sprites.sample_factors(sprites.NUM_IDENTITIES * per_id, np.random.default_rng(seed))
        drawn = iter(_sprite_channels(sprites.render(found // per_id, factors[found], image_size), channels)
                     if len(found) else [])
        return [None if i is None else next(drawn) for i in idx]
    if kind in LPC_KINDS:  # cells of sheets: the whole set is decoded once a process and kept
        ds = load(spec, image_size, channels, seed=seed)
        where = {src: i for i, src in enumerate(ds.sources)}
        return [None if where.get(s) is None else ds.images[where[s]] for s in sources]
    if kind == "mnist":
        x, _ = _mnist_arrays(arg)
        idx = [_item_number(s, "mnist", len(x)) for s in sources]
        return [None if i is None else _mnist_image(x[i], image_size, channels) for i in idx]
    out = []
    for source in sources:
        try:
            out.append(image_to_uint8(open_image(os.path.join(spec, str(source))), image_size, channels))
        except ImageError:
            out.append(None)
    return out


def _item_number(source, kind: str, n: int) -> int | None:
    """i of a source "KIND:i" with 0 <= i < n, else None."""
    prefix, _, number = str(source).partition(":")
    if prefix != kind or not number.isdigit() or int(number) >= n:
        return None
    return int(number)


def make_split(data: ImageSet, holdout_identities: float | None = None,
               test_fraction: float | None = None, seed: int = 0) -> dict:
    """Train/test indices. identity-disjoint (holdout_identities) or within-identity (test_fraction).

    holdout_identities in [0, 1) is the fraction of identities held out; a whole number >= 1 is their
    count. Without either, the set's own default (meta["default_split"]): sprites hold out 20% of
    identities, LPC sheets 100 of 672 (Reed et al.); MNIST uses its fixed split (the last 2,000 images
    are the test set); folders hold out 20% of each identity's images.
    """
    if holdout_identities is not None and test_fraction is not None:
        raise DataError("choose one of --holdout-identities and --test-fraction")
    if test_fraction is not None and not 0.0 <= test_fraction < 1.0:
        raise DataError(f"--test-fraction must be in [0, 1), got {test_fraction}")
    if holdout_identities is not None and not (0.0 <= holdout_identities < 1.0 or
                                               (holdout_identities >= 1 and float(holdout_identities).is_integer())):
        raise DataError(f"--holdout-identities must be a fraction in [0, 1) or a whole number of identities, "
                        f"got {holdout_identities}")
    rng = np.random.default_rng(seed)
    n = len(data)
    if holdout_identities is None and test_fraction is None:
        default = data.meta.get("default_split", {"test_fraction": 0.2})
        if "fixed_test" in default:
            n_test = default["fixed_test"] if n > 2 * default["fixed_test"] else n // 5
            return _split_dict("fixed", np.arange(n - n_test), np.arange(n - n_test, n), data)
        holdout_identities, test_fraction = default.get("holdout_identities"), default.get("test_fraction")
    if holdout_identities is not None:
        ids = np.unique(data.labels)
        if holdout_identities >= 1:
            n_out = int(holdout_identities)
            if n_out > len(ids) - 2:
                raise DataError(f"--holdout-identities {n_out}: the data has {len(ids)} identities, and training "
                                "needs at least two")
        else:
            n_out = int(round(len(ids) * holdout_identities))
        test_ids = set(rng.permutation(ids)[:n_out].tolist())
        is_test = np.array([lab in test_ids for lab in data.labels])
        return _split_dict("identity", np.flatnonzero(~is_test), np.flatnonzero(is_test), data)
    train, test = [], []
    for lab in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == lab))
        n_test = int(round(len(idx) * test_fraction))
        if n_test >= len(idx) and len(idx) > 0:
            n_test = len(idx) - 1
        test += idx[:n_test].tolist()
        train += idx[n_test:].tolist()
    return _split_dict("within", np.sort(train), np.sort(test), data)


def _split_dict(kind, train, test, data: ImageSet) -> dict:
    return {
        "kind": kind,
        "spec": data.spec,
        "train": [int(i) for i in train],
        "test": [int(i) for i in test],
        "train_identities": sorted({int(data.labels[i]) for i in train}),
        "test_identities": sorted({int(data.labels[i]) for i in test}),
        "sources": {"train": [data.sources[i] for i in train], "test": [data.sources[i] for i in test]},
    }


__all__ = ["ImageSet", "FactorSpace", "DataError", "ImageError", "load", "load_items", "make_split", "default_channels",
           "default_image_size", "sprites", "lpc"]
