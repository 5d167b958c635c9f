"""Self-describing checkpoints, written atomically and read with torch.load(weights_only=True)."""
from __future__ import annotations

import os

import torch

from .. import __version__
from ..errors import InputError, UsageError, first_line
from ..files import atomic_write
from ..config import ModelConfig, from_dict
from ..model import Decoder, Encoder
from ..prior import check_prior

FORMAT = "dvgan-checkpoint"
# 2: a training checkpoint carries the fitted z prior (a bundle's weights copy, model.pt, leaves it to the
# bundle's z_prior.npz); CoordConv (model.coords) and the pair critic (train.w_zpair) are gone.
# 1: dvgan 0.1.0 and before; still read where it is format 2 in all but the number (_from_format_1).
FORMAT_VERSION = 2
FORMAT_1_RELEASE = "0.1.0"  # the last dvgan that writes format 1
CHECKPOINT = "checkpoint.pt"  # the checkpoint file of a run folder


# Training settings taken out of dvgan after a format-2 checkpoint could hold them, each with the value
# under which a run trained as today's code trains it (ANY: a setting that did nothing alone): the field
# is dropped at that value, and a run that used another is refused (resuming it would train something
# else). The pair critic, the latent cycles, the share on the decoder's reading and the grey copies of
# the identity read-out were measured in no recipe's favour (benchmarks/RESULTS.md) and taken out.
ANY = object()
RETIRED_TRAIN = {"zadv_kind": "ids", "ids_per_batch": 0, "w_spair": 0.0, "spair_steps": ANY, "w_zcycle": 0.0,
                 "w_scycle": 0.0, "zbetween_read": False, "sid_grey": False, "sid_grey_head": ANY}


class CheckpointError(InputError):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(path: str, state: dict) -> None:
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, "dvgan_version": __version__,
             "torch_version": str(torch.__version__), **state}
    atomic_write(path, lambda f: torch.save(state, f))


def checkpoint_path(source: str) -> str:
    """The checkpoint file that source names: RUN_DIR/checkpoint.pt for a run folder, else source itself."""
    return os.path.join(source, CHECKPOINT) if os.path.isdir(source) else source


def load_checkpoint(path: str, map_location="cpu", *, bundle_weights: bool = False) -> dict:
    """Load and check a checkpoint file (or RUN_DIR/checkpoint.pt); never unpickles arbitrary objects.

    The result is in the current format and carries the fitted z prior ("z_prior"), except with
    bundle_weights: path is a bundle's model.pt, read for its weights alone (the bundle keeps the prior).
    """
    path = checkpoint_path(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{path}: not a loadable dvgan checkpoint ({first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dvgan checkpoint")
    version = state.get("format_version")
    if version == 1:
        state = _from_format_1(path, state, bundle_weights)
    elif version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is not supported by dvgan "
                              f"{__version__} (expects {FORMAT_VERSION})")
    train = state.get("train_config")
    if isinstance(train, dict) and RETIRED_TRAIN.keys() & train.keys():
        for name, today in RETIRED_TRAIN.items():
            if today is not ANY and train.get(name, today) != today:
                raise CheckpointError(f"{path}: trained with train.{name} = {train[name]!r}, which dvgan "
                                      f"{__version__} no longer has; retrain it")
        state = {**state, "train_config": {k: v for k, v in train.items() if k not in RETIRED_TRAIN}}
    for key in ("model_config", "encoder", "decoder") + (() if bundle_weights else ("z_prior",)):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return state


def _from_format_1(path: str, state: dict, bundle_weights: bool) -> dict:
    """A format-1 checkpoint as format 2, where it differs only in the number: it has CoordConv and the pair
    critic off (their fields are dropped here) and carries the fitted z prior (every one written since the
    prior existed does; a bundle's weights need none). Runs trained with dvgan 0.1.0 so stay usable without
    retraining, and its bundles on the torch backend; any other format-1 checkpoint is refused with one
    line that says what to do."""
    model, train = dict(state.get("model_config") or {}), dict(state.get("train_config") or {})
    coords, pair = model.pop("coords", False), train.pop("w_zpair", 0.0)
    why = ("model.coords on" if coords else "train.w_zpair on" if pair else
           "no fitted z prior" if "z_prior" not in state and not bundle_weights else None)
    if why:
        raise CheckpointError(f"{path}: written by an older dvgan (checkpoint format 1, {why}); retrain it with "
                              f"dvgan {__version__}, or read it with dvgan {FORMAT_1_RELEASE}")
    state = {k: v for k, v in state.items() if k != "pair_critic"}  # always empty with the pair critic off
    state["format_version"] = FORMAT_VERSION
    if "model_config" in state:
        state["model_config"] = model
    if "train_config" in state:
        state["train_config"] = train
    return state


def build_models(state: dict, device="cpu"):
    """(model config, encoder, decoder) rebuilt from a checkpoint dict, in eval mode."""
    try:
        cfg = from_dict(ModelConfig, state["model_config"]).validate()
        enc, dec = Encoder(cfg), Decoder(cfg)
        enc.load_state_dict(state["encoder"])
        dec.load_state_dict(state["decoder"])
    except (ValueError, RuntimeError, TypeError, KeyError) as exc:
        raise CheckpointError(f"checkpoint weights do not fit its model config ({first_line(exc)})") from None
    return cfg, enc.to(device).eval(), dec.to(device).eval()


def saved_prior(state: dict, z_dim: int) -> dict:
    """The checkpoint's sampling prior (dvgan/prior.py), checked against z_dim."""
    fitted = state["z_prior"]
    problem = check_prior(fitted, z_dim, "checkpoint")
    if problem:
        raise CheckpointError(problem)
    return fitted
