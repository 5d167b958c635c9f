"""A face recipe on several face sets and seeds: train, evaluate in full, print one table.

Each job is `dvgan-train --config CONFIG --data FOLDER --test-fraction F --seed N [--set ...]` then
`dvgan eval RUN` (full evaluation), run as separate processes with one thread each, JOBS at a time.
A run folder that already holds a finished evaluation is read, not trained again.

    python benchmarks/bench_faces.py --config configs/faces.toml --seeds 0 1 2 --jobs 2 \\
        --data orl=/path/to/orl_faces:0.2 --data yale=/path/to/yale_faces:0.27 --out runs/faces

Columns: s-probe test error (mean over the 3 probe seeds +- their spread), the same probe on raw
pixels, z (mu) error, chance, the targets of the face recipe (s below the pixels and at most 5%,
z within 5 points of chance), training steps and seconds. The CPU model line heads the table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown CPU"


def run_job(name, folder, fraction, seed, args) -> dict:
    run = os.path.join(args.out, f"{name}-s{seed}")
    report = os.path.join(run, "eval", "report.json")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    seconds = None
    if not os.path.exists(report):
        cmd = ["dvgan-train", "--config", args.config, "--data", folder, "--test-fraction", str(fraction),
               "--seed", str(seed), "--out", run, "--no-progress", "-q"]
        for pair in args.set or []:
            cmd += ["--set", pair]
        t0 = time.time()
        subprocess.run(cmd, check=True, env=env)
        seconds = time.time() - t0
        subprocess.run(["dvgan", "eval", run, "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    with open(report) as f:
        result = json.load(f)
    with open(os.path.join(run, "config.json")) as f:
        steps = json.load(f)["train"]["steps"]
    if seconds is None:  # trained earlier: the time of its last metrics line
        with open(os.path.join(run, "metrics.jsonl")) as f:
            seconds = json.loads(f.readlines()[-1])["time"]
    probes = result["probes"]["protocols"][result["probes"]["primary"]]
    r = probes["results"]
    return {"name": name, "seed": seed, "run": run, "s": r["s"]["test_error"], "s_std": r["s"]["test_error_std"],
            "pixels": r["pixels"]["test_error"], "z": r["z_mu"]["test_error"], "chance": probes["chance_error"],
            "steps": steps, "seconds": seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", action="append", required=True, metavar="NAME=FOLDER:TEST_FRACTION")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--set", action="append", metavar="TABLE.FIELD=VALUE")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    jobs = []
    for item in args.data:
        name, _, rest = item.partition("=")
        folder, _, fraction = rest.rpartition(":")
        jobs += [(name, folder, float(fraction), seed) for seed in args.seeds]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda j: run_job(*j, args), jobs))
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    print(f"{cpu_model()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; config {args.config} "
          f"{' '.join('--set ' + s for s in args.set or [])}")
    print("| set | seed | s error | pixels | z (mu) error | chance | s target | z target | steps | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s_ok = r["s"] < r["pixels"] and r["s"] <= 0.05
        z_ok = r["z"] >= r["chance"] - 0.05
        print(f"| {r['name']} | {r['seed']} | {pct(r['s'])} +-{100 * r['s_std']:.1f} | {pct(r['pixels'])} | "
              f"{pct(r['z'])} | {pct(r['chance'])} | {'met' if s_ok else 'MISSED'} | {'met' if z_ok else 'MISSED'} | "
              f"{r['steps']} | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
