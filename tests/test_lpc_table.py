"""benchmarks/lpc_table.py's floor: the least Table-1 error one frame allows when a value is drawn only in
some rows of a sheet."""
import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def lpc_table():
    spec = importlib.util.spec_from_file_location("lpc_table", os.path.join(HERE, "..", "benchmarks", "lpc_table.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _doc(weapons, colours, weapon_rows):
    return {"layout": {"rows": [{"row": 0, "frames": 2}, {"row": 1, "frames": 6}]},
            "attributes": {"colour": {}, "weapon": {}},
            "characters": [{"attributes": {"colour": c, "weapon": w}} for w, c in zip(weapons, colours)],
            "weapon_rows": weapon_rows}


def test_floor_counts_the_frames_where_a_value_is_not_drawn(lpc_table):
    # "bow" is drawn in row 0 only; "staff" nowhere. Row 0 (2 frames): the hidden ones are all "staff",
    # so a frame names every character's weapon. Row 1 (6 frames): nothing is drawn and the best guess
    # is right for half the characters. Floor: 6 * 0.5 / 8 frames.
    doc = _doc(["bow", "bow", "staff", "staff"], ["red", "blue", "red", "blue"], {"bow": [0], "staff": []})
    floor = lpc_table.one_frame_floor(doc, grid_rows=2)
    assert floor["weapon"] == pytest.approx(6 * 0.5 / 8)
    assert floor["colour"] == 0.0


def test_floor_is_zero_where_every_value_is_drawn_in_every_row(lpc_table):
    doc = _doc(["bow", "staff", "staff"], ["red", "red", "blue"], {"bow": [0, 1], "staff": [0, 1]})
    assert lpc_table.one_frame_floor(doc, grid_rows=2)["weapon"] == 0.0


def test_floor_guesses_the_most_common_hidden_value(lpc_table):
    # Nothing drawn anywhere: three "staff" of four characters, so guessing "staff" errs on one in four.
    doc = _doc(["bow", "staff", "staff", "staff"], ["red"] * 4, {})
    doc["weapon_rows"] = {"bow": [], "staff": []}
    assert lpc_table.one_frame_floor(doc, grid_rows=2)["weapon"] == pytest.approx(0.25)
