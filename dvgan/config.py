"""Model and training configuration: plain dataclasses of plain types.

A checkpoint stores both as dicts (``asdict``), so every downstream tool rebuilds the
model from the checkpoint alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from .errors import UsageError

TRUNKS = ("conv5", "conv3")  # paper: conv5 for MNIST/Sprites, conv3 for NORB/YaleB


# train.light_on: which of (x1, x1', x2) are relit
LIGHT_ON = {"all": (True, True, True), "swap": (False, True, False)}


@dataclass
class ModelConfig:
    image_size: int = 32      # H = W; a multiple of 8 (three stride-2 stages)
    channels: int = 3         # 1 (grey) or 3 (RGB)
    s_dim: int = 64           # specified code (identity)
    z_dim: int = 128          # unspecified code (everything else); 512 in the paper for sprites and faces
    trunk: str = "conv5"      # "conv5": three 5x5 stride-2 convs; "conv3": six 3x3 convs, stride 2 every other
    width: int = 32           # channels of the first conv stage; doubled at each stride-2 stage
    dec_width: int = 0        # the decoder's width, where it should differ from the encoder's (0 = width)
    num_ids: int = 2          # identities the adversary's lookup tables know (the training identities)
    adv_width: int = 32       # channels of the adversary's first conv
    adv_dropout: float = 0.5  # dropout before the adversary's output (the authors' code used 0.5)
    z_trunk: bool = False     # z gets a conv trunk of its own instead of sharing s's, so that what keeps the
                              # identity out of z never changes the features s reads (not in the paper)
    warp: bool = False        # the decoder draws a template from s alone and moves it by a similarity
                              # transform (shift, scale, turn) read from z (not in the paper)

    def validate(self) -> "ModelConfig":
        if self.image_size % 8 or self.image_size < 8:
            raise UsageError(f"image_size must be a positive multiple of 8, got {self.image_size}")
        if self.channels not in (1, 3):
            raise UsageError(f"channels must be 1 or 3, got {self.channels}")
        if self.trunk not in TRUNKS:
            raise UsageError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}")
        for name in ("s_dim", "z_dim", "width", "num_ids", "adv_width"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.dec_width < 0:
            raise UsageError(f"dec_width must be >= 0 (0: the encoder's width), got {self.dec_width}")
        return self


@dataclass
class TrainConfig:
    steps: int = 2000             # generator updates (with epochs > 0, the least of them)
    epochs: float = 0.0           # > 0: train for this many passes over the training images, i.e.
                                  # max(steps, ceil(epochs * images / batch_size)) steps (0 = steps alone)
    batch_size: int = 32          # triplets per step
    optimizer: str = "adam"       # "adam" or "sgd" (the paper reports SGD works; Adam is faster here)
    lr: float = 2e-3              # encoder + decoder learning rate
    adv_lr: float = 2e-3          # adversary learning rate
    lr_decay: str = "cosine"      # "none" or "cosine": encoder + decoder lr falls to lr_floor x lr by the last step
    lr_floor: float = 0.05        # with lr_decay = "cosine", the final fraction of lr (critics keep theirs)
    beta1: float = 0.5            # Adam beta1 (DCGAN practice); SGD momentum when optimizer == "sgd"
    w_recon: float = 1.0          # ||Dec(z1, s1) - x1||^2
    w_swap_recon: float = 1.0     # ||Dec(z1, s1') - x1||^2, s1' from another image of the same identity
    w_kl: float = 0.5             # KL(q(z|x1) || N(0, I)), summed over z dims, divided by C*H*W
    w_gan: float = 0.01           # lambda: generator adversarial weight (0 = the paper's ablation)
    gan_from: float = 0.0         # the image adversary joins at this share of the steps; before it the steps
                                  # run as lambda = 0 (no swaps decoded, no adversary trained), about 1.7
                                  # times faster on a CPU (not in the paper's Algorithm 1; 0 = from the start;
                                  # configs/lpc.toml: 0.5, 0.6 of the time; on the demo's recipe 0.5 ran
                                  # 1.24x the steps a second with analogies as good or better, but let the
                                  # identity into z on 1 seed of 3: benchmarks/RESULTS.md, "An image
                                  # adversary that joins late")
    gan_swap: bool = True         # adversarial term on Dec(z1, s2)
    gan_prior: bool = True        # adversarial term on Dec(z ~ N(0, I), s2)
    w_sinv: float = 0.1           # spread of s within an identity, relative to its overall spread (not in
                                  # the paper; 0 = off)
    sinv_whiten: bool = False     # with w_sinv: measure that spread after whitening s (losses.
                                  # within_identity_share_whitened), so that no direction of s, however little
                                  # it varies, may carry what changes within an identity (not in the paper)
    w_sid: float = 0.0            # identity read-out of s: cross-entropy of a cosine classifier over the
                                  # training identities, trained with the encoder (not in the paper; 0 = off)
    sid_margin: float = 0.0       # with w_sid: an additive cosine margin (CosFace, Wang et al. 2018): the true
                                  # identity's cosine must beat every other by this much, which gathers each
                                  # identity's codes closer than plain cross-entropy does (not in the paper;
                                  # 0 = off; in no recipe: measured on one Yale seed, RESULTS.md)
    w_zadv: float = 0.05          # latent identity critic on mu (not in the paper; 0 = off)
    zadv_steps: int = 5           # latent critic updates per adversary step (extra ones on remembered codes)
    zadv_memory: int = 4096       # codes the latent critic's memory keeps for those extra updates. With
                                  # hundreds of identities a small memory holds a few codes of each and the
                                  # critic learns slowly (RESULTS.md, "LPC sprites: a latent critic that
                                  # learns")
    zadv_trunk_grad: float = 1.0  # share of the latent critic's gradient that reaches the encoder's conv trunk
                                  # (0 = only the z head learns to hide the identity; the trunk, shared
                                  # with s, is left to the other terms)
    w_zbetween: float = 0.0       # between-identity share of mu's variance in the batch (not in the paper;
                                  # 0 = off): moves each identity's mean code to the others'; it needs several
                                  # images of an identity per batch, so it suits few identities (MNIST's 10)
    zbetween_paired: bool = False # with w_zbetween: measure the between-identity share from the pairs (x1, x1'),
                                  # per dimension of mu (losses.paired_between_share): a batch of one pair per
                                  # identity estimates it without bias, and the few dimensions a decoder may
                                  # read the pose from count as much as the rest; the plain share reads about
                                  # 1/2 on such a batch whatever z holds, and pulls each pair's codes to
                                  # opposite sides (not in the paper)
    adv_prior_fake: bool = True   # the adversary also judges Dec(z ~ N(0, I), s2) as a fake for id2. Algorithm 1
                                  # shows it only Dec(z1, s2), so the generator's prior term meets a judge that
                                  # never saw prior samples and conditional samples come out as noise (not in
                                  # the paper; False = Algorithm 1 as written)
    adv_mismatch: bool = False    # also show the adversary real images under another identity's label, as
                                  # fakes (matching-aware discriminator, Reed et al. 2016; not in the paper)
    shift: int = 0                # augmentation: each training image moved by up to this many pixels in x and
                                  # y (edges repeated), drawn anew for every use (not in the paper; 0 = off)
    light: float = 0.0            # augmentation: each training image relit by a smooth gain field whose log
                                  # changes by up to 2 x light across the image, drawn anew for every use, so
                                  # the identity code learns to ignore where the light comes from (not in the
                                  # paper; 0 = off)
    light_on: str = "all"         # which images are relit: "all", or "swap": only x1', whose s redraws x1 in
                                  # ||Dec(z1, s1') - x1||^2, so s must ignore the light while z1 and the
                                  # targets keep the photos' own light
    flip: float = 0.0             # augmentation: the share of x1' (the photo whose s redraws x1) mirrored left to
                                  # right, so that s cannot tell an identity from its mirror image while z1 and
                                  # the targets keep each photo's own side (not in the paper; 0 = off; in no
                                  # recipe: on Yale, ORL and LPC it changed s by seed, not one way, and let
                                  # the identity into LPC's z: benchmarks/RESULTS.md, "mirroring only")
    real_label: float = 0.95      # one-sided label smoothing for the adversary's real target
    adv_every: int = 1            # generator steps per adversary step (the update ratio)
    seed: int = 0
    log_every: int = 20           # steps between metrics-log lines
    sample_every: int = 500       # steps between swap-grid PNGs (0 = only at the end)
    ckpt_every: int = 250         # steps between checkpoints (also written at the end)
    amp: bool = True              # bf16 autocast on CUDA (ignored on CPU)

    @property
    def image_adversary(self) -> bool:
        """Whether the identity-conditioned image adversary has a generator term to serve (and is trained)."""
        return self.w_gan > 0 and (self.gan_swap or self.gan_prior)

    def steps_for(self, images: int) -> int:
        """The generator steps a run over this many training images takes."""
        by_epochs = math.ceil(self.epochs * images / self.batch_size) if self.epochs > 0 else 0
        return max(self.steps, by_epochs)

    def validate(self) -> "TrainConfig":
        if self.optimizer not in ("adam", "sgd"):
            raise UsageError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_decay not in ("none", "cosine"):
            raise UsageError(f"lr_decay must be 'none' or 'cosine', got {self.lr_decay!r}")
        if not 0.0 <= self.lr_floor <= 1.0:
            raise UsageError(f"lr_floor must be in [0, 1], got {self.lr_floor}")
        if self.steps < 1 or self.batch_size < 2:
            raise UsageError("steps must be >= 1 and batch_size >= 2")
        if self.adv_every < 1 or self.zadv_steps < 1 or self.zadv_memory < 1:
            raise UsageError(f"adv_every, zadv_steps and zadv_memory must be >= 1, got {self.adv_every}, "
                             f"{self.zadv_steps}, {self.zadv_memory}")
        if self.epochs < 0:
            raise UsageError(f"epochs must be >= 0, got {self.epochs}")
        for name in ("w_recon", "w_swap_recon", "w_kl", "w_gan", "w_sinv", "w_sid", "w_zadv", "w_zbetween", "lr", "adv_lr",
                     "shift", "light"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.flip <= 1.0:
            raise UsageError(f"flip must be in [0, 1], got {self.flip}")
        if self.light_on not in LIGHT_ON:
            raise UsageError(f"light_on must be one of {', '.join(map(repr, LIGHT_ON))}, got {self.light_on!r}")
        if not 0.0 <= self.sid_margin < 1.0:
            raise UsageError(f"sid_margin must be in [0, 1), got {self.sid_margin}")
        if not 0.0 <= self.zadv_trunk_grad <= 1.0:
            raise UsageError(f"zadv_trunk_grad must be in [0, 1], got {self.zadv_trunk_grad}")
        if not 0.0 <= self.gan_from < 1.0:
            raise UsageError(f"gan_from must be in [0, 1), got {self.gan_from}")
        if not 0.0 < self.real_label <= 1.0:
            raise UsageError(f"real_label must be in (0, 1], got {self.real_label}")
        return self


def from_dict(cls, data: dict, *, strict: bool = True):
    """Build a config dataclass from a dict; unknown keys are an error when strict."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown and strict:
        raise UsageError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
    return cls(**{k: v for k, v in data.items() if k in known})


def to_dict(cfg) -> dict:
    return asdict(cfg)


__all__ = ["ModelConfig", "TrainConfig", "TRUNKS", "from_dict", "to_dict"]
