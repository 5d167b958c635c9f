"""dvgan.ops: every batched operation against the obvious one-image-at-a-time version."""
import numpy as np
import pytest
import torch

from dvgan import ops
from dvgan.config import ModelConfig
from dvgan.model import Decoder, Encoder, reparameterize
from dvgan.prior import draw


@pytest.fixture(scope="module")
def models():
    cfg = ModelConfig(image_size=16, channels=3, s_dim=4, z_dim=3, width=4, adv_width=4)
    torch.manual_seed(0)
    return Encoder(cfg).eval(), Decoder(cfg).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(5, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1


def one(encoder, decoder, x_s, x_z=None, z=None):
    """Dec(s of one image, mu of another or a given z), the slow obvious way."""
    with torch.no_grad():
        u = encoder(x_z[None])[1] if z is None else z[None]
        return decoder(encoder(x_s[None])[0], u)[0]


@pytest.mark.parametrize("chunk", [1, 2, 1024])
def test_swap_and_swap_grid_equal_one_pair_at_a_time(models, x, chunk):
    enc, dec = models
    with torch.no_grad():
        pairs = ops.swap(enc, dec, x[:4], x[1:], chunk)
        grid = ops.swap_grid(enc, dec, x[:4], x[:3], chunk)
    assert pairs.shape == (4, 3, 16, 16) and grid.shape == (3, 4, 3, 16, 16)
    for i in range(4):
        torch.testing.assert_close(pairs[i], one(enc, dec, x[i], x[i + 1]), atol=1e-5, rtol=0)
    for i in range(3):
        for j in range(4):  # rows keep a z, columns keep an s
            torch.testing.assert_close(grid[i, j], one(enc, dec, x[j], x[i]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk", [2, 1024])
def test_sample_and_sample_grid_equal_one_draw_at_a_time(models, x, chunk):
    enc, dec = models
    z = torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pairs = ops.sample(enc, dec, x[:4], z, chunk)
        grid = ops.sample_grid(enc, dec, x[:2], z, chunk)
    assert grid.shape == (2, 4, 3, 16, 16)
    for i in range(4):
        torch.testing.assert_close(pairs[i], one(enc, dec, x[i], z=z[i]), atol=1e-5, rtol=0)
    for i in range(2):
        for k in range(4):  # a row keeps an image, a column a z
            torch.testing.assert_close(grid[i, k], one(enc, dec, x[i], z=z[k]), atol=1e-5, rtol=0)


def test_recombine_chunks_cover_the_rows_in_order(models, x):
    enc, dec = models
    rows = torch.tensor([0, 2, 2, 1, 0])
    with torch.no_grad():
        chunks = list(ops.recombine_chunks(enc, dec, x[:3], rows, rows, x_z=x[2:], chunk=2))
        whole = ops.recombine(enc, dec, x[:3], rows, rows, x_z=x[2:], chunk=1024)
    assert [(a, b) for a, b, _ in chunks] == [(0, 2), (2, 4), (4, 5)]
    torch.testing.assert_close(torch.cat([im for _, _, im in chunks]), whole, atol=1e-5, rtol=0)


def test_interpolation_corners_reconstruct_and_rows_keep_z(models, x):
    enc, dec = models
    with torch.no_grad():
        grid = ops.interpolate(enc, dec, x[:1], x[1:2], steps=4)
        s, mu, _ = enc(x[:2])
        middle = dec(s[:1] + (s[1:] - s[:1]) / 3, mu[:1] + 2 * (mu[1:] - mu[:1]) / 3)[0]
    assert grid.shape == (4, 4, 3, 16, 16)
    torch.testing.assert_close(grid[0, 0], one(enc, dec, x[0], x[0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(grid[3, 3], one(enc, dec, x[1], x[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(grid[2, 1], middle, atol=1e-5, rtol=0)  # row 2 of 3 in z, column 1 of 3 in s


def test_reparameterize_draws_eps_from_the_generator_it_is_given(models, x):
    enc, _ = models
    with torch.no_grad():
        _, mu, logvar = enc(x)
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(7))
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(7))  # evaluation's seeded draw
    torch.testing.assert_close(z, mu + torch.exp(0.5 * logvar) * eps, atol=0, rtol=0)
    torch.manual_seed(3)
    c = reparameterize(mu, logvar)  # the training forward's draw: torch's global generator
    torch.manual_seed(3)
    torch.testing.assert_close(c, mu + torch.exp(0.5 * logvar) * torch.randn_like(mu), atol=0, rtol=0)


def test_draw_z_follows_the_prior(models):
    prior = {"mean": np.array([1.0, -2.0, 0.5], np.float32), "scale": np.diag([0.5, 2.0, 1.0]).astype(np.float32)}
    z = ops.draw_z(prior, 4, 3, torch.Generator().manual_seed(5))
    eps = torch.randn(4, 3, generator=torch.Generator().manual_seed(5)).numpy()
    np.testing.assert_array_equal(z.numpy(), draw(prior, eps))
    np.testing.assert_array_equal(ops.draw_z(None, 4, 3, torch.Generator().manual_seed(5)).numpy(), eps)


def test_evaluating_restores_each_modules_mode(models):
    enc, dec = models
    enc.train()
    try:
        with ops.evaluating(enc, dec):
            assert not enc.training and not dec.training and not torch.is_grad_enabled()
        assert enc.training and not dec.training
    finally:
        enc.eval()
