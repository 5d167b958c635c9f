"""The demo end to end on a tiny preset: every stage runs and the report states what happened."""
import os
import re

from dvgan import demo


def test_demo_runs_every_stage_and_reports_its_times(tmp_path, monkeypatch):
    monkeypatch.setitem(demo.PRESETS, "tiny", {"steps": 4, "per_identity": 3, "eval_quick": True})
    result = demo.run_demo(str(tmp_path / "out"), preset="tiny", device="cpu", progress=False)
    assert list(result["timings"]) == list(demo.STAGES)
    for name in ("swap", "sample", "interpolate"):
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

