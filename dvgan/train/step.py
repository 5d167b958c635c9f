"""One iteration of Algorithm 1 (Mathieu et al., supplementary): a generator step, then an adversary step."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..model import kl_to_standard_normal
from .losses import between_identity_share, paired_between_share, within_identity_share_whitened, within_identity_spread


@dataclass
class Batch:
    x1: torch.Tensor    # (B, C, H, W) in [-1, 1]
    x1p: torch.Tensor   # another image of x1's identity
    x2: torch.Tensor    # an image of another identity
    id1: torch.Tensor   # (B,) adversary-table index of x1's identity
    id2: torch.Tensor   # (B,) ... of x2's identity


def _requires_grad(modules, flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


def generator_step(autoencoder, adversary, opt, cfg, batch: Batch, z_dim: int, latent=None, autocast=None,
                   id_head=None):
    """Update encoder and decoder on a batch of triplets; the critics' weights stay frozen.

    autoencoder: the AutoEncoder (possibly DDP-wrapped); adversary, latent: the plain critic modules
    (latent only when cfg.w_zadv > 0); id_head: the IdentityHead on s (only when cfg.w_sid > 0), whose
    weights opt updates with the autoencoder's.
    Returns (loss terms as 0-dim tensors, the adversary's fakes for id2 (detached Dec(z1, s2), then
    Dec(z_prior, s2) when cfg.adv_prior_fake; None when lambda = 0), detached codes {mu1, mu1p, mu2, s1,
    s1p}).
    """
    autocast = autocast or contextlib.nullcontext
    critics = [m for m in (adversary, latent) if m is not None]
    _requires_grad(critics, False)
    x1 = batch.x1
    z_prior = torch.randn(x1.shape[0], z_dim, device=x1.device)  # X.2 = Dec(z ~ N(0, I), s2)
    with autocast():
        out = autoencoder(x1, batch.x1p, batch.x2, z_prior, cfg.zadv_trunk_grad, cfg.image_adversary)
    x11, x11p = out["x11"].float(), out["x11p"].float()
    codes = {k: out[k].float() for k in ("mu1", "mu1p", "mu2", "s1", "s1p")}
    mu1 = codes["mu1"]
    terms = {
        "recon": F.mse_loss(x11, x1),
        "swap_recon": F.mse_loss(x11p, x1),
        "kl": kl_to_standard_normal(mu1, out["logvar1"].float()).mean() / x1[0].numel(),
    }
    loss = cfg.w_recon * terms["recon"] + cfg.w_swap_recon * terms["swap_recon"] + cfg.w_kl * terms["kl"]
    fakes = None
    if cfg.image_adversary:
        x12, xp2 = out["x12"].float(), out["xp2"].float()
        fakes = (torch.cat([x12, xp2]) if cfg.adv_prior_fake else x12).detach()
        named = [(n, x) for n, x, on in (("gan_swap", x12, cfg.gan_swap), ("gan_prior", xp2, cfg.gan_prior)) if on]
        with autocast():
            logits = adversary(torch.cat([x for _, x in named]), batch.id2.repeat(len(named))).float()
        # Non-saturating generator loss -log Adv(X, id2), one term per enabled source of fakes.
        per = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        for (name, _), part in zip(named, per.split(x1.shape[0])):
            terms[name] = part.mean()
            loss = loss + cfg.w_gan * terms[name]
    if latent is not None and cfg.w_zadv > 0:
        # Push the latent critic's prediction towards uniform: bounded, unlike maximising its loss.
        terms["zadv_gen"] = latent_loss(latent, out["mu1_critic"].float(), batch.id1, fooled=True)[0]
        loss = loss + cfg.w_zadv * terms["zadv_gen"]
    if cfg.w_sinv > 0:
        spread = within_identity_share_whitened if cfg.sinv_whiten else within_identity_spread
        terms["sinv"] = spread(out["s1"].float(), out["s1p"].float(), out["s2"].float())
        loss = loss + cfg.w_sinv * terms["sinv"]
    if id_head is not None and cfg.w_sid > 0:
        target = torch.cat([batch.id1, batch.id1, batch.id2])
        logits = id_head(torch.cat([out["s1"], out["s1p"], out["s2"]]).float(), target, cfg.sid_margin)
        terms["sid"] = F.cross_entropy(logits, target)
        loss = loss + cfg.w_sid * terms["sid"]
    if cfg.w_zbetween > 0:
        mu1p, mu2 = codes["mu1p"], codes["mu2"]
        if cfg.zbetween_paired:
            terms["zbetween"] = paired_between_share(mu1, mu1p, mu2)
        else:
            terms["zbetween"] = between_identity_share(torch.cat([mu1, mu1p, mu2]),
                                                       torch.cat([batch.id1, batch.id1, batch.id2]))
        loss = loss + cfg.w_zbetween * terms["zbetween"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    _requires_grad(critics, True)
    result = {k: v.detach() for k, v in terms.items()}
    result["loss"] = loss.detach()
    return result, fakes, {k: v.detach() for k, v in codes.items()}


def adversary_step(adversary, opt, cfg, fake, batch: Batch, latent=None, codes=None, autocast=None,
                   memory=None) -> dict:
    """Update the critics. Image adversary (lambda > 0): fake = Dec(z1, s2) (and Dec(z_prior, s2) after it
    with cfg.adv_prior_fake) judged as not id2, real = x2 as id2.

    The encoder and decoder are untouched: fake and codes arrive detached. One forward over [fake; real]
    so a DDP-wrapped adversary sees a single call per step. The latent critic, when given, learns
    to read id1 from mu1, then takes cfg.zadv_steps - 1 more updates on codes recalled from memory
    (a CodeMemory) when given.
    """
    mu1 = None if codes is None else codes["mu1"]
    autocast = autocast or contextlib.nullcontext
    b, ids = batch.x1.shape[0], batch.id2
    result, loss, logits = {}, 0.0, None
    if cfg.image_adversary:  # otherwise (lambda = 0) it has no use, so it is not trained
        nf = fake.shape[0]  # b, or 2b with prior samples among the fakes
        images, labels = [fake, batch.x2], [ids.repeat(nf // b), ids]
        if cfg.adv_mismatch:  # x1 is real but not of id2: judging it so makes the adversary look at identity
            images.append(batch.x1)
            labels.append(ids)
        with autocast():
            logits = adversary(torch.cat(images), torch.cat(labels)).float()
        target = torch.zeros_like(logits)
        target[nf:nf + b] = cfg.real_label  # one-sided smoothing
        loss = F.binary_cross_entropy_with_logits(logits, target)
        result["adv"] = loss.detach()
    if latent is not None and mu1 is not None:
        zloss, correct = latent_loss(latent, mu1, batch.id1)
        loss = loss + zloss
        result["zadv"] = zloss.detach()
        result["zadv_acc"] = correct.float().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if latent is not None and mu1 is not None and memory is not None:
        memory.remember(mu1, batch.id1)
        memory_updates(latent, opt, memory, cfg.zadv_steps - 1, b)
    if logits is None:
        return result
    with torch.no_grad():
        result["adv_acc"] = torch.cat([logits[:nf] < 0, logits[nf:nf + b] > 0]).float().mean()
        if cfg.adv_mismatch:
            result["adv_mismatch_acc"] = (logits[nf + b:] < 0).float().mean()
    return result


def memory_updates(critic, opt, memory, count: int, batch_size: int) -> None:
    """count more updates of the latent critic, each on 4 x batch_size codes recalled from memory (a
    CodeMemory). The critic is cheap: this lets it keep up with the encoder."""
    for _ in range(count):
        mu, ids = memory.recall(4 * batch_size)
        opt.zero_grad(set_to_none=True)
        latent_loss(critic, mu, ids)[0].backward()
        opt.step()


def latent_loss(critic, mu: torch.Tensor, ids: torch.Tensor, fooled: bool = False):
    """The latent critic's cross-entropy of naming the identities ids from mu (B, z_dim), and whether it
    named each right. fooled: the encoder's loss instead, against the uniform answer (1 / identities)."""
    logits = critic(mu)
    target = torch.full_like(logits, 1.0 / logits.shape[1]) if fooled else ids
    return F.cross_entropy(logits, target), logits.argmax(1) == ids
