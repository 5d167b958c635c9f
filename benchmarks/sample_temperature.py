"""How often conditional samples show the identity of s, as the fitted prior is narrowed.

For runs whose test identities were seen in training (MNIST, ORL faces): the judged drawings of
`dvgan eval` (a CNN trained on the real training images names each drawing; trained once per run),
with z drawn from the fitted prior at each temperature as `dvgan sample --temperature` draws it
(dvgan.prior.draw: 1 = the prior as fitted, 0 = its mean for every sample). The swaps and the real
images are judged again at every temperature, the same numbers each time.

    python benchmarks/sample_temperature.py runs/mnist [RUN ...] [--t 1 0.8 0.6 0.4 0]
"""
from __future__ import annotations

import argparse

from dvgan.eval import analogies, judge
from dvgan.eval.suite import FULL, load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--t", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4, 0.0])
    args = ap.parse_args()
    print("| run | temperature | samples show s's identity | swaps follow s | real |")
    print("|---|---|---|---|---|")
    for run_dir in args.runs:
        run = load_run(run_dir)
        if not judge.applies(run["split"], run["data"].labels):
            print(f"| {run_dir} | - | test identities unseen in training | | |")
            continue
        swap = analogies.model_swap(run["encoder"], run["decoder"])
        sample = analogies.model_sample(run["encoder"], run["decoder"])
        judge_net = judge.fit_judge(run["data"], run["split"], fit_images=FULL["pixel_fit"], epochs=FULL["cnn_epochs"])
        for t in args.t:
            r = judge.judged_drawings(swap, sample, run["data"], run["split"], run["cfg"].z_dim, FULL["judged"],
                                      judge_net, prior=run["prior"], temperature=t)
            print(f"| {run_dir} | {t:g} | {100 * r['samples']:.1f}% | {100 * r['swap_follows_s']:.1f}% | "
                  f"{100 * r['real']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
