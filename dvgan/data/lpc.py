"""LPC character sheets: the paper's Sprites (Reed et al., 2015) drawn from Liberated Pixel Cup art.

A folder of sheets in the LPC generator's layout: one PNG per character, a grid of 64x64 cells. Rows
0-19 are 5 actions x 4 directions (spellcast, thrust, walk, slash, shoot x up, left, down, right), one
animation frame per column; row 20 is "hurt" (facing down). Every non-empty cell is one image whose
action, direction and frame are known; one sheet is one identity.

An optional attributes.json names each character's attribute values (body, hair, armour, ...):
  {"characters": [{"id": "lpc_000", "file": "lpc_000.png", "attributes": {"sex": "female", ...}}, ...],
   "attributes": {"sex": {"values": ["male", "female"]}, ...},     optional: the value lists
   "background": [240, 240, 240]}                                    optional: the sheets' background
Without it every PNG in the folder is a character, named by its file stem.

A cell is empty when every pixel is the background: fully transparent on a sheet with alpha,
otherwise the sheet's background colour (attributes.json's, else the most common colour of the cells'
corners). Sheets with alpha are composited on black, as every image the package reads.
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
from PIL import Image

from .imageset import FactorSpace
from .preprocess import MAX_PIXELS, image_to_uint8

log = logging.getLogger(__name__)

CELL = 64
ACTIONS = ("spellcast", "thrust", "walk", "slash", "shoot")
DIRECTIONS = ("up", "left", "down", "right")
HURT_ROW = 20  # row 20: the "hurt" animation, facing down
FACTORS = ("action", "direction", "frame")
ATTRIBUTES_FILE = "attributes.json"
DEFAULT_HOLDOUT = 100 / 672  # Reed et al.: 100 test characters of 672


class SheetError(ValueError):
    """A sheet folder that cannot be used; the message names the file and the problem."""


def row_pose(row: int) -> tuple:
    """(action index, direction index) of a sheet row; the hurt row's action is len(ACTIONS)."""
    if row == HURT_ROW:
        return len(ACTIONS), DIRECTIONS.index("down")
    return row // len(DIRECTIONS), row % len(DIRECTIONS)


def factor_space(hurt: bool, columns: int) -> FactorSpace:
    actions = ACTIONS + (("hurt",) if hurt else ())
    return FactorSpace(FACTORS, values=(actions, DIRECTIONS, tuple(str(c) for c in range(columns))),
                       same_pose=("action", "direction"))


def signature(root: str) -> tuple:
    """(name, size, mtime) of the folder's PNG files and attributes.json: changes when any of them does."""
    out = []
    for name in sorted(os.listdir(root)):
        if name.lower().endswith(".png") or name == ATTRIBUTES_FILE:
            st = os.stat(os.path.join(root, name))
            out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def read_characters(root: str) -> tuple:
    """([(id, file)], attribute names, value lists, attribute indices (n, A) or None, background or None)."""
    path = os.path.join(root, ATTRIBUTES_FILE)
    pngs = sorted(n for n in os.listdir(root) if n.lower().endswith(".png") and os.path.isfile(os.path.join(root, n)))
    if not os.path.exists(path):
        if not pngs:
            raise SheetError(f"{root}: no .png sheets in the folder")
        return [(os.path.splitext(n)[0], n) for n in pngs], [], [], None, None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SheetError(f"{path}: not valid JSON ({exc})") from None
    chars = doc.get("characters") if isinstance(doc, dict) else None
    if not isinstance(chars, list) or not chars:
        raise SheetError(f"{path}: expected an object with a non-empty \"characters\" list")
    declared = doc.get("attributes")
    if declared is not None and not isinstance(declared, dict):
        raise SheetError(f"{path}: \"attributes\" must map each attribute to its values")
    first = chars[0].get("attributes") if isinstance(chars[0], dict) else None
    names = list(declared) if declared else list(first or {})
    values = {n: _declared_values(path, n, declared[n]) for n in names} if declared else {n: [] for n in names}
    out, seen, ids, rows = [], set(), set(), []
    for k, ch in enumerate(chars):
        if not isinstance(ch, dict) or not isinstance(ch.get("file"), str) or not isinstance(ch.get("attributes", {}), dict):
            raise SheetError(f"{path}: character {k} needs a \"file\" and an \"attributes\" object")
        file = ch["file"]
        ident = str(ch.get("id", os.path.splitext(file)[0]))
        if not os.path.isfile(os.path.join(root, file)):
            raise SheetError(f"{path}: names {file}, which is not in {root}")
        if file in seen or ident in ids:
            raise SheetError(f"{path}: names {file if file in seen else ident} twice")
        seen.add(file)
        ids.add(ident)
        attrs = ch.get("attributes", {})
        if sorted(attrs) != sorted(names):
            raise SheetError(f"{path}: {ident} has attributes {sorted(attrs)}, the others {sorted(names)}")
        row = []
        for n in names:
            v = str(attrs[n])
            if v not in values[n]:
                if declared:
                    raise SheetError(f"{path}: {ident} has {n} {v!r}, not among the values listed for {n}")
                values[n].append(v)
            row.append(values[n].index(v))
        out.append((ident, file))
        rows.append(row)
    unlisted = sorted(set(pngs) - seen)
    if unlisted:
        log.warning("%s: %d .png file(s) not in %s left out: %s", root, len(unlisted), ATTRIBUTES_FILE,
                    ", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else ""))
    background = doc.get("background")
    if background is not None and (not isinstance(background, list) or len(background) != 3):
        raise SheetError(f"{path}: \"background\" must be [r, g, b]")
    attributes = np.asarray(rows, dtype=np.int64).reshape(len(out), len(names)) if names else None
    return out, names, [values[n] for n in names], attributes, background


def _declared_values(path: str, name: str, entry) -> list:
    values = entry.get("values") if isinstance(entry, dict) else entry
    if not isinstance(values, list) or not values:
        raise SheetError(f"{path}: attribute {name} lists no values")
    return [str(v) for v in values]


def _sheet_size(path: str, rows_needed: int) -> tuple:
    """(width, height) from the sheet's header, checked: readable, a whole number of cells, enough rows."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise SheetError(f"{path}: not a readable PNG ({type(exc).__name__})") from None
    if w * h > MAX_PIXELS:
        raise SheetError(f"{path}: {w}x{h} pixels is over the {MAX_PIXELS} pixel limit")
    if w % CELL or h % CELL or not w or not h:
        raise SheetError(f"{path}: {w}x{h} pixels is not a whole number of {CELL}x{CELL} cells")
    if h // CELL < rows_needed:
        raise SheetError(f"{path}: {h // CELL} rows of cells, the LPC layout needs {rows_needed}")
    return w, h


def _decode(path: str, background) -> tuple:
    """(pixels uint8 (H, W, C) with C = 3 or 4, empty-cell test) of a sheet."""
    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise SheetError(f"{path}: not a readable PNG ({exc})") from None
    if has_alpha:
        return arr, lambda cells: ~(cells[..., 3] > 0).any(axis=(-2, -1))
    if background is None:  # the most common colour of the cells' corners
        corners = arr[np.ix_(np.r_[0:arr.shape[0]:CELL, CELL - 1:arr.shape[0]:CELL],
                             np.r_[0:arr.shape[1]:CELL, CELL - 1:arr.shape[1]:CELL])].reshape(-1, 3)
        colours, counts = np.unique(corners, axis=0, return_counts=True)
        background = colours[counts.argmax()]
    bg = np.asarray(background, np.uint8)
    return arr, lambda cells: (cells == bg).all(axis=(-3, -2, -1))


def load(root: str, size: int, channels: int, hurt: bool = False) -> dict:
    """Every non-empty cell of every sheet: {"images" uint8 (N, C, size, size), "labels", "factors"
    int64 (N, 3) (action, direction, frame), "attributes" int64 (N, A) or None, "sources", "names",
    "attribute_names", "attribute_values", "columns"}. Raises SheetError naming the file at fault,
    before any pixel is decoded where the headers show it.
    """
    t0 = time.perf_counter()
    chars, attr_names, attr_values, char_attrs, background = read_characters(root)
    rows = list(range(HURT_ROW + 1 if hurt else HURT_ROW))
    widths = [_sheet_size(os.path.join(root, file), len(rows))[0] for _, file in chars]
    columns = max(widths) // CELL
    # One array for every cell there could be; pages of the empty cells' slots are never written, so
    # they take no memory, and the result is a view of its first N images (no copy of 1.4 GB at 64).
    images = np.empty((len(rows) * sum(widths) // CELL, channels, size, size), np.uint8)
    labels, factors, sources, n = [], [], [], 0
    for label, (_, file) in enumerate(chars):
        path = os.path.join(root, file)
        arr, empty = _decode(path, background)
        cols = arr.shape[1] // CELL
        cells = arr[:len(rows) * CELL].reshape(len(rows), CELL, cols, CELL, -1).transpose(0, 2, 1, 3, 4)
        keep = np.argwhere(~empty(cells))  # (K, 2): row, column
        if not len(keep):
            raise SheetError(f"{path}: every cell is empty")
        picked = cells[keep[:, 0], keep[:, 1]]  # (K, 64, 64, C)
        if size == CELL and channels == 3 and picked.shape[-1] == 3:
            images[n:n + len(keep)] = picked.transpose(0, 3, 1, 2)
        else:  # the package's one preprocessing path: alpha on black, Pillow's bilinear resize, luma
            for k, cell in enumerate(picked):
                images[n + k] = image_to_uint8(Image.fromarray(cell), size, channels)
        n += len(keep)
        labels += [label] * len(keep)
        factors += [(*row_pose(rows[r]), c) for r, c in keep]
        sources += [f"{file}:r{rows[r]}c{c}" for r, c in keep]
        if (label + 1) % 100 == 0:
            log.debug("%d of %d sheets, %.1f s", label + 1, len(chars), time.perf_counter() - t0)
    labels = np.asarray(labels, dtype=np.int64)
    log.info("%s: %d images of %d characters at %d x %d in %.1f s", root, n, len(chars), size, size,
             time.perf_counter() - t0)
    return {"images": images[:n], "labels": labels, "factors": np.asarray(factors, dtype=np.int64).reshape(n, 3),
            "attributes": None if char_attrs is None else char_attrs[labels], "sources": sources,
            "names": [ident for ident, _ in chars], "attribute_names": attr_names,
            "attribute_values": attr_values, "columns": columns}
