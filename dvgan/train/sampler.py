"""Algorithm 1's triplet sampler: x1 and x1' share an identity, x2 has another one."""
from __future__ import annotations

import torch


class TripletSampler:
    """Draws index triplets over a label vector with a private torch.Generator (its state is checkpointed).

    Only identities with at least two images can give x1 (x1' is a different image of the same
    identity); x2 is uniform over the images of every other identity.

    ids_per_batch = P > 0 draws each batch from P identities (weighted by their image counts, without
    replacement): x1's identity is one of them, x2's another, so that each identity shows up in several
    triplets of a batch and batch statistics over identities (train.w_zbetween) see more than one pair
    per identity. Then only identities with two or more images give x1 or x2.
    """

    def __init__(self, labels: torch.Tensor, seed: int = 0, ids_per_batch: int = 0):
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
        self.pool_groups = torch.nonzero(counts >= 2).squeeze(1)                   # identities that give x1
        self.ids_per_batch = min(ids_per_batch, len(self.pool_groups))
        self.generator = torch.Generator().manual_seed(seed)

    def sample(self, batch: int):
        """(i1, i1p, i2) index tensors (B,) into the label vector."""
        g = self.generator
        if self.ids_per_batch >= 2:
            return self._sample_pooled(batch)
        p1 = self.eligible[torch.randint(len(self.eligible), (batch,), generator=g)]
        grp = self.group[p1]
        start, count = self.starts[grp], self.counts[grp]
        p1p = self._other_in_group(p1, start, count)
        # x2: a position outside x1's group, skipping the group's block in sorted order
        j = (torch.rand(batch, generator=g) * (self.n - count)).long()
        p2 = torch.where(j < start, j, j + count)
        return self.order[p1], self.order[p1p], self.order[p2]

    def _other_in_group(self, p1, start, count):
        """x1': another sorted position in x1's group (start, count), skipping x1 itself."""
        r = (torch.rand(len(p1), generator=self.generator) * (count - 1)).long()
        return start + r + (r >= p1 - start).long()

    def _sample_pooled(self, batch: int):
        g, k = self.generator, self.ids_per_batch
        weights = self.counts[self.pool_groups].float()
        pool = self.pool_groups[torch.multinomial(weights, k, replacement=False, generator=g)]      # (k,)
        a = torch.randint(k, (batch,), generator=g)
        b = (a + 1 + torch.randint(k - 1, (batch,), generator=g)) % k                # another member
        g1, g2 = pool[a], pool[b]
        p1 = self.starts[g1] + (torch.rand(batch, generator=g) * self.counts[g1]).long()
        p1p = self._other_in_group(p1, self.starts[g1], self.counts[g1])
        p2 = self.starts[g2] + (torch.rand(batch, generator=g) * self.counts[g2]).long()
        return self.order[p1], self.order[p1p], self.order[p2]

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
