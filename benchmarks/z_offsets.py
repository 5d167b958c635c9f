"""Whether z carries an offset of each identity that the analogies pay for: on a run's test identities,
the share of mu's variance that lies between identities (each identity's mean code against the rest),
and the analogies of `dvgan eval` (the same pairs, against the truth) decoded twice: Dec(s_a, mu_b) as
they are, and Dec(s_a, mu_b - m_b + m_a) with m_a, m_b the mean mu of a's and b's test images, which
takes out what mu says of b's identity in the words of its mean. With the warping decoder
(model.warp) it also reads the pose each mu asks for (shift x and y, log scale, turn) and gives each
one's between-identity share. A probe of the identity may find little in z where such offsets still
cost the analogies decibels: many identities, each a small shift of the same spread.

  python benchmarks/z_offsets.py RUN [RUN ...]   # RUN: a run whose data set knows its swaps' truth
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from dvgan.data.preprocess import uint8_to_float
from dvgan.eval.analogies import image_scores, pairs
from dvgan.eval.suite import load_run
from dvgan.train.losses import between_identity_share

N_PAIRS = 300  # as `dvgan eval`'s analogies
POSE = ("shift x", "shift y", "log scale", "turn")


def identity_means(codes: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Each code's identity mean, (N, d)."""
    uniq, group = torch.unique(ids, return_inverse=True)
    sums = torch.zeros(len(uniq), codes.shape[1]).index_add(0, group, codes)
    return (sums / torch.bincount(group)[:, None])[group]


@torch.no_grad()
def main(run_dir: str) -> None:
    run = load_run(run_dir)
    data, enc, dec = run["data"], run["encoder"], run["decoder"]
    if not data.knows_truth:
        sys.exit(f"{run_dir}: its data set does not know the truth of a swap")
    test = np.asarray(run["split"]["test"], dtype=np.int64)
    ids = data.labels[test]
    s, mu, _ = enc(torch.from_numpy(data.float_images(test)))
    labels = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    share, m = float(between_identity_share(mu, labels)), identity_means(mu, labels)
    a, b = pairs(ids, N_PAIRS, 0)
    truth, found = data.swap_truth(test[a], test[b])
    a, b, truth = a[found], b[found], uint8_to_float(truth[found])
    plain = image_scores(dec(s[a], mu[b]).numpy(), truth)["psnr"]
    moved = image_scores(dec(s[a], mu[b] - m[b] + m[a]).numpy(), truth)["psnr"]
    print(f"{run_dir}: {len(np.unique(ids))} test identities, {len(test)} images, {len(a)} pairs")
    print(f"  between-identity share of mu: {share:.3f}")
    print(f"  analogy PSNR: Dec(s_a, mu_b) {plain:.2f} dB; Dec(s_a, mu_b - m_b + m_a) {moved:.2f} dB ({moved - plain:+.2f})")
    if dec.warps:
        pose = dec.to_pose(mu)
        print("  the warp's pose from mu, between-identity share: " +
              ", ".join(f"{name} {float(between_identity_share(pose[:, k:k + 1], labels)):.2f}"
                        for k, name in enumerate(POSE)))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip().splitlines()[0] + "\nusage: python benchmarks/z_offsets.py RUN [RUN ...]")
    for path in sys.argv[1:]:
        main(path)
