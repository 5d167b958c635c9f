"""The demo end to end on a tiny preset: every stage runs and the report states what happened."""
import json
import os
import re

from dvgan import demo


def test_demo_runs_every_stage_and_reports_its_times(tmp_path, monkeypatch):
    monkeypatch.setitem(demo.PRESETS, "tiny", {"steps": 4, "per_identity": 3, "eval_quick": True})
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
    e = result["eval"]
    assert {"sample_psnr", "sample_swap_psnr", "sample_other_identity_psnr"} <= set(e)  # the samples are scored
    assert f"| {e['sample_psnr']:.2f} dB | z ~ N(0, I) {e['sample_standard_normal_psnr']:.2f} dB; " \
           f"swaps {e['sample_swap_psnr']:.2f} dB" in text
    with open(os.path.join(result["out"], "eval", "report.json")) as f:
        unseen = json.load(f)["analogies"]["unseen"]
    # the copy baselines are copy a and copy b; the identity's mean image is reported on its own
    assert e["best_copy_psnr"] == max(unseen["copy_a"]["psnr"], unseen["copy_b"]["psnr"])
    assert e["identity_mean_psnr"] == unseen["identity_mean"]["psnr"]
    assert (f"best copy baseline {e['best_copy_psnr']:.2f} dB; "
            f"mean image of the identity {e['identity_mean_psnr']:.2f} dB") in text


def test_demo_trains_on_the_cores_other_processes_leave_free(monkeypatch, caplog):
    import torch
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.2, 0.0, 0.0))
    assert demo._threads_for_free_cores() is None  # idle: torch keeps its threads
    monkeypatch.setattr(os, "getloadavg", lambda: (0.9, 0.0, 0.0))
    assert demo._threads_for_free_cores() is None  # less than one whole core taken
    monkeypatch.setattr(os, "getloadavg", lambda: (3.2, 0.0, 0.0))
    assert demo._threads_for_free_cores() == 1
    assert "machine is busy" in caplog.text
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert demo._threads_for_free_cores() == 1  # never fewer than one

    def unknown():
        raise OSError("no load average here")
    monkeypatch.setattr(os, "getloadavg", unknown)
    assert demo._threads_for_free_cores() is None


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
