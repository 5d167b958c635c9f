"""The training loop: data, Algorithm 1 steps, metrics, swap grids, checkpoints, resume, DDP."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time

import numpy as np
import torch
import torch.distributed as dist

from .. import data as data_mod
from ..errors import RuntimeFailure, UsageError
from ..config import LIGHT_ON, ModelConfig, TrainConfig, from_dict, to_dict
from ..model import Adversary, AutoEncoder, CodeMemory, IdentityHead, LatentAdversary, pixel_centres
from .. import prior
from ..figures import save_png, swap_grid, training_curves
from ..files import atomic_write
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .sampler import TripletSampler
from .step import Batch, adversary_step, generator_step

log = logging.getLogger(__name__)


class TrainingError(RuntimeFailure):
    """Training cannot go on (for example a non-finite loss); the message says why."""


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but torch sees no CUDA device")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda")
    return torch.device(device)


def write_json(path: str, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=1).encode()))


class Trainer:
    """Holds the models, optimizers, sampler and training data of one run.

    data_cfg: {"spec", "seed", "holdout_identities", "test_fraction"}; image size and channels come
    from the model config.
    """

    def __init__(self, model_cfg: ModelConfig, train_cfg: TrainConfig, data_cfg: dict,
                 out_dir: str, device: str = "auto", dataset=None, split=None):
        train_cfg.validate()
        self.out_dir = out_dir
        self.device = resolve_device(device)
        self.rank, self.world = _dist_info()
        self.data_cfg = dict(data_cfg)
        torch.manual_seed(train_cfg.seed)
        if dataset is None:
            dataset = data_mod.load(data_cfg["spec"], model_cfg.image_size, model_cfg.channels,
                                    seed=data_cfg.get("seed", 0))
        if split is None:
            split = data_mod.make_split(dataset, data_cfg.get("holdout_identities"),
                                        data_cfg.get("test_fraction"), seed=data_cfg.get("seed", 0))
        self.dataset, self.split = dataset, split
        train_idx = np.asarray(split["train"], dtype=np.int64)
        # A copy: the caller's config is left as it was; steps follow the number of training images.
        self.train_cfg = train_cfg = dataclasses.replace(train_cfg, steps=train_cfg.steps_for(len(train_idx)))
        if dataset.images.shape[1] != model_cfg.channels:
            raise data_mod.DataError(f"data has {dataset.images.shape[1]} channels, model expects {model_cfg.channels}")
        # The adversary's lookup tables index the training identities 0..K-1.
        self.id_values = sorted(set(dataset.labels[train_idx].tolist()))
        remap = {v: i for i, v in enumerate(self.id_values)}
        self.model_cfg = dataclasses.replace(model_cfg, num_ids=max(len(self.id_values), 1)).validate()
        self.images = torch.from_numpy(dataset.images[train_idx]).to(self.device)  # uint8 (N, C, H, W)
        self.labels = torch.tensor([remap[v] for v in dataset.labels[train_idx]], dtype=torch.long)
        try:
            self.sampler = TripletSampler(self.labels, seed=train_cfg.seed + 7919 * self.rank)
        except ValueError as exc:
            raise data_mod.DataError(f"{data_cfg['spec']}: {exc}") from None
        if len(self.sampler.eligible) < len(self.labels):
            log.warning("%d training image(s) belong to identities with one image; they serve only as x2",
                        len(self.labels) - len(self.sampler.eligible))
        self.labels = self.labels.to(self.device)

        self.autoencoder = AutoEncoder(self.model_cfg).to(self.device)
        self.adversary = Adversary(self.model_cfg).to(self.device)
        self.id_head = IdentityHead(self.model_cfg).to(self.device) if train_cfg.w_sid > 0 else None
        gen_params = list(self.autoencoder.parameters()) + (list(self.id_head.parameters()) if self.id_head else [])
        self.opt_gen = optimizer(gen_params, train_cfg.lr, train_cfg)
        self.latent = LatentAdversary(self.model_cfg).to(self.device) if train_cfg.w_zadv > 0 else None
        # The critic's memory is never DDP-wrapped: each process keeps its own.
        self.memory = CodeMemory(self.model_cfg.z_dim, train_cfg.zadv_memory).to(self.device) if self.latent else None
        critic_params = [p for m in (self.adversary, self.latent) if m is not None for p in m.parameters()]
        self.opt_adv = optimizer(critic_params, train_cfg.adv_lr, train_cfg)
        self.ae_run, self.adv_run, self.latent_run = self.autoencoder, self.adversary, self.latent
        self.id_head_run = self.id_head
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ae_run = DDP(self.autoencoder, device_ids=ids)
            self.adv_run = DDP(self.adversary, device_ids=ids)
            self.latent_run = DDP(self.latent, device_ids=ids) if self.latent else None
            self.id_head_run = DDP(self.id_head, device_ids=ids) if self.id_head else None
        self.step = 0
        amp = train_cfg.amp and self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext

    # -- one iteration ------------------------------------------------------------------------
    def batch(self) -> Batch:
        i1, i1p, i2 = (i.to(self.device) for i in self.sampler.sample(self.train_cfg.batch_size))
        images = (self.float_images(i) for i in (i1, i1p, i2))
        x1, x1p, x2 = (self.shifted(self.relit(x) if lit else x)
                       for x, lit in zip(images, LIGHT_ON[self.train_cfg.light_on]))
        return Batch(x1, self.flipped(x1p), x2, self.labels[i1], self.labels[i2])

    def relit(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) in [-1, 1] under its own light: the intensity (x + 1) times a gain that changes
        smoothly across the image, exp(level + slope * (the position of the pixel centre along a random
        direction; model.pixel_centres, -1 .. 1 in x and y)),
        with level and slope drawn uniformly within +-train_cfg.light / 2 and +-train_cfg.light, then
        clipped back to [-1, 1]. Black stays black. Drawn with the sampler's generator, so a resumed run
        draws the same lights. x itself when light is 0."""
        k = self.train_cfg.light
        if k == 0:
            return x
        angle, slope, level = torch.rand(3, x.shape[0], 1, 1, generator=self.sampler.generator).to(x.device)
        angle, slope, level = 2 * math.pi * angle, k * (2 * slope - 1), k * (level - 0.5)
        across, down = pixel_centres(x.shape[-1]).to(x.device)                       # (H, W) each
        gain = torch.exp(level + slope * (torch.cos(angle) * across + torch.sin(angle) * down))  # (B, H, W)
        return ((x + 1.0) * gain[:, None]).clamp(0.0, 2.0) - 1.0

    def flipped(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) with a train_cfg.flip share of its images, drawn with the sampler's generator,
        mirrored left to right. x itself when flip is 0."""
        p = self.train_cfg.flip
        if p == 0:
            return x
        mirror = (torch.rand(x.shape[0], generator=self.sampler.generator) < p).to(x.device)
        return torch.where(mirror[:, None, None, None], x.flip(-1), x)

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) with each image moved by its own whole-pixel offset of at most train_cfg.shift in x
        and y, the edge pixels repeated into the space it leaves; drawn with the sampler's generator,
        so a resumed run draws the same offsets. x itself when shift is 0."""
        k = self.train_cfg.shift
        if k == 0:
            return x
        b, _, h, w = x.shape
        dy, dx = (torch.randint(-k, k + 1, (2, b, 1), generator=self.sampler.generator)).to(x.device)
        rows = (torch.arange(h, device=x.device) + dy).clamp(0, h - 1)              # (B, H)
        cols = (torch.arange(w, device=x.device) + dx).clamp(0, w - 1)              # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        return x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)

    def float_images(self, index) -> torch.Tensor:
        """Training images at index (a tensor or numpy array of positions) as floats in [-1, 1]."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        return self.images[index.to(self.device)].float() / 127.5 - 1.0

    def before_adversary(self) -> bool:
        """Whether the next step comes before the image adversary joins (train.gan_from)."""
        return self.step < self.train_cfg.gan_from * self.train_cfg.steps

    def train_step(self) -> dict:
        """One Algorithm 1 iteration; returns the loss terms as floats."""
        cfg = self.train_cfg
        if self.before_adversary():
            cfg = dataclasses.replace(cfg, w_gan=0.0)
        for m in (self.autoencoder, self.adversary, self.latent):
            if m is not None:
                m.train()
        batch = self.batch()
        for group in self.opt_gen.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, self.step)
        terms, fakes, codes = generator_step(self.ae_run, self.adversary, self.opt_gen, cfg, batch,
                                             self.model_cfg.z_dim, self.latent, self.autocast, self.id_head_run)
        critics = cfg.image_adversary or self.latent is not None
        if critics and self.step % cfg.adv_every == 0:
            terms.update(adversary_step(self.adv_run, self.opt_adv, cfg, fakes, batch, self.latent_run, codes,
                                        self.autocast, self.memory))
        self.step += 1
        out = {k: float(v) for k, v in terms.items()}
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(f"loss became non-finite at step {self.step} ({', '.join(bad)}); "
                                f"the last good checkpoint in {self.out_dir} is kept")
        return out

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "model_config": to_dict(self.model_cfg),
            "train_config": to_dict(self.train_cfg),
            "data": {**self.data_cfg, "image_size": self.model_cfg.image_size,
                     "channels": self.model_cfg.channels, "identity_values": self.id_values},
            "encoder": self.autoencoder.encoder.state_dict(),
            "decoder": self.autoencoder.decoder.state_dict(),
            "adversary": self.adversary.state_dict(),
            "latent_adversary": self.latent.state_dict() if self.latent else {},
            "latent_memory": self.memory.state_dict() if self.memory else {},
            "identity_head": self.id_head.state_dict() if self.id_head else {},
            "opt_gen": self.opt_gen.state_dict(),
            "opt_adv": self.opt_adv.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "sampler": self.sampler.state_dict()["generator"],
                    "cuda": torch.cuda.get_rng_state() if self.device.type == "cuda" else torch.empty(0)},
        }

    def load_state_dict(self, state: dict) -> None:
        self.autoencoder.encoder.load_state_dict(state["encoder"])
        self.autoencoder.decoder.load_state_dict(state["decoder"])
        self.adversary.load_state_dict(state["adversary"])
        if self.latent is not None:
            self.latent.load_state_dict(state["latent_adversary"])
            self.memory.load_state_dict(state["latent_memory"])
        if self.id_head is not None:
            self.id_head.load_state_dict(state["identity_head"])
        self.opt_gen.load_state_dict(state["opt_gen"])
        self.opt_adv.load_state_dict(state["opt_adv"])
        self.step = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"])
        self.sampler.load_state_dict({"generator": state["rng"]["sampler"]})
        if self.device.type == "cuda" and state["rng"]["cuda"].numel():
            torch.cuda.set_rng_state(state["rng"]["cuda"])

    def fit_prior(self) -> dict:
        """The sampling prior (dvgan/prior.py) fitted to mu of a seeded subset of the training images."""
        return prior.fit_z_prior(self.autoencoder.encoder, len(self.images), self.float_images, self.train_cfg.seed)

    def save(self) -> None:
        """Write the checkpoint (rank 0), with the sampling prior fitted to the weights it holds."""
        if self.rank == 0:
            save_checkpoint(os.path.join(self.out_dir, CHECKPOINT), {**self.state_dict(), "z_prior": self.fit_prior()})


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of the encoder + decoder learning rate at a step (0-based)."""
    if cfg.lr_decay == "none":
        return 1.0
    t = min(step / max(cfg.steps - 1, 1), 1.0)
    return cfg.lr_floor + (1.0 - cfg.lr_floor) * 0.5 * (1.0 + math.cos(math.pi * t))


def optimizer(params, lr, cfg: TrainConfig):
    """The optimizer cfg names (train.optimizer, train.beta1) over params at learning rate lr."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.beta1)
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, 0.999))


def _dist_info():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: str):
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); returns the local device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def train(model_cfg: ModelConfig, train_cfg: TrainConfig, data_cfg: dict, out_dir: str,
          device: str = "auto", resume: bool = False, progress: bool = True,
          time_budget: float | None = None) -> dict:
    """Train a run into out_dir (checkpoint.pt, config.json, split.json, metrics.jsonl, samples/).

    With resume, the run's own checkpoint supplies the configs (train_cfg.steps may extend it).
    With time_budget (seconds, counted from this call), the run stops at the step count that fits the
    measured pace, and the learning-rate schedule ends there (steps_that_fit).
    Returns a summary dict (steps, planned_steps, seconds, images/s, last losses, checkpoint path).
    """
    deadline = time.perf_counter() + time_budget if time_budget else None
    if time_budget is not None and time_budget <= 0:
        raise UsageError(f"time budget must be > 0 seconds, got {time_budget}")
    device = _maybe_init_distributed(device)
    ckpt_path = os.path.join(out_dir, CHECKPOINT)
    state = None
    if resume:
        state = load_checkpoint(ckpt_path)
        steps = train_cfg.steps
        model_cfg = from_dict(ModelConfig, state["model_config"])
        # A field newer than the checkpoint takes its default, which leaves it off, as the run trained.
        train_cfg = from_dict(TrainConfig, state["train_config"])
        train_cfg.steps = max(steps, train_cfg.steps) if steps else train_cfg.steps
        data_cfg = {k: v for k, v in state["data"].items() if k not in ("image_size", "channels", "identity_values")}
    elif os.path.exists(ckpt_path):
        raise UsageError(f"{out_dir} already holds a run: use --resume to continue it or choose another --out")
    trainer = Trainer(model_cfg, train_cfg, data_cfg, out_dir, device)
    if trainer.rank == 0 and os.path.isdir(out_dir):  # a kill during a write leaves its temporary file
        for name in os.listdir(out_dir):
            if name.startswith("." + CHECKPOINT + ".") and name.endswith(".tmp"):
                os.unlink(os.path.join(out_dir, name))
    if state is not None:
        trainer.load_state_dict(state)
        log.info("resumed %s at step %d", out_dir, trainer.step)
    main = trainer.rank == 0
    metrics_path = os.path.join(out_dir, "metrics.jsonl")
    planned = trainer.train_cfg.steps

    def write_config():
        budget = {"time_budget": {"seconds": time_budget, "planned_steps": planned}} if time_budget else {}
        write_json(os.path.join(out_dir, "config.json"), {
            "model": to_dict(trainer.model_cfg), "train": to_dict(trainer.train_cfg), "data": data_cfg, **budget})

    if main:
        os.makedirs(os.path.join(out_dir, "samples"), exist_ok=True)
        write_json(os.path.join(out_dir, "split.json"), trainer.split)
        write_config()
        _truncate_metrics(metrics_path, trainer.step)
    summary = _run(trainer, metrics_path, progress and main, deadline)
    if main and trainer.train_cfg.steps != planned:
        write_config()  # the step count the budget allowed
        log.info("stopped at step %d of %d: that is what fit in the time budget of %.0f s",
                 trainer.step, planned, time_budget)
    return {**summary, "planned_steps": planned}


# The pace is measured over the steps run so far; the first few include one-off start-up work.
PACE_AFTER_STEPS = 10
# What a step with the image adversary costs against one before it joins (train.gan_from), until the run
# has timed enough of its own: 1.7 on a CPU (the demo's recipe, 82.4 against 47.8 ms a step on one thread;
# benchmarks/RESULTS.md, "Training speed: where a step's time goes").
JOINED_STEP_COST = 1.7


def steps_that_fit(step: int, steps_run: int, seconds_spent: float, seconds_left: float, planned: int,
                   gan_from: float = 0.0, early_steps: int = 0, early_seconds: float = 0.0) -> int:
    """The step to end at so a run finishes by its deadline: the current step plus as many steps as the
    time left holds at the pace so far, at most the planned count and never behind the current step.

    With train.gan_from, the steps before the image adversary joins (at gan_from x the count) are
    cheaper: early_steps of the steps run took early_seconds, and the count solves for both paces."""
    if seconds_left <= 0:
        return step
    if gan_from <= 0 or early_steps == 0:
        pace = seconds_spent / max(steps_run, 1)  # seconds per step
        return max(step, min(planned, step + int(seconds_left / pace)))
    joined_steps, joined_seconds = steps_run - early_steps, seconds_spent - early_seconds
    early = early_seconds / early_steps
    pace = joined_seconds / joined_steps if joined_steps >= PACE_AFTER_STEPS else early * JOINED_STEP_COST
    total = (seconds_left + step * early) / (gan_from * early + (1 - gan_from) * pace)
    if step >= gan_from * total:  # the adversary is in for every step left
        total = step + seconds_left / pace
    return max(step, min(planned, int(total)))


def _run(trainer: Trainer, metrics_path: str, progress: bool, deadline: float | None = None) -> dict:
    from tqdm import tqdm

    cfg = trainer.train_cfg
    main = trainer.rank == 0
    total = planned = cfg.steps
    bar = tqdm(total=total, initial=trainer.step, disable=not progress, unit="step", dynamic_ncols=True)
    t_start = time.perf_counter()
    start_step = trainer.step
    window_t, window_steps, last = time.perf_counter(), 0, {}
    if trainer.step == 0 and main:
        trainer.save()  # a loadable checkpoint exists from the first moment
    with open(metrics_path, "a") if main else contextlib.nullcontext() as mlog:
        early_steps, early_seconds = 0, 0.0  # the steps before the image adversary joins, and their time
        while trainer.step < total:
            t_step, before = time.perf_counter(), trainer.before_adversary()
            last = trainer.train_step()
            window_steps += 1
            step = trainer.step
            if deadline is not None and step % cfg.log_every == 0 and step - start_step >= PACE_AFTER_STEPS:
                now = time.perf_counter()
                fit = steps_that_fit(step, step - start_step, now - t_start, deadline - now, planned,
                                     cfg.gan_from, early_steps, early_seconds)
                if dist.is_available() and dist.is_initialized():  # every rank stops at rank 0's count
                    fit_t = torch.tensor([fit], device=trainer.device)
                    dist.broadcast(fit_t, 0)
                    fit = int(fit_t.item())
                if fit != total:
                    total = cfg.steps = fit  # the learning-rate schedule (lr_factor) ends at the new count
                    bar.total = total
                    bar.refresh()
            if step % cfg.log_every == 0 or step == total:
                now = time.perf_counter()
                ips = window_steps * cfg.batch_size / max(now - window_t, 1e-9)
                window_t, window_steps = now, 0
                if main:
                    mlog.write(json.dumps({"step": step, "time": round(now - t_start, 3),
                                           "images_per_s": round(ips, 1), **{k: round(v, 6) for k, v in last.items()}}) + "\n")
                    mlog.flush()
                shown = {"loss": f"{last['loss']:.4f}", "recon": f"{last['recon']:.4f}"}
                shown.update({k: f"{last[k]:.3f}" for k in ("adv", "zadv") if k in last})  # the critics trained
                bar.set_postfix(**shown, img_s=f"{ips:.0f}", refresh=False)
            if main and cfg.sample_every and step % cfg.sample_every == 0 and step != total:
                _write_swap_grid(trainer, step)
            if step % cfg.ckpt_every == 0 or step == total:
                trainer.save()
            bar.update(1)
            if before:
                early_steps, early_seconds = early_steps + 1, early_seconds + time.perf_counter() - t_step
    bar.close()
    seconds = time.perf_counter() - t_start
    if main:
        _write_swap_grid(trainer, trainer.step)
        try:
            training_curves(metrics_path, os.path.join(trainer.out_dir, "curves.png"))
        except Exception as exc:  # a plot must never cost a finished run
            log.warning("could not draw training curves: %s", exc)
    done = trainer.step - start_step
    return {"steps": trainer.step, "steps_run": done, "seconds": round(seconds, 2),
            "images_per_s": round(done * cfg.batch_size / max(seconds, 1e-9), 1),
            "losses": last, "checkpoint": os.path.join(trainer.out_dir, CHECKPOINT)}


def _truncate_metrics(path: str, step: int) -> None:
    """On resume, drop metric lines past the checkpoint's step so the log has no duplicates."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [ln for ln in f if ln.strip() and json.loads(ln).get("step", 0) <= step]
    atomic_write(path, lambda f: f.write("".join(keep).encode()))


def _write_swap_grid(trainer: Trainer, step: int) -> None:
    n = 8
    labels = trainer.labels.cpu().numpy()
    ids = np.unique(labels)
    spread = ids[np.linspace(0, len(ids) - 1, min(n, len(ids))).astype(int)]  # identities from across the range
    firsts = [int(np.flatnonzero(labels == v)[0]) for v in spread]
    x = trainer.float_images(torch.tensor(firsts))
    enc, dec = trainer.autoencoder.encoder, trainer.autoencoder.decoder
    grid = swap_grid(enc, dec, x, x)
    save_png(os.path.join(trainer.out_dir, "samples", f"swap_{step:06d}.png"), grid)
