"""Algorithm 1's triplet sampler: x1 and x1' share an identity, x2 has another one."""
from __future__ import annotations

import torch


class TripletSampler:
    """Draws index triplets over a label vector with a private torch.Generator (its state is checkpointed).

    Only identities with at least two images can give x1 (x1' is a different image of the same
    identity); x2 is uniform over the images of every other identity.
    """

    def __init__(self, labels: torch.Tensor, seed: int = 0):
        labels = labels.cpu().long()
        if labels.numel() == 0:
            raise ValueError("no training images")
        order = torch.argsort(labels, stable=True)
        uniq, counts = torch.unique_consecutive(labels[order], return_counts=True)
        if len(uniq) < 2:
            raise ValueError("training needs at least two identities (x2 must differ from x1)")
        starts = torch.cumsum(counts, 0) - counts
        self.order, self.counts, self.starts = order, counts, starts
        self.group = torch.repeat_interleave(torch.arange(len(uniq)), counts)  # group of each sorted position
        self.eligible = torch.nonzero(counts[self.group] >= 2).squeeze(1)   # sorted positions usable as x1
        if self.eligible.numel() == 0:
            raise ValueError("every identity has a single image: same-identity pairs (x1, x1') are impossible")
        self.n = labels.numel()
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch: int):
        """(i1, i1p, i2) index tensors (B,) into the label vector."""
        g = self.generator
        p1 = self.eligible[torch.randint(len(self.eligible), (batch,), generator=g)]
        grp = self.group[p1]
        start, count = self.starts[grp], self.counts[grp]
        # x1': another position in the same group, skipping x1 itself
        r = (torch.rand(batch, generator=g) * (count - 1)).long()
        off = p1 - start
        p1p = start + r + (r >= off).long()
        # x2: a position outside x1's group, skipping the group's block in sorted order
        j = (torch.rand(batch, generator=g) * (self.n - count)).long()
        p2 = torch.where(j < start, j, j + count)
        return self.order[p1], self.order[p1p], self.order[p2]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
