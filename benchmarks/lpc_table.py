"""The lpc targets of one or more evaluated runs, as one markdown table (a column per run).

  dvgan eval RUN                      # writes RUN/eval/report.json
  python benchmarks/lpc_table.py RUN [RUN ...]

Each row is a target (test characters, never seen in training): the paper's Table 1 over the
attributes, the identity probes, the pose read from z and from s, the analogies against a's own sheet,
and retrieval; "met" is judged per run.
"""
from __future__ import annotations

import json
import os
import sys


def rows(r: dict) -> list[tuple[str, str, bool | None]]:
    """(measure, value, met) for one report; met is None where there is no target."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    t1, ids = r["table1"]["mean"], r["probes"]["protocols"][r["probes"]["primary"]]["results"]
    f, a, ret = r["factors"], r["analogies"]["unseen"], r["retrieval"]
    out = [("Table 1 mean error from s (<= 3%)", pct(t1["s"]["test_error"]), t1["s"]["test_error"] <= 0.03),
           (f"Table 1 mean error from z (chance {pct(t1['chance_error'])}, within 1 point)", pct(t1["z_mu"]["test_error"]),
            t1["z_mu"]["test_error"] >= t1["chance_error"] - 0.01),
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
    out.append((f"analogy PSNR, dB (best baseline + 6)", f"{a['model']['psnr']:.2f} vs {best} {a[best]['psnr']:.2f}",
                a["model"]["psnr"] >= a[best]["psnr"] + 6))
    out.append(("analogy SSIM (copy b)", f"{a['model']['ssim']:.3f} ({a['copy_b']['ssim']:.3f})", None))
    out.append(("precision@10 same character by s", pct(ret["s"]["precision_at_k"]), None))
    out.append(("precision@10 same action and direction by z", pct(ret["pose"]["z_mu"]["precision_at_k"]), None))
    return out


def main(runs: list[str]) -> None:
    tables = [rows(json.load(open(os.path.join(run, "eval", "report.json")))) for run in runs]
    print("| measure | " + " | ".join(os.path.basename(os.path.normpath(r)) for r in runs) + " |")
    print("|---|" + "---|" * len(runs))
    for i, (name, _, _) in enumerate(tables[0]):
        cells = [t[i][1] + ("" if t[i][2] is None else " (met)" if t[i][2] else " (**not met**)") for t in tables]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
