"""The demo end to end on a tiny preset: every stage runs and the report states what happened."""
import json
import os
import re

from dvgan import demo
from dvgan.config import ModelConfig, TrainConfig


def test_demo_runs_every_stage_and_reports_its_times(tmp_path, monkeypatch):
    monkeypatch.setitem(demo.PRESETS, "tiny", {"steps": 4, "per_identity": 3, "eval_quick": True,
                                                 "train_seconds": 3600})
    result = demo.run_demo(str(tmp_path / "out"), preset="tiny", device="cpu", progress=False)
    assert list(result["timings"]) == list(demo.STAGES)
    for name in ("swap", "swap_truth", "sample", "interpolate"):
        assert os.path.exists(result[name])
    text = open(result["report"]).read()
    times = dict(re.findall(r"(\w+) ([\d.]+)", text.split("## Stage times (s)")[1]))
    # every stage that had finished when the report was written, each within the total
    assert set(times) == set(demo.STAGES) - {"report"}
    assert all(float(v) <= result["seconds"] for v in times.values()), (times, result["seconds"])
    assert f"Total time {result['seconds']:.0f} s" in text
    assert "Procedural sprites, 4 training steps; engine" in text  # the budget had room: no note about it
    e = result["eval"]
    assert {"sample_psnr", "sample_swap_psnr", "sample_other_identity_psnr"} <= set(e)  # the samples are scored
    assert f"| {e['sample_psnr']:.2f} dB | z ~ N(0, I) {e['sample_standard_normal_psnr']:.2f} dB; " \
           f"swaps {e['sample_swap_psnr']:.2f} dB" in text
    with open(os.path.join(result["out"], "eval", "report.json")) as f:
        full = json.load(f)
    unseen, turn = full["analogies"]["unseen"], full["factors"]["rotation"]
    r2 = " / ".join(f"{full['factors'][k]['z_mu']['test_r2']:.2f}" for k in ("x", "y", "scale", "rotation"))
    assert f"| the pose read from z (mu), test R^2 of x / y / scale / turn | {r2} | from s " in text
    assert (e["rotation_r2_z"], e["rotation_r2_s"]) == (turn["z_mu"]["test_r2"], turn["s"]["test_r2"])
    # the copy baselines are copy a and copy b; the identity's mean image is reported on its own
    assert e["best_copy_psnr"] == max(unseen["copy_a"]["psnr"], unseen["copy_b"]["psnr"])
    assert e["identity_mean_psnr"] == unseen["identity_mean"]["psnr"]
    assert (f"best copy baseline {e['best_copy_psnr']:.2f} dB; "
            f"mean image of the identity {e['identity_mean_psnr']:.2f} dB") in text


def test_demo_trains_on_the_cores_other_processes_leave_free(monkeypatch, caplog):
    import torch
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    for busy, threads in ((0.2, None), (0.4, None), (0.7, 3), (3.2, 1), (9.0, 1), (None, None)):
        monkeypatch.setattr(demo, "_busy_cores", lambda: busy)
        assert demo._threads_for_free_cores() == threads, busy  # None: torch keeps its 4 threads
    assert "machine is busy" in caplog.text


def test_busy_cores_reads_cpu_time_then_falls_back_to_the_load_average(monkeypatch):
    ticks = iter([(100, 1000), (160, 1100)])  # 60 of 100 ticks busy over the window
    monkeypatch.setattr(demo, "_cpu_times", lambda: next(ticks))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert abs(demo._busy_cores(window=0) - 1.2) < 1e-9

    def unreadable():
        raise OSError("no /proc/stat here")
    monkeypatch.setattr(demo, "_cpu_times", unreadable)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert demo._busy_cores(window=0) == 1.5

    def unknown():
        raise OSError("no load average here")
    monkeypatch.setattr(os, "getloadavg", unknown)
    assert demo._busy_cores(window=0) is None


def test_cpu_times_are_read_where_the_system_has_them():
    if not os.path.exists("/proc/stat"):
        import pytest
        pytest.skip("no /proc/stat on this system (the load average stands in)")
    busy, total = demo._cpu_times()
    assert 0 <= busy <= total and total > 0


def test_true_swaps_draw_each_column_identity_in_each_row_pose(tmp_path):
    import numpy as np

    from dvgan import data as data_mod
    ds = data_mod.load("sprites:3", 32, 3, seed=0)
    index = [0, 40, 100]  # three identities (3 images each)
    rows = demo._true_swaps(ds, [str(tmp_path / "gallery" / f"{i:06d}.png") for i in index])
    assert len(rows) == 3 and all(len(r) == 3 for r in rows)
    for i in range(3):
        assert np.array_equal(rows[i][i], ds.images[index[i]])  # the diagonal is the image itself
    # off the diagonal: another identity in row i's pose, unlike either source image
    assert not np.array_equal(rows[0][1], ds.images[index[0]]) and not np.array_equal(rows[0][1], ds.images[index[1]])


def test_the_demo_reuses_a_finished_run_and_continues_an_interrupted_one(tmp_path):
    from conftest import tiny_model_config, tiny_train_config
    from dvgan.train.checkpoint import load_checkpoint, save_checkpoint
    from dvgan.train.loop import PACE_AFTER_STEPS, train
    cut, plain = str(tmp_path / "cut"), str(tmp_path / "plain")
    assert demo._existing_run(str(tmp_path / "none")) == (0, None)
    train(tiny_model_config(), tiny_train_config(steps=40, ckpt_every=100), {"spec": "sprites:3"}, cut,
          device="cpu", progress=False, time_budget=1e-3)
    # cut short by its budget: it stands for the 40 steps asked
    planned, model = demo._existing_run(cut)
    assert planned == 40 and demo._model_differences(model, tiny_model_config()) == []
    train(tiny_model_config(), tiny_train_config(steps=4), {"spec": "sprites:3"}, plain, device="cpu", progress=False)
    assert demo._existing_run(plain)[0] == 4
    state = load_checkpoint(plain)
    state["step"] = 2  # as a run killed half way leaves it
    save_checkpoint(os.path.join(plain, "checkpoint.pt"), state)
    assert demo._existing_run(plain)[0] == 0
    note = demo._cut_note({"steps": PACE_AFTER_STEPS, "asked_steps": 40, "time_budget": 360})
    assert note.startswith(" (of the 40 asked: training stops after 360 s")
    assert demo._cut_note({"steps": 40, "asked_steps": 40, "time_budget": 360}) == ""


def test_the_demo_trains_the_shipped_warp_recipe():
    """The demo reads dvgan/recipes/sprites-warp.toml (the recipe behind the sprites targets), the file that
    `--config configs/sprites-warp.toml` in a checkout and `--config sprites-warp` anywhere name."""
    from dvgan.train.recipe import build_configs

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    by_path = build_configs(None, os.path.join(root, "configs", "sprites-warp.toml"), [], {})
    by_name = build_configs(None, "sprites-warp", [], {})
    assert by_path == by_name
    model, train, _ = by_name
    assert model == ModelConfig(**demo.RECIPE["model"]) and model.warp
    assert train == TrainConfig(**demo.RECIPE["train"])
    assert demo.PRESETS["long"]["steps"] == train.steps and not demo.PRESETS["long"]["eval_quick"]


def test_the_demo_names_what_differs_in_a_run_of_another_model():
    from dvgan.config import ModelConfig, to_dict
    wanted = ModelConfig(**demo.RECIPE["model"])
    assert demo._model_differences({**to_dict(wanted), "num_ids": 205}, wanted) == []  # set by the data
    old = {k: v for k, v in to_dict(ModelConfig(z_dim=128)).items() if k != "warp"}  # saved before warp existed
    assert demo._model_differences(old, wanted) == [("z_dim", 128, 32), ("width", 32, 16), ("adv_width", 32, 8),
                                                    ("warp", False, True)]


def test_the_gallery_has_the_models_image_size_and_channels(tmp_path):
    """The demo writes its gallery as the model takes images, not at the default size and channels."""
    import numpy as np
    from PIL import Image

    from dvgan import data as data_mod
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text(json.dumps({"test": [0, 1, 5]}))
    per_identity, ds = demo._write_gallery(str(run), str(tmp_path / "gallery"), "sprites:3", 0, 16, 1)
    want = data_mod.load("sprites:3", 16, 1, seed=0)
    files = [p for paths in per_identity for p in paths]
    assert len(files) == 3 and np.array_equal(ds.images, want.images)
    for path in files:
        with Image.open(path) as im:
            assert im.size == (16, 16) and im.mode == "L"
            i = int(os.path.splitext(os.path.basename(path))[0])
            assert np.array_equal(np.asarray(im)[None], want.images[i])


def test_demo_runs_on_lpc_sheets(tmp_path, monkeypatch):
    """--data lpc:DIR: the same stages on character sheets; the truth of the swap grid is the sheets' own
    images, and the report gives the pose as classified factors and the paper's Table 1."""
    from conftest import write_lpc_folder
    write_lpc_folder(tmp_path / "sheets", n=12)
    monkeypatch.setitem(demo.PRESETS, "tiny", {"steps": 4, "per_identity": 3, "eval_quick": True,
                                                 "train_seconds": 3600})
    result = demo.run_demo(str(tmp_path / "out"), preset="tiny", device="cpu", progress=False,
                           data=f"lpc:{tmp_path / 'sheets'}")
    assert list(result["timings"]) == list(demo.STAGES) and os.path.exists(result["swap_truth"])
    text = open(result["report"]).read()
    assert f"Data `lpc:{tmp_path / 'sheets'}`, 4 training steps; engine" in text
    e = result["eval"]
    assert e["factor_names"] == ["action", "direction", "frame"]
    assert f"| the pose read from z (mu), test error of action / direction / frame | {demo.pose_errors(e, 'z')} |" in text
    assert "the paper's Table 1: attribute error of unseen identities" in text
    assert "sample_psnr" not in e  # scoring samples needs a renderer
    with open(os.path.join(result["out"], "run", "config.json")) as f:
        assert json.load(f)["model"]["warp"] is False  # the plain decoder: real sprites move more than a template
