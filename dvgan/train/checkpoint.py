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
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"  # the checkpoint file of a run folder


class CheckpointError(InputError):
    """A checkpoint that cannot be used; the message says why."""


def save_checkpoint(path: str, state: dict) -> None:
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, "dvgan_version": __version__,
             "torch_version": str(torch.__version__), **state}
    atomic_write(path, lambda f: torch.save(state, f))


def checkpoint_path(source: str) -> str:
    """The checkpoint file that source names: RUN_DIR/checkpoint.pt for a run folder, else source itself."""
    return os.path.join(source, CHECKPOINT) if os.path.isdir(source) else source


def load_checkpoint(path: str, map_location="cpu") -> dict:
    """Load and check a checkpoint file (or RUN_DIR/checkpoint.pt); never unpickles arbitrary objects."""
    path = checkpoint_path(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise CheckpointError(f"{path}: not a loadable dvgan checkpoint ({first_line(exc)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dvgan checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {state.get('format_version')} is not "
                              f"supported by dvgan {__version__} (expects {FORMAT_VERSION})")
    for key in ("model_config", "encoder", "decoder"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
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


def saved_prior(state: dict, z_dim: int) -> dict | None:
    """The checkpoint's sampling prior (dvgan/prior.py), checked; None for checkpoints written before it."""
    fitted = state.get("z_prior")
    if fitted is None:
        return None
    problem = check_prior(fitted, z_dim, "checkpoint")
    if problem:
        raise CheckpointError(problem)
    return fitted
