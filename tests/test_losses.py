import math

import torch

from conftest import tiny_model_config, tiny_train_config
from dvgan.model import CodeMemory, LatentAdversary, PairCritic, code_pairs
from dvgan.train.loop import lr_factor
from dvgan.train.losses import between_identity_share, within_identity_spread
from dvgan.train.step import latent_loss


def test_within_identity_spread_reads_zero_for_identity_codes_and_one_for_unrelated_ones():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(64, 16, generator=g)
    assert within_identity_spread(centres, centres.clone()) < 1e-6          # s fixed by the identity
    a, b = torch.randn(4096, 16, generator=g), torch.randn(4096, 16, generator=g)
    assert abs(float(within_identity_spread(a, b)) - 1.0) < 0.05             # s unrelated to the identity
    half = within_identity_spread(centres + 0.5 * torch.randn(64, 16, generator=g),
                                  centres + 0.5 * torch.randn(64, 16, generator=g))
    assert 0.05 < float(half) < 0.5                                           # in between


def test_within_identity_spread_ignores_scale():
    g = torch.Generator().manual_seed(1)
    a, b, c = (torch.randn(32, 8, generator=g) for _ in range(3))
    assert torch.allclose(within_identity_spread(a, b, c), within_identity_spread(10 * a, 10 * b, 10 * c))


def test_latent_critic_memory_keeps_the_newest_codes():
    memory = CodeMemory(width=2, size=4)
    memory.remember(torch.arange(6, dtype=torch.float32).repeat(2, 1).T, torch.arange(6) % 5)
    assert int(memory.seen) == 6
    assert sorted(memory.codes[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]  # 0 and 1 were overwritten
    codes, ids = memory.recall(50)
    assert set(codes[:, 0].tolist()) <= {2.0, 3.0, 4.0, 5.0}
    assert torch.equal(ids, codes[:, 0].long() % 5)
    assert set(memory.state_dict()) == {"codes", "ids", "seen"}  # checkpointed


def test_cosine_learning_rate_falls_to_its_floor():
    cfg = tiny_train_config(steps=101, lr_decay="cosine", lr_floor=0.1)
    factors = [lr_factor(cfg, s) for s in range(101)]
    assert factors[0] == 1.0 and abs(factors[-1] - 0.1) < 1e-12 and abs(factors[50] - 0.55) < 1e-9
    assert all(x >= y for x, y in zip(factors, factors[1:]))
    assert lr_factor(tiny_train_config(steps=101, lr_decay="none"), 60) == 1.0


def test_between_identity_share_reads_one_for_identity_codes_and_chance_for_unrelated_ones():
    g = torch.Generator().manual_seed(2)
    ids = torch.arange(10).repeat(40)                                            # 10 identities, 40 codes each
    centres = torch.randn(10, 16, generator=g)
    assert abs(float(between_identity_share(centres[ids], ids)) - 1.0) < 1e-6    # the code names the identity
    noise = float(between_identity_share(torch.randn(400, 16, generator=g), ids))
    assert abs(noise - 9 / 399) < 0.01                                           # (C - 1) / (N - 1) by chance
    mixed = float(between_identity_share(centres[ids] + torch.randn(400, 16, generator=g), ids))
    assert 0.3 < mixed < 0.7                                                     # half the variance between
    codes = centres[ids] + torch.randn(400, 16, generator=g)
    assert torch.allclose(between_identity_share(codes, ids), between_identity_share(5 * codes + 3, ids))


def test_between_identity_share_pulls_the_identity_means_together():
    g = torch.Generator().manual_seed(3)
    ids = torch.arange(4).repeat(8)
    codes = (torch.randn(4, 6, generator=g)[ids] + 0.3 * torch.randn(32, 6, generator=g)).requires_grad_()
    between_identity_share(codes, ids).backward()
    moved = codes.detach() - 0.5 * codes.grad
    means = lambda c: torch.stack([c[ids == k].mean(0) for k in range(4)])  # noqa: E731
    assert float(means(moved).var(0).sum()) < float(means(codes.detach()).var(0).sum())


def test_code_pairs_label_each_pair_by_its_identities():
    a, b = torch.arange(4.0)[:, None], 10 + torch.arange(4.0)[:, None]
    left, right, same = code_pairs(a, b, torch.tensor([0, 1, 1, 2]))
    assert left[:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert right[:, 0].tolist() == [10, 11, 12, 13, 13, 10, 11, 12]  # b[i - 1] for the second half
    assert same.tolist() == [1, 1, 1, 1, 0, 0, 1, 0]                  # ids 1 and 1 meet at i = 2


def _pair_accuracy_after_training(codes_of, steps=300):
    """Train a PairCritic on codes drawn by codes_of(ids), then its accuracy on fresh codes of new ids."""
    torch.manual_seed(0)
    critic = PairCritic(tiny_model_config(z_dim=8))
    opt = torch.optim.Adam(critic.parameters(), lr=2e-3)
    pairs = tiny_train_config(zadv_kind="pairs")
    for _ in range(steps):
        ids = torch.randint(200, (64,))
        loss, _ = latent_loss(critic, pairs, torch.cat([codes_of(ids), codes_of(ids)], 1), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ids = torch.randint(200, 400, (512,))  # identities it never saw
    return float(latent_loss(critic, pairs, torch.cat([codes_of(ids), codes_of(ids)], 1), ids)[1].float().mean())


def test_pair_critic_tells_identities_apart_only_when_the_codes_hold_them():
    centres = torch.randn(400, 8, generator=torch.Generator().manual_seed(3))
    assert _pair_accuracy_after_training(lambda ids: centres[ids] + 0.3 * torch.randn(len(ids), 8)) > 0.9
    assert _pair_accuracy_after_training(lambda ids: torch.randn(len(ids), 8)) < 0.6


def test_pair_critic_is_symmetric():
    critic = PairCritic(tiny_model_config(z_dim=8))
    a, b = torch.randn(16, 8), torch.randn(16, 8)
    assert torch.allclose(critic(a, b), critic(b, a), atol=1e-6)


def test_the_encoders_latent_loss_is_the_cross_entropy_against_uniform():
    """fooled=True: for "ids", the mean of -log p over every identity (the critic's answer pushed to
    uniform); for "pairs", the cross-entropy against 0.5, least where the critic answers 0.5."""
    torch.manual_seed(0)
    model = tiny_model_config(z_dim=8, num_ids=5)
    critic, rows, ids = LatentAdversary(model), torch.randn(16, 8), torch.randint(5, (16,))
    fooled, _ = latent_loss(critic, tiny_train_config(), rows, ids, fooled=True)
    assert torch.allclose(fooled, -torch.log_softmax(critic(rows), dim=1).mean())
    pair_critic, pairs = PairCritic(model), tiny_train_config(zadv_kind="pairs")
    for p in pair_critic.net[-1].parameters():
        torch.nn.init.zeros_(p)  # answers 0.5 to every pair
    fooled, _ = latent_loss(pair_critic, pairs, torch.randn(16, 16), ids, fooled=True)
    assert abs(float(fooled.detach()) - math.log(2)) < 1e-6
