"""Wall time of `dvgan eval RUN` with the probe pool's workers from a fork server (as shipped) or forked
from this process (the context before commit c04de83), alternating, so the cost of the fork server is
measured in one run:

    python benchmarks/bench_probe_pool.py RUN [--reps 2]

Each evaluation writes to a temporary folder; the probe numbers of the two contexts are compared too.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from dvgan.cli.main import cli
from dvgan.eval import probes


def timed_eval(run: str, context: str, out: str) -> float:
    shipped, probes.POOL_CONTEXT = probes.POOL_CONTEXT, context
    try:
        start = time.perf_counter()
        cli(["eval", run, "-o", out], standalone_mode=False)
        return time.perf_counter() - start
    finally:
        probes.POOL_CONTEXT = shipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    times = {"fork": [], "forkserver": []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for context in times:
                times[context].append(timed_eval(args.run, context, os.path.join(tmp, f"{context}-{rep}")))
        reports = [json.load(open(os.path.join(tmp, f"{c}-0", "report.json")))["probes"] for c in times]
    for context, ts in times.items():
        print(f"{context:10s} median {statistics.median(ts):.1f} s  ({', '.join(f'{t:.1f}' for t in ts)})")
    print("probe numbers identical:", reports[0] == reports[1])


if __name__ == "__main__":
    main()
