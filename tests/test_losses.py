import torch

from conftest import tiny_model_config, tiny_train_config
from dvgan.model import CodeMemory, LatentAdversary
from dvgan.train.loop import lr_factor
from dvgan.train.losses import (between_identity_share, paired_between_share,
                               within_identity_share_whitened, within_identity_spread)
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


def test_whitened_spread_sees_what_varies_within_an_identity_in_a_quiet_direction_of_s():
    g = torch.Generator().manual_seed(2)
    centres = torch.randn(256, 16, generator=g)
    a, b = centres.clone(), centres.clone()
    a[:, 15], b[:, 15] = 0.01 * torch.randn(256, generator=g), 0.01 * torch.randn(256, generator=g)  # a pose
    assert float(within_identity_spread(a, b)) < 1e-4                      # the plain ratio hardly sees it
    assert 0.04 < float(within_identity_share_whitened(a, b)) < 0.08        # one dimension of 16 is all pose
    assert float(within_identity_share_whitened(centres, centres.clone())) < 1e-6
    u, v = torch.randn(4096, 16, generator=g), torch.randn(4096, 16, generator=g)
    assert abs(float(within_identity_share_whitened(u, v)) - 1 / 1.02) < 0.05  # unrelated to the identity
    scale = torch.linspace(0.1, 10.0, 16)
    assert torch.allclose(within_identity_share_whitened(a * scale, b * scale), within_identity_share_whitened(a, b),
                          rtol=1e-4)


def test_paired_between_share_estimates_the_identity_offsets_where_the_plain_share_reads_one_half():
    """One pair of codes per identity: code = offset of the identity + what varies within it, the two
    independent; the true between-identity share is offset^2 / (offset^2 + 1)."""
    g = torch.Generator().manual_seed(4)
    ids = torch.arange(4096)
    for offset in (0.0, 1.0, 3.0):
        centre = offset * torch.randn(4096, 8, generator=g)
        a, b = centre + torch.randn(4096, 8, generator=g), centre + torch.randn(4096, 8, generator=g)
        true = offset ** 2 / (offset ** 2 + 1)
        assert abs(float(paired_between_share(a, b)) - true) < 0.03
        plain = float(between_identity_share(torch.cat([a, b]), torch.cat([ids, ids])))
        assert abs(plain - (1 + true) / 2) < 0.03  # biased: one half with no offsets at all
    scale = torch.linspace(0.1, 10.0, 8)
    assert torch.allclose(paired_between_share(a * scale, b * scale), paired_between_share(a, b), rtol=1e-4)
    a[:, 4:], b[:, 4:] = a[:, 4:] / 10, b[:, 4:] / 10  # half the dimensions quiet: they weigh as much
    assert abs(float(paired_between_share(a, b)) - true) < 0.03


def test_latent_critic_memory_keeps_the_newest_codes():
    memory = CodeMemory(z_dim=2, size=4)
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


def test_the_encoders_latent_loss_is_the_cross_entropy_against_uniform():
    """fooled=True: the mean of -log p over every identity (the critic's answer pushed to uniform)."""
    torch.manual_seed(0)
    critic = LatentAdversary(tiny_model_config(z_dim=8, num_ids=5))
    mu, ids = torch.randn(16, 8), torch.randint(5, (16,))
    fooled, _ = latent_loss(critic, mu, ids, fooled=True)
    assert torch.allclose(fooled, -torch.log_softmax(critic(mu), dim=1).mean())
