"""One iteration of Algorithm 1 (Mathieu et al., supplementary): a generator step, then an adversary step."""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from ..model import kl_to_standard_normal


def _requires_grad(module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def generator_step(autoencoder, adversary, opt, cfg, x1, x1p, x2, id2, z_dim, autocast=None):
    """Update encoder and decoder on a batch of triplets; the adversary's weights stay frozen.

    autoencoder: the AutoEncoder (possibly DDP-wrapped); adversary: the plain Adversary module.
    Returns the loss terms as floats and the detached swap Dec(z1, s2) for the adversary step.
    """
    autocast = autocast or contextlib.nullcontext
    use_gan = cfg.w_gan > 0 and (cfg.gan_swap or cfg.gan_prior)
    _requires_grad(adversary, False)
    z_prior = torch.randn(x1.shape[0], z_dim, device=x1.device)  # X.2 = Dec(z ~ N(0, I), s2)
    with autocast():
        out = autoencoder(x1, x1p, x2, z_prior)
    x11, x11p, x12, xp2 = (out[k].float() for k in ("x11", "x11p", "x12", "xp2"))
    terms = {
        "recon": F.mse_loss(x11, x1),
        "swap_recon": F.mse_loss(x11p, x1),
        "kl": kl_to_standard_normal(out["mu1"].float(), out["logvar1"].float()).mean() / x1[0].numel(),
    }
    loss = cfg.w_recon * terms["recon"] + cfg.w_swap_recon * terms["swap_recon"] + cfg.w_kl * terms["kl"]
    if use_gan:
        fakes = [x for x, on in ((x12, cfg.gan_swap), (xp2, cfg.gan_prior)) if on]
        with autocast():
            logits = adversary(torch.cat(fakes), id2.repeat(len(fakes))).float()
        # Non-saturating generator loss -log Adv(X, id2), one term per enabled source of fakes.
        per = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
        for name, part in zip([n for n, on in (("gan_swap", cfg.gan_swap), ("gan_prior", cfg.gan_prior)) if on],
                              per.split(x1.shape[0])):
            terms[name] = part.mean()
            loss = loss + cfg.w_gan * terms[name]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    _requires_grad(adversary, True)
    result = {k: v.detach() for k, v in terms.items()}
    result["loss"] = loss.detach()
    return result, x12.detach()


def adversary_step(adversary, opt, cfg, fake, real, ids, autocast=None) -> dict:
    """Update the adversary: fake = Dec(z1, s2) judged as not id2, real = x2 judged as id2.

    The encoder and decoder are untouched: fake arrives detached. One forward over [fake; real]
    so a DDP-wrapped adversary sees a single call per step.
    """
    autocast = autocast or contextlib.nullcontext
    b = fake.shape[0]
    with autocast():
        logits = adversary(torch.cat([fake, real]), torch.cat([ids, ids])).float()
    target = torch.cat([torch.zeros(b, device=logits.device),
                        torch.full((b,), cfg.real_label, device=logits.device)])  # one-sided smoothing
    loss = F.binary_cross_entropy_with_logits(logits, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        correct = torch.cat([logits[:b] < 0, logits[b:] > 0]).float().mean()
    return {"adv": loss.detach(), "adv_acc": correct}
