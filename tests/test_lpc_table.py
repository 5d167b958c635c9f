"""benchmarks/lpc_table.py: the floor (the least Table-1 error one frame allows when a value is drawn only
in some rows of a sheet) and the rows it judges against the targets."""
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


def _report(model_psnr, recon_psnr=24.0, mean_psnr=19.0):
    err = lambda s, z: {"s": {"test_error": s}, "z_mu": {"test_error": z}}  # noqa: E731
    scores = lambda psnr: {"psnr": psnr, "ssim": 0.5}  # noqa: E731
    return {"table1": {"mean": {**err(0.02, 0.80), "chance_error": 0.80}},
            "probes": {"primary": "p", "protocols": {"p": {"results": {
                "s": {"test_error": 0.0}, "z_mu": {"test_error": 0.98, "chance_error": 0.99}}}}},
            "factors": {"direction": {**err(0.70, 0.01), "chance_error": 0.75},
                        "action": {**err(0.65, 0.04), "chance_error": 0.70},
                        "frame": {**err(0.88, 0.50), "chance_error": 0.875}},
            "analogies": {"unseen": {"model": scores(model_psnr), "reconstruction": scores(recon_psnr),
                                     "copy_a": scores(15.0), "copy_b": scores(16.0),
                                     "identity_mean": scores(mean_psnr)}},
            "retrieval": {"s": {"precision_at_k": 1.0}, "pose": {"z_mu": {"precision_at_k": 0.9}}}}


def test_rows_judge_ten_targets_and_give_the_reconstruction_beside_the_analogy(lpc_table):
    out = lpc_table.rows(_report(model_psnr=25.0))
    assert sum(met is not None for _, _, met in out) == 10
    assert all(met for _, _, met in out if met is not None)
    by_name = {name: (value, met) for name, value, met in out}
    assert by_name["analogy PSNR, dB (best baseline + 6)"] == ("25.00 vs identity_mean 19.00", True)
    assert by_name["reconstruction of a, dB (the analogy's ceiling)"] == ("24.00", None)


def test_rows_miss_the_analogy_under_six_db_over_the_best_baseline(lpc_table):
    # copy b is the best baseline here (16 dB against the mean image's 15): 21.9 dB is 5.9 over it
    out = {name: met for name, _, met in lpc_table.rows(_report(model_psnr=21.9, mean_psnr=15.0))}
    assert out["analogy PSNR, dB (best baseline + 6)"] is False
    assert out["identity error from s (<= 2%)"] is True


def test_columns_are_named_by_the_fewest_path_parts_that_tell_the_runs_apart(lpc_table):
    assert lpc_table.labels(["runs/a/run", "runs/b/run/"]) == ["a/run", "b/run"]
    assert lpc_table.labels(["runs/a", "other/b"]) == ["a", "b"]
    assert lpc_table.labels(["x/s0/run", "y/s0/run"]) == ["x/s0/run", "y/s0/run"]
    assert lpc_table.labels(["runs/a"]) == ["a"]
    assert lpc_table.labels(["runs/a", "runs/a"]) == ["runs/a", "runs/a"]
