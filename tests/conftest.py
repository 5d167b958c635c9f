import os

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


class Evil:
    """A pickle payload: unpickling it creates the marker file. weights_only loading must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_model_config(**kw):
    from dvgan.config import ModelConfig
    base = dict(image_size=32, channels=3, s_dim=8, z_dim=8, width=8, adv_width=8)
    base.update(kw)
    return ModelConfig(**base)


def tiny_train_config(**kw):
    from dvgan.config import TrainConfig
    base = dict(steps=4, batch_size=8, sample_every=0, log_every=2, ckpt_every=2)
    base.update(kw)
    return TrainConfig(**base)


def as_format_1(state: dict) -> dict:
    """A checkpoint dict as dvgan 0.1.0 wrote it (checkpoint format 1): the same, with the fields of
    CoordConv and the pair critic, both off."""
    old = {**state, "format_version": 1, "model_config": {**state["model_config"], "coords": False}}
    if "train_config" in state:
        old["train_config"] = {**state["train_config"], "w_zpair": 0.0}
        old["pair_critic"] = {}
    return old


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder trained for a few steps on sprites (3 images per identity)."""
    from dvgan.train.loop import train
    out = str(tmp_path_factory.mktemp("run") / "run")
    train(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, out, device="cpu", progress=False)
    return out


# -- synthetic LPC character sheets ----------------------------------------------------------------

LPC_BG = (240, 240, 240)


def lpc_frames(row: int, columns: int = 4) -> int:
    """Frames the synthetic sheets draw in a row (the rest of the row is left empty)."""
    return 1 + (row * 7) % columns


def lpc_cell_mark(label: int, row: int, col: int) -> tuple:
    """The colours a synthetic cell carries: its character's (a block) and its place (a pixel)."""
    return (20 + 15 * label, 100, 50), (5 * row, 30 * col + 10, 7)


def write_lpc_sheet(path, label: int, columns: int = 4, rows: int = 21, alpha: bool = False, size=None) -> None:
    """A sheet in the LPC layout (64x64 cells, rows x columns): in row r the first lpc_frames(r) cells
    hold a block of the character's colour and one pixel that encodes (r, c); the others are background
    (LPC_BG, or transparent with alpha)."""
    w, h = size or (64 * columns, 64 * rows)
    sheet = np.zeros((h, w, 4), np.uint8) if alpha else np.empty((h, w, 3), np.uint8)
    if not alpha:
        sheet[:] = LPC_BG
    for r in range(min(rows, h // 64)):
        for c in range(min(lpc_frames(r, columns), w // 64)):
            ident, place = lpc_cell_mark(label, r, c)
            y, x = 64 * r, 64 * c
            sheet[y + 8:y + 40, x + 16:x + 48, :3] = ident
            sheet[y + 50, x + 50, :3] = place
            if alpha:
                sheet[y + 8:y + 40, x + 16:x + 48, 3] = 255
                sheet[y + 50, x + 50, 3] = 255
    from PIL import Image
    Image.fromarray(sheet, "RGBA" if alpha else "RGB").save(path)


LPC_ATTRIBUTES = {"sex": ["male", "female"], "hair": ["blonde", "black", "red"]}


def write_lpc_folder(root, n: int = 6, attributes: bool = True, **sheet) -> list:
    """n sheets char_0.png .. in root, with attributes.json (sex = label % 2, hair = label % 3) unless
    attributes is False; returns the sheet paths."""
    import json
    os.makedirs(root, exist_ok=True)
    paths, chars = [], []
    for k in range(n):
        path = os.path.join(root, f"char_{k}.png")
        write_lpc_sheet(path, k, **sheet)
        paths.append(path)
        chars.append({"id": f"c{k}", "file": f"char_{k}.png",
                      "attributes": {"sex": LPC_ATTRIBUTES["sex"][k % 2], "hair": LPC_ATTRIBUTES["hair"][k % 3]}})
    if attributes:
        with open(os.path.join(root, "attributes.json"), "w") as f:
            json.dump({"characters": chars, "attributes": {a: {"values": v} for a, v in LPC_ATTRIBUTES.items()},
                       "background": list(LPC_BG)}, f)
    return paths
