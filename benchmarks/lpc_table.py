"""The lpc targets of one or more evaluated runs, as one markdown table (a column per run).

  dvgan eval RUN                      # writes RUN/eval/report.json
  python benchmarks/lpc_table.py RUN [RUN ...]
  python benchmarks/lpc_table.py --eval eval-p2 RUN   # the report `dvgan eval RUN -o RUN/eval-p2` wrote

Each row is a target (test characters, never seen in training): the paper's Table 1 over the
attributes, the identity probes, the pose read from z and from s, the analogies against a's own sheet
(with the reconstruction of a, Dec(s_a, mu_a), their ceiling), and retrieval; "met" is judged per run.

Where the run's data folder has an attributes.json that says which attributes are drawn in every frame
("visible_attributes") and in which sheet rows an attribute's values are drawn at all ("<name>_rows",
e.g. "weapon_rows": a weapon exists in the LPC art only for its own action), the table adds Table 1's
mean over the always-drawn attributes and the floor: the least error any code of one frame can reach
(`one_frame_floor`), since a value that is not drawn in a frame cannot be read from it.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np

from dvgan.data import LPC_KINDS
from dvgan.data.lpc import ATTRIBUTES_FILE, HURT_ROW


def one_frame_floor(doc: dict, grid_rows: int = HURT_ROW) -> dict:
    """attribute -> the least error with which one frame tells its value, over the frames of the first
    grid_rows sheet rows (each frame of each character counted once; by default the 5 x 4 pose grid).

    An attribute with "<name>_rows" in attributes.json (value -> the rows that draw it) is drawn only in
    those rows: in any other frame its values look alike (empty hands), and the best guess among the
    characters whose value is not drawn there is their most common value. Every other attribute counts
    as drawn in every frame (floor 0)."""
    frames = [row["frames"] for row in doc["layout"]["rows"][:grid_rows]]
    names = list(doc["attributes"])
    floor = {name: 0.0 for name in names}
    for name in names:
        drawn_rows = doc.get(f"{name}_rows")
        if not drawn_rows:
            continue
        values = [ch["attributes"][name] for ch in doc["characters"]]
        wrong = 0.0
        for r, n_frames in enumerate(frames):
            hidden = [v for v in values if r not in drawn_rows.get(v, [])]
            if hidden:
                wrong += n_frames * (len(hidden) - max(hidden.count(v) for v in set(hidden)))
        floor[name] = wrong / (sum(frames) * len(values))
    return floor


def data_doc(run: str) -> tuple[dict, int] | None:
    """(the run's attributes.json, the sheet rows its data reads), through config.json's data spec;
    None for data other than LPC sheets or sheets without attributes.json."""
    with open(os.path.join(run, "config.json")) as f:
        kind, _, root = json.load(f)["data"]["spec"].partition(":")
    path = os.path.join(root, ATTRIBUTES_FILE)
    if kind not in LPC_KINDS or not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f), HURT_ROW + 1 if kind == "lpc+hurt" else HURT_ROW


def rows(r: dict, doc: tuple[dict, int] | None = None) -> list[tuple[str, str, bool | None]]:
    """(measure, value, met) for one report, doc its data's data_doc; met is None where there is no
    target (the issue's targets: ten)."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    t1, ids = r["table1"]["mean"], r["probes"]["protocols"][r["probes"]["primary"]]["results"]
    f, a, ret = r["factors"], r["analogies"]["unseen"], r["retrieval"]
    out = [("Table 1 mean error from s (<= 3%)", pct(t1["s"]["test_error"]), t1["s"]["test_error"] <= 0.03),
           (f"Table 1 mean error from z (chance {pct(t1['chance_error'])}, within 1 point)", pct(t1["z_mu"]["test_error"]),
            t1["z_mu"]["test_error"] >= t1["chance_error"] - 0.01)]
    if doc is not None:
        per, (attributes, grid_rows) = r["table1"]["attributes"], doc
        floor = one_frame_floor(attributes, grid_rows)
        out.append(("Table 1 mean error, floor for one frame", pct(np.mean([floor[n] for n in per])), None))
        shown = [n for n in attributes.get("visible_attributes", []) if n in per]
        if shown:
            out.append((f"Table 1 mean error from s over the {len(shown)} attributes drawn in every frame",
                        pct(np.mean([per[n]["s"]["test_error"] for n in shown])), None))
    out += [
           ("identity error from s (<= 2%)", pct(ids["s"]["test_error"]), ids["s"]["test_error"] <= 0.02),
           (f"identity error from z (chance {pct(ids['z_mu']['chance_error'])}, within 3 points)",
            pct(ids["z_mu"]["test_error"]), ids["z_mu"]["test_error"] >= ids["z_mu"]["chance_error"] - 0.03)]
    for name, need in (("direction", 0.98), ("action", 0.95)):
        out.append((f"{name} accuracy from z (>= {100 * need:.0f}%)", pct(1 - f[name]["z_mu"]["test_error"]),
                    1 - f[name]["z_mu"]["test_error"] >= need))
    for name in ("action", "direction", "frame"):
        c = f[name]["chance_error"]
        if name == "frame":
            out.append((f"frame error from z (chance {pct(c)})", pct(f[name]["z_mu"]["test_error"]), None))
        out.append((f"{name} error from s (chance {pct(c)}, within 10 points)", pct(f[name]["s"]["test_error"]),
                    f[name]["s"]["test_error"] >= c - 0.10))
    best = max(("copy_a", "copy_b", "identity_mean"), key=lambda k: a[k]["psnr"])
    out.append(("analogy PSNR, dB (best baseline + 6)", f"{a['model']['psnr']:.2f} vs {best} {a[best]['psnr']:.2f}",
                a["model"]["psnr"] >= a[best]["psnr"] + 6))
    out.append(("reconstruction of a, dB (the analogy's ceiling)", f"{a['reconstruction']['psnr']:.2f}", None))
    out.append(("analogy SSIM (copy b)", f"{a['model']['ssim']:.3f} ({a['copy_b']['ssim']:.3f})", None))
    out.append(("precision@10 same character by s", pct(ret["s"]["precision_at_k"]), None))
    out.append(("precision@10 same action and direction by z", pct(ret["pose"]["z_mu"]["precision_at_k"]), None))
    return out


def labels(runs: list[str]) -> list[str]:
    """Each run's column name: the fewest trailing parts of its path that tell the runs apart
    (runs/a/run and runs/b/run are a/run and b/run; runs/a and runs/b are a and b)."""
    parts = [os.path.normpath(r).split(os.sep) for r in runs]
    for k in range(1, max(map(len, parts)) + 1):  # a path given twice keeps its whole self
        names = ["/".join(p[-k:]) for p in parts]
        if len(set(names)) == len(names):
            break
    return names


def main(args: list[str]) -> None:
    folder = "eval"
    if args[:1] == ["--eval"]:
        folder, args = args[1], args[2:]
    runs, tables = args, []
    for run in runs:
        with open(os.path.join(run, folder, "report.json")) as f:
            tables.append(rows(json.load(f), data_doc(run)))
    print("| measure | " + " | ".join(labels(runs)) + " |")
    print("|---|" + "---|" * len(runs))
    for i, (name, _, _) in enumerate(tables[0]):
        cells = [t[i][1] + ("" if t[i][2] is None else " (met)" if t[i][2] else " (**not met**)") for t in tables]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
