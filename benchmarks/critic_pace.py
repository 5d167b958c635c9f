"""How fast the latent critic learns to name the training identities from a trained run's codes.

The codes are frozen (mu of every training image, from RUN's encoder), so nothing moves them away from
the critic: this measures the critic alone. It is trained the way training does (model.LatentAdversary,
the run's optimizer at train.adv_lr; each step one update on a batch of fresh codes, remembered in a
CodeMemory, then UPDATES - 1 more on codes recalled from it: train.step.memory_updates) and scored on
10% of the training images it never sees. A critic that is still near chance after a few thousand steps on frozen codes
cannot follow an encoder that moves every step.

    python benchmarks/critic_pace.py RUN --steps 2000 --memory 4096 16384 --updates 5 17
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys

import numpy as np
import torch

from dvgan import data as datasets
from dvgan.config import ModelConfig, TrainConfig, from_dict
from dvgan.model import CodeMemory, LatentAdversary
from dvgan.ops import encode_part
from dvgan.train.checkpoint import build_models, load_checkpoint
from dvgan.train.loop import optimizer
from dvgan.train.step import latent_loss, memory_updates


def training_codes(run: str) -> tuple[torch.Tensor, torch.Tensor, ModelConfig, TrainConfig]:
    """(mu (N, z_dim), identity index 0..K-1 (N,)) of RUN's training images, with the run's model and
    training configs, all from its checkpoint."""
    state = load_checkpoint(run)
    cfg, encoder, _ = build_models(state)
    with open(os.path.join(run, "split.json")) as f:
        split = json.load(f)
    images = datasets.load(split["spec"], image_size=cfg.image_size, channels=cfg.channels)
    train = np.asarray(split["train"])
    names, ids = np.unique(images.labels[train], return_inverse=True)
    if len(names) != cfg.num_ids:
        raise SystemExit(f"{run}: {len(names)} training identities in split.json, the model knows {cfg.num_ids}")
    with torch.no_grad():
        mu = encode_part(encoder, torch.from_numpy(images.float_images(train)), 1)
    return mu, torch.from_numpy(ids), cfg, from_dict(TrainConfig, state["train_config"])


def pace(mu, ids, model_cfg: ModelConfig, train_cfg: TrainConfig, memory: int, updates: int, steps: int,
         checks: int = 4):
    """[(step, held-out cross-entropy, held-out accuracy)] at `checks` even points of `steps`."""
    g = torch.Generator().manual_seed(0)
    held = torch.rand(len(mu), generator=g) < 0.1
    fit, test = (~held).nonzero().squeeze(1), held.nonzero().squeeze(1)
    torch.manual_seed(1)
    critic = LatentAdversary(model_cfg)
    opt = optimizer(critic.parameters(), train_cfg.adv_lr, train_cfg)
    store, b, out = CodeMemory(mu.shape[1], memory), train_cfg.batch_size, []
    for step in range(1, steps + 1):  # as step.adversary_step updates the critic
        rows = fit[torch.randint(len(fit), (b,))]
        opt.zero_grad(set_to_none=True)
        latent_loss(critic, mu[rows], ids[rows])[0].backward()
        opt.step()
        store.remember(mu[rows], ids[rows])
        memory_updates(critic, opt, store, updates - 1, b)
        if step % max(1, steps // checks) == 0:
            critic.eval()
            with torch.no_grad():
                loss, right = latent_loss(critic, mu[test], ids[test])
            critic.train()
            out.append((step, float(loss), float(right.float().mean())))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--memory", type=int, nargs="+", default=[4096])
    ap.add_argument("--updates", type=int, nargs="+", default=[5], help="critic updates per step (train.zadv_steps)")
    args = ap.parse_args(argv)
    mu, ids, model_cfg, train_cfg = training_codes(args.run)
    k = model_cfg.num_ids
    print(f"{args.run}: {len(mu)} training codes of {k} identities; chance {math.log(k):.3f} nats, "
          f"accuracy {1 / k:.3f}")
    print("| memory | updates a step | step | held-out cross-entropy | held-out accuracy |\n|---|---|---|---|---|")
    for memory, updates in itertools.product(args.memory, args.updates):
        for step, loss, acc in pace(mu, ids, model_cfg, train_cfg, memory, updates, args.steps):
            print(f"| {memory} | {updates} | {step} | {loss:.3f} | {100 * acc:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
