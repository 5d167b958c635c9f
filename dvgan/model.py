"""Encoder, Decoder and Adversary of Mathieu et al. (NIPS 2016), supplementary "Network architectures".

Imports torch only. Images are float (B, C, H, W) in [-1, 1]. The log-variance convention
is log(sigma^2) everywhere: z = mu + exp(0.5 * logvar) * eps.
"""
from __future__ import annotations

import torch
from torch import nn


def _stages(trunk: str, width: int):
    """(in_ch, out_ch, kernel, stride) of each conv of the encoder trunk, input channels left as None."""
    if trunk == "conv5":  # three 5x5 stride-2 convs
        chans = [width, 2 * width, 4 * width]
        return [(None if i == 0 else chans[i - 1], c, 5, 2) for i, c in enumerate(chans)]
    # conv3: six 3x3 convs, stride 2 on every other layer (the 2nd, 4th and 6th)
    chans = [width, width, 2 * width, 2 * width, 4 * width, 4 * width]
    return [(None if i == 0 else chans[i - 1], c, 3, 2 if i % 2 else 1) for i, c in enumerate(chans)]


def pixel_centres(size: int) -> torch.Tensor:
    """(2, H, W): the x and y of each pixel centre of a size x size image, in [-1, 1]."""
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2.0 - 1.0
    return torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size)])


def _trunk(cfg) -> nn.Sequential:
    """The encoder's conv stages: (B, C, H, W) -> (B, 4w, H/8, W/8)."""
    layers = []
    for cin, cout, k, stride in _stages(cfg.trunk, cfg.width):
        layers += [
            nn.Conv2d(cin or cfg.channels, cout, k, stride, padding=k // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """x (B, C, H, W) -> s (B, s_dim), mu (B, z_dim), logvar (B, z_dim)."""

    def __init__(self, cfg):
        super().__init__()
        self.s_dim, self.z_dim = cfg.s_dim, cfg.z_dim
        self.trunk = _trunk(cfg)
        self.trunk_z = _trunk(cfg) if cfg.z_trunk else None  # z's own trunk: nothing z learns reaches s's
        self.feat = 4 * cfg.width * (cfg.image_size // 8) ** 2
        self.to_s = nn.Linear(self.feat, cfg.s_dim)
        self.to_z = nn.Linear(self.feat, 2 * cfg.z_dim)  # mu and logvar

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's output, flattened: (B, 4w * (H/8) * (W/8)), shared by both heads; with a trunk of
        z's own, s's features then z's: (B, 2 * 4w * (H/8) * (W/8))."""
        h = self.trunk(x).flatten(1)
        return h if self.trunk_z is None else torch.cat([h, self.trunk_z(x).flatten(1)], dim=1)

    def _split(self, h: torch.Tensor):
        """Trunk features -> (s's part, z's part): the same tensor twice with one shared trunk."""
        return (h, h) if self.trunk_z is None else h.split(self.feat, dim=1)

    def heads(self, h: torch.Tensor):
        """Trunk features -> (s, mu, logvar)."""
        h_s, h_z = self._split(h)
        mu, logvar = self.to_z(h_z).chunk(2, dim=1)
        return self.to_s(h_s), mu, logvar

    def z_head(self, h: torch.Tensor) -> torch.Tensor:
        """Trunk features -> mu alone (s's head is not run)."""
        return self.to_z(self._split(h)[1])[:, :self.z_dim]

    def forward(self, x: torch.Tensor):
        return self.heads(self.features(x))


class Decoder(nn.Module):
    """(s (B, s_dim), z (B, z_dim)) -> image (B, C, H, W) in [-1, 1].

    s and z each go through a fully connected layer and are ADDED (not concatenated), as in the paper.
    With cfg.warp, s alone draws a template and z only moves it (shift, scale, turn).
    """

    def __init__(self, cfg):
        super().__init__()
        width = cfg.dec_width or cfg.width
        self.base = cfg.image_size // 8
        self.base_ch = 4 * width
        feat = self.base_ch * self.base ** 2
        self.warps = cfg.warp  # s alone draws a template, z only moves it
        self.from_s = nn.Linear(cfg.s_dim, feat)
        self.from_z = None if cfg.warp else nn.Linear(cfg.z_dim, feat)
        self.bn0 = nn.BatchNorm2d(self.base_ch)
        stages = _stages(cfg.trunk, width)
        layers = []
        # Mirror the encoder: walk its stages backwards, each conv becoming a (fractionally strided) transpose.
        for i, (cin, cout, k, stride) in reversed(list(enumerate(stages))):
            last = i == 0
            out_ch = cfg.channels if last else cin
            layers.append(nn.ConvTranspose2d(cout, out_ch, k, stride, padding=k // 2,
                                             output_padding=stride - 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        if cfg.warp:  # z -> (x shift, y shift, log scale, turn), starting at the identity transform
            self.to_pose = nn.Linear(cfg.z_dim, 4)
            nn.init.zeros_(self.to_pose.weight)
            nn.init.zeros_(self.to_pose.bias)
            grid = pixel_centres(cfg.image_size).flatten(1).T[None]  # (1, H*W, 2): x, y
            self.register_buffer("grid", grid.contiguous(), persistent=False)

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.warps:
            return self.move(self.template(s), z)
        return self.draw(self.from_s(s) + self.from_z(z))

    def template(self, s: torch.Tensor) -> torch.Tensor:
        """With warp: the image s alone draws, before z moves it (B, C, H, W)."""
        return self.draw(self.from_s(s))

    def draw(self, h: torch.Tensor) -> torch.Tensor:
        """(B, 4w * b * b) features -> image (B, C, H, W); with warp, from_s(s) gives the template."""
        h = h.view(-1, self.base_ch, self.base, self.base)         # (B, 4w, b, b)
        return self.net(torch.relu(self.bn0(h)))

    def move(self, template: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Each output pixel p samples the template at R(-turn) (p - shift) / scale; outside it, black."""
        shift, log_scale, turn = self.to_pose(z).float().split([2, 1, 1], dim=1)
        cos, sin = torch.cos(turn), torch.sin(turn)
        inv = torch.exp(-log_scale)
        rot = torch.stack([torch.cat([cos, sin], 1), torch.cat([-sin, cos], 1)], 1) * inv[:, :, None]  # (B, 2, 2)
        src = torch.matmul(self.grid - shift[:, None, :], rot.transpose(1, 2))  # (B, H*W, 2)
        size = template.shape[-1]
        lit = torch.nn.functional.grid_sample((template.float() + 1.0), src.view(-1, size, size, 2),
                                              mode="bilinear", padding_mode="zeros", align_corners=False)
        return (lit - 1.0).to(template.dtype)


class Adversary(nn.Module):
    """Identity-conditioned discriminator: (image (B, C, H, W), id (B,)) -> logit (B,).

    Conditional DCGAN: three 5x5 stride-2 convs with BatchNorm and LeakyReLU(0.2); the label goes
    through three independent lookup tables added to the first three layers' feature maps.
    """

    def __init__(self, cfg):
        super().__init__()
        w = cfg.adv_width
        chans = [w, 2 * w, 4 * w]
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.tables = nn.ModuleList()
        cin = cfg.channels
        for c in chans:
            self.convs.append(nn.Conv2d(cin, c, 5, 2, padding=2, bias=False))
            self.norms.append(nn.BatchNorm2d(c))
            self.tables.append(nn.Embedding(cfg.num_ids, c))
            cin = c
        self.drop = nn.Dropout(cfg.adv_dropout)
        self.out = nn.Linear(4 * w * (cfg.image_size // 8) ** 2, 1)

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        h = x
        for conv, norm, table in zip(self.convs, self.norms, self.tables):
            h = norm(conv(h)) + table(ids)[:, :, None, None]
            h = nn.functional.leaky_relu(h, 0.2)
        return self.out(self.drop(h.flatten(1))).squeeze(1)


def critic_mlp(width: int, outputs: int, hidden: int) -> nn.Sequential:
    """The code critics' network: inputs standardised first (a signal at a tiny scale in a collapsed
    dimension is as readable to a probe that standardises its inputs as a large one), two hidden layers."""
    return nn.Sequential(nn.BatchNorm1d(width, affine=False), nn.Linear(width, hidden), nn.LeakyReLU(0.2),
                         nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, outputs))


class LatentAdversary(nn.Module):
    """Identity classifier on the unspecified code: mu (B, z_dim) -> logits (B, num_ids).

    Not in the paper: an optional critic (Lample et al., "Fader Networks", NIPS 2017) that trains the
    encoder to leave no identity in z even where the decoder would ignore it.
    """

    def __init__(self, cfg, hidden: int = 256):
        super().__init__()
        self.net = critic_mlp(cfg.z_dim, cfg.num_ids, hidden)

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return self.net(mu)


class IdentityHead(nn.Module):
    """Cosine-softmax read-out of the training identities from the specified code: s (B, s_dim) ->
    logits (B, num_ids), scale * cos(s, w_k).

    Not in the paper: trained together with the encoder (train.w_sid), it asks s to tell the identities
    apart by what all their images share, where the reconstruction terms only ask s to carry what the
    decoder can use. Cosines with a fixed scale (Wang et al., "NormFace", 2017), so the loss cannot be
    lowered by growing s, which the decoder also reads.
    """

    def __init__(self, cfg, scale: float = 16.0):
        super().__init__()
        self.scale = scale
        self.weight = nn.Parameter(0.01 * torch.randn(cfg.num_ids, cfg.s_dim))

    def forward(self, s: torch.Tensor, target: torch.Tensor | None = None, margin: float = 0.0) -> torch.Tensor:
        """Logits of s (B, s_dim). With target (B,) and a margin, each row's true identity has the margin
        taken from its cosine (CosFace, Wang et al. 2018): it must win by that much."""
        s = nn.functional.normalize(s, dim=1)
        cos = s @ nn.functional.normalize(self.weight, dim=1).T
        if target is not None and margin > 0:
            cos = cos - margin * nn.functional.one_hot(target, cos.shape[1])
        return self.scale * cos


class CodeMemory(nn.Module):
    """A ring buffer of recent (code, identity) pairs, so the latent critic trains on far more codes than
    one batch holds, as the probe that scores the model will. Buffers, so checkpoints carry it; each
    process keeps its own (it is training state, not a replicated model).
    """

    def __init__(self, z_dim: int, size: int = 4096):
        super().__init__()
        self.register_buffer("codes", torch.zeros(size, z_dim))
        self.register_buffer("ids", torch.zeros(size, dtype=torch.long))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def remember(self, mu: torch.Tensor, ids: torch.Tensor) -> None:
        """Store detached codes and their identities, overwriting the oldest."""
        slots = (self.seen + torch.arange(len(ids), device=ids.device)) % len(self.ids)
        self.codes[slots] = mu.detach().float()
        self.ids[slots] = ids
        self.seen += len(ids)

    def recall(self, count: int):
        """(codes, ids): ``count`` pairs drawn at random from what is stored."""
        filled = min(int(self.seen), len(self.ids))
        pick = torch.randint(filled, (count,), device=self.ids.device)
        return self.codes[pick], self.ids[pick]


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """z ~ N(mu, exp(logvar)); logvar is log(sigma^2). eps from torch's global generator, or from
    generator (on mu's device) when one is given."""
    if generator is None:
        eps = torch.randn_like(mu)
    else:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over dims, (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class AutoEncoder(nn.Module):
    """Encoder and decoder together: the parameters the generator step updates (and DDP wraps)."""

    def __init__(self, cfg):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x1, x1p, x2, z_prior, critic_trunk_grad: float = 1.0, swaps: bool = True):
        """Algorithm 1's generator forward on a batch of B triplets; returns a dict of tensors.

        Encodes x1, x1', x2 in one pass and decodes Dec(z1, s1), Dec(z1, s1'), Dec(z1, s2) and
        Dec(z_prior, s2) in one pass (one BatchNorm batch each; with the warping decoder s2's template is
        drawn once and moved twice, a quarter less of the decoder's work); without swaps (nothing judges them,
        lambda = 0) only the first two, and "x12", "xp2" are None. "mu1_critic" equals mu1, but only
        critic_trunk_grad of a gradient through it reaches the trunk; the rest stops at the z head.
        """
        b = x1.shape[0]
        h = self.encoder.features(torch.cat([x1, x1p, x2]))
        s, mu, logvar = self.encoder.heads(h)
        s1, s1p, s2 = s.split(b)
        mu1, mu1p, mu2 = mu.split(b)
        logvar1 = logvar[:b]
        z1 = reparameterize(mu1, logvar1)
        if swaps:
            zs = torch.cat([z1, z1, z1, z_prior])
            if self.decoder.warps:  # s2's template is drawn once and moved twice
                templates = self.decoder.template(s)  # s1, s1', s2
                images = self.decoder.move(torch.cat([templates, templates[2 * b:]]), zs)
            else:
                images = self.decoder(torch.cat([s, s2]), zs)
            x11, x11p, x12, xp2 = images.split(b)
        else:
            x11, x11p = self.decoder(torch.cat([s1, s1p]), torch.cat([z1, z1])).split(b)
            x12 = xp2 = None
        mu1_critic = mu1
        if critic_trunk_grad < 1.0:
            h1 = h[:b]
            h1 = critic_trunk_grad * h1 + (1.0 - critic_trunk_grad) * h1.detach()
            mu1_critic = self.encoder.z_head(h1)
        return {"x11": x11, "x11p": x11p, "x12": x12, "xp2": xp2, "mu1_critic": mu1_critic,
                "mu1": mu1, "mu1p": mu1p, "mu2": mu2, "logvar1": logvar1, "s1": s1, "s1p": s1p, "s2": s2}
