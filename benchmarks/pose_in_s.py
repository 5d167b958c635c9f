"""How the pose lives in s: each pose factor read from s by a linear classifier (`table1_probes.py`'s)
and by `dvgan eval`'s MLP probe, on the same items (the first probe protocol: the test characters'
frames, part to fit, part to test). A factor the MLP reads and the linear classifier does not is held in s nonlinearly, where no
penalty on s's covariance (train.sinv_whiten) can reach it.

  python benchmarks/pose_in_s.py RUN        # RUN: a run whose data set knows its poses (lpc, sprites)
"""
from __future__ import annotations

import sys

from dvgan.eval import probes
from dvgan.eval.suite import FULL, encode, load_run, probe_sets
from table1_probes import linear_probe  # benchmarks/ is on the path when this runs as a script


def main(run_dir: str) -> None:
    run = load_run(run_dir)
    data = run["data"]
    if not data.knows_truth:
        sys.exit(f"{run_dir}: its data set does not know the images' poses")
    sets = probe_sets(run["split"], data.labels, FULL, seed=0)
    protocol = next(iter(sets))
    fit, held, _ = sets[protocol]
    s_fit = encode(run["engine"], data.float_images(fit))["s"]
    s_held = encode(run["engine"], data.float_images(held))["s"]
    print(f"{run_dir}: protocol {protocol}, {len(fit)} fit / {len(held)} test frames")
    print("| factor | error from s, linear | error from s, MLP probe | chance |")
    print("|---|---|---|---|")
    for f, name in enumerate(data.factor_space.names):
        y_fit, y_held = data.factors[fit, f], data.factors[held, f]
        mlp = probes.classify(s_fit, y_fit, s_held, y_held, seed=0)
        print(f"| {name} | {100 * linear_probe(s_fit, y_fit, s_held, y_held):.1f}% | "
              f"{100 * mlp['test_error']:.1f}% | {100 * mlp['chance_error']:.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: python benchmarks/pose_in_s.py RUN")
    main(sys.argv[1])
