import ast
import pathlib

import pytest
import torch

from dvgan.config import ModelConfig
from dvgan.errors import UsageError
from dvgan.model import Adversary, AutoEncoder, Decoder, Encoder, kl_to_standard_normal, reparameterize

VARIANTS = [(trunk, size, ch) for trunk in ("conv5", "conv3") for size in (32, 64) for ch in (1, 3)]


@pytest.mark.parametrize("trunk,size,channels", VARIANTS)
def test_shapes_and_range(trunk, size, channels):
    cfg = ModelConfig(image_size=size, channels=channels, s_dim=6, z_dim=5, trunk=trunk, width=8,
                      adv_width=8, num_ids=4).validate()
    enc, dec, adv = Encoder(cfg), Decoder(cfg), Adversary(cfg)
    x = torch.rand(3, channels, size, size) * 2 - 1
    s, mu, logvar = enc(x)
    assert s.shape == (3, 6) and mu.shape == (3, 5) and logvar.shape == (3, 5)
    img = dec(s, mu)
    assert img.shape == x.shape
    assert img.min() >= -1 and img.max() <= 1
    assert adv(img, torch.tensor([0, 1, 3])).shape == (3,)


@pytest.mark.parametrize("trunk,warp,z_trunk", [("conv5", False, False), ("conv3", False, False),
                                               ("conv5", True, False), ("conv3", False, True)])
def test_every_parameter_gets_a_gradient(trunk, warp, z_trunk):
    cfg = ModelConfig(channels=1, s_dim=4, z_dim=4, trunk=trunk, width=4, adv_width=4, num_ids=3, warp=warp,
                      z_trunk=z_trunk)
    ae, adv = AutoEncoder(cfg), Adversary(cfg)
    x = torch.rand(4, 1, 32, 32) * 2 - 1
    out = ae(x, x.flip(0), x.roll(1, 0), torch.randn(4, 4))
    loss = sum(v.float().pow(2).mean() for v in out.values()) + adv(out["x12"], torch.tensor([0, 1, 2, 0])).mean()
    loss.backward()
    for name, p in list(ae.named_parameters()) + list(adv.named_parameters()):
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_decoder_adds_s_and_z():
    """The two codes are merged by addition: Dec sees from_s(s) + from_z(z), not a concatenation."""
    cfg = ModelConfig(channels=1, s_dim=4, z_dim=6, width=4)
    dec = Decoder(cfg).eval()
    s, z = torch.randn(2, 4), torch.randn(2, 6)
    with torch.no_grad():
        h = dec.from_s(s) + dec.from_z(z)
        ref = dec.net(torch.relu(dec.bn0(h.view(-1, dec.base_ch, dec.base, dec.base))))
        assert torch.allclose(dec(s, z), ref)


def test_decoder_may_be_wider_than_the_encoder():
    cfg = ModelConfig(channels=3, s_dim=4, z_dim=5, width=4, dec_width=8, adv_width=4, num_ids=3).validate()
    enc, dec = Encoder(cfg), Decoder(cfg)
    assert enc.trunk[0].out_channels == 4 and enc.feat == 4 * 4 * 4 ** 2
    assert dec.base_ch == 32 and dec.net[0].in_channels == 32 and dec.net[-2].in_channels == 8
    s, mu, _ = enc(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert dec(s, mu).shape == (2, 3, 32, 32)
    same = Decoder(ModelConfig(channels=3, s_dim=4, z_dim=5, width=4))  # 0: the encoder's width
    assert same.base_ch == 16 and same.net[-2].in_channels == 4
    with pytest.raises(UsageError, match="dec_width"):
        ModelConfig(dec_width=-1).validate()


def test_label_tables_condition_the_adversary():
    cfg = ModelConfig(channels=1, width=4, adv_width=4, num_ids=5)
    adv = Adversary(cfg).eval()
    assert len(adv.tables) == 3 and all(t.num_embeddings == 5 for t in adv.tables)
    x = torch.rand(2, 1, 32, 32)
    for t in adv.tables:
        torch.nn.init.normal_(t.weight)
    assert not torch.allclose(adv(x, torch.tensor([0, 0])), adv(x, torch.tensor([1, 1])))


def test_kl_and_reparameterize_use_log_variance():
    mu, logvar = torch.zeros(1, 3), torch.zeros(1, 3)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), torch.zeros(1))
    logvar = torch.full((1, 3), 2.0)  # sigma^2 = e^2
    expected = 0.5 * 3 * (torch.exp(torch.tensor(2.0)) - 1 - 2)
    assert torch.allclose(kl_to_standard_normal(mu, logvar), expected.reshape(1))
    torch.manual_seed(0)
    z = reparameterize(torch.zeros(20000, 1), torch.full((20000, 1), 2.0))
    assert abs(z.std().item() - torch.exp(torch.tensor(1.0)).item()) < 0.05


def test_model_module_imports_only_torch():
    src = pathlib.Path(__file__).parent.parent / "dvgan" / "model.py"
    names = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert names <= {"torch", "__future__"}, names


@pytest.mark.parametrize("bad", [dict(image_size=30), dict(channels=2), dict(trunk="vgg"), dict(s_dim=0)])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        ModelConfig(**bad).validate()


def test_pixel_centres_give_x_along_a_row_and_y_down_a_column():
    from dvgan.model import pixel_centres
    grid = pixel_centres(4)
    assert grid.shape == (2, 4, 4)
    assert torch.allclose(grid[0, 1], torch.tensor([-0.75, -0.25, 0.25, 0.75]))     # x along a row
    assert torch.allclose(grid[1, :, 2], torch.tensor([-0.75, -0.25, 0.25, 0.75]))  # y down a column
    assert torch.all(grid[0] == grid[0, :1]) and torch.all(grid[1] == grid[1, :, :1])


def test_warp_decoder_moves_a_template_drawn_from_s():
    """With warp, z changes only where the template lands: at the start (a zero pose head) the output is
    the template itself, and a shift of 0.5 (a quarter of the width) moves it by 8 of 32 pixels."""
    cfg = ModelConfig(channels=3, s_dim=4, z_dim=6, width=4, warp=True)
    dec = Decoder(cfg).eval()
    assert dec.from_z is None
    s, z = torch.randn(2, 4), torch.randn(2, 6)
    with torch.no_grad():
        template = dec.draw(dec.from_s(s))
        assert torch.allclose(dec(s, z), template, atol=1e-6)
        dec.to_pose.bias.copy_(torch.tensor([0.5, 0.0, 0.0, 0.0]))
        moved = dec(s, z)
        assert torch.allclose(moved[..., 8:], template[..., :-8], atol=1e-6)
        assert torch.allclose(moved[..., :8], torch.full_like(moved[..., :8], -1.0))  # black where nothing lands
        dec.to_pose.bias.copy_(torch.tensor([0.0, 0.0, 0.0, torch.pi]))  # a half turn about the centre
        assert torch.allclose(dec(s, z), template.flip(-1, -2), atol=1e-5)
        dec.to_pose.weight.normal_()
        assert not torch.allclose(dec(s, z), dec(s, z.flip(0)))  # now z moves it


@pytest.mark.parametrize("warp", [True, False])
def test_generator_forward_decodes_the_four_images_and_draws_each_template_once(warp):
    """The four decodes of a triplet batch are Dec(z1, s1), Dec(z1, s1'), Dec(z1, s2), Dec(z_prior, s2)
    (in eval mode, where BatchNorm uses its running statistics, exactly the decoder's own output); with
    warp, s2's template is drawn once for both of its images: the drawing network sees 3B images, not 4B."""
    cfg = ModelConfig(channels=3, s_dim=4, z_dim=6, width=4, warp=warp, num_ids=3)
    ae = AutoEncoder(cfg).eval()
    if warp:
        torch.nn.init.normal_(ae.decoder.to_pose.weight, std=0.3)  # a pose that depends on z
    drawn = []
    ae.decoder.net.register_forward_hook(lambda module, args, out: drawn.append(out.shape[0]))
    b = 5
    x1, x1p, x2 = (torch.rand(b, 3, 32, 32) * 2 - 1 for _ in range(3))
    z_prior = torch.randn(b, 6)
    with torch.no_grad():
        torch.manual_seed(0)
        out = ae(x1, x1p, x2, z_prior)
        assert drawn == [3 * b if warp else 4 * b]
        s1, s1p, s2 = ae.encoder(torch.cat([x1, x1p, x2]))[0].split(b)
        torch.manual_seed(0)  # the draw of z1 above: reparameterize is the forward's only random op
        z1 = reparameterize(out["mu1"], out["logvar1"])
        for name, s_, z_ in (("x11", s1, z1), ("x11p", s1p, z1), ("x12", s2, z1), ("xp2", s2, z_prior)):
            assert torch.allclose(out[name], ae.decoder(s_, z_), atol=1e-5), name
        assert not torch.allclose(out["x12"], out["xp2"], atol=1e-3)  # one template, moved two ways


def test_z_trunk_keeps_what_z_learns_out_of_the_features_s_reads():
    """With a trunk of z's own, a loss on mu moves z's trunk and not s's, and s depends on s's trunk alone;
    with the shared trunk, the same loss reaches the trunk s reads."""
    for z_trunk in (True, False):
        cfg = ModelConfig(channels=1, s_dim=4, z_dim=3, width=4, z_trunk=z_trunk)
        enc = Encoder(cfg)
        x = torch.rand(5, 1, 32, 32) * 2 - 1
        s, mu, logvar = enc(x)
        assert s.shape == (5, 4) and mu.shape == logvar.shape == (5, 3)
        mu.pow(2).sum().backward()
        s_trunk_grad = sum(p.grad.abs().sum() for p in enc.trunk.parameters() if p.grad is not None)
        if z_trunk:
            assert s_trunk_grad == 0 and enc.to_s.weight.grad is None
            assert all(p.grad.abs().sum() > 0 for p in enc.trunk_z.parameters())
            assert torch.equal(enc.z_head(enc.features(x)), mu)
        else:
            assert s_trunk_grad > 0
