"""export_bundle: a checkpoint in, a verified bundle folder out, written atomically.

The bundle is built in a temporary sibling folder and renamed into place only once every graph
has passed its checks; a failed export (verification, a missing TensorRT, a full disk) leaves
whatever was at the destination before untouched.
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import torch

from .. import __version__, defaults
from ..errors import UsageError
from ..data.preprocess import RESIZE
from ..train.checkpoint import FORMAT as CHECKPOINT_FORMAT
from ..train.checkpoint import FORMAT_VERSION as CHECKPOINT_FORMAT_VERSION
from ..train.checkpoint import build_models, checkpoint_path, load_checkpoint, saved_prior
from . import fp16 as fp16_mod
from . import onnx as onnx_mod
from ..files import replacing_folder, sha256_file
from .manifest import GRAPHS, MANIFEST, PRIOR, WEIGHTS, base_manifest, file_entry, onnx_metadata, write_manifest

log = logging.getLogger(__name__)

MAX_BATCH_LIMIT = 1 << 16
TRT_PRECISIONS = ("fp16", "fp32")


def default_out_dir(source: str) -> str:
    """$DVGAN_HOME/bundle (./dvgan-out/bundle): where the engine and its commands look by default."""
    return defaults.bundle_dir()


def _check_destination(out_dir: str) -> None:
    """Refuse to replace anything but an earlier bundle (or an empty folder)."""
    if os.path.islink(out_dir) or (os.path.exists(out_dir) and not os.path.isdir(out_dir)):
        raise UsageError(f"{out_dir}: exists and is not a folder; choose another -o")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, MANIFEST)):
        raise UsageError(f"{out_dir}: folder exists and is not a dvgan bundle; refusing to replace it")


def _weights_copy(state: dict) -> dict:
    """What the PyTorch backend needs, in the checkpoint format; no optimizer or RNG state."""
    return {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_FORMAT_VERSION,
            "model_config": dict(state["model_config"]), "encoder": state["encoder"], "decoder": state["decoder"],
            "step": int(state.get("step", 0)), "data": dict(state.get("data") or {}),
            "dvgan_version": __version__, "torch_version": str(torch.__version__)}


def _write_prior(folder: str, fitted: dict, files: dict) -> dict:
    """PRIOR (mean, scale) for the engine's sampler, and its manifest record."""
    with open(os.path.join(folder, PRIOR), "wb") as f:
        np.savez(f, mean=fitted["mean"].numpy(), scale=fitted["scale"].numpy())
    files[PRIOR] = ("z_prior", "npz", "fp32")
    return {"file": PRIOR, "kind": "gaussian", "n_images": int(fitted.get("n_images", 0)),
            "fitted_to": "posterior means mu of training images"}


def _validate(source: str, trt, opset: int, max_batch: int) -> None:
    if not os.path.exists(source):
        raise UsageError(f"{source}: no such run folder or checkpoint")
    if trt is not None and trt not in TRT_PRECISIONS:
        raise UsageError(f"--trt {trt!r} is not supported: use one of {', '.join(TRT_PRECISIONS)}")
    onnx_mod.check_opset(opset)
    if not 1 <= int(max_batch) <= MAX_BATCH_LIMIT:
        raise UsageError(f"--max-batch must be in 1..{MAX_BATCH_LIMIT}, got {max_batch}")


def export_bundle(source: str, out_dir: str | None = None, *, fp16: bool = False, trt: str | None = None,
                  opset: int = 18, max_batch: int = 256, verify: bool = True,
                  timing_cache: str | None = None) -> str:
    """Export RUN_DIR or a checkpoint file to a bundle folder; returns the bundle's path.

    Writes encoder.onnx, decoder.onnx, model.pt, z_prior.npz and manifest.json; with fp16 (or trt="fp16") also
    encoder.fp16.onnx and decoder.fp16.onnx; with trt ("fp16" or "fp32") TensorRT plans and their
    sidecars. verify runs ONNX Runtime against PyTorch (and fp16 against fp32, plans against ONNX
    Runtime) and raises RuntimeFailure on any error out of bounds. timing_cache is the TensorRT
    timing cache file (default: one per TensorRT version and GPU in the user's cache folder).
    """
    source = os.fspath(source)
    _validate(source, trt, opset, max_batch)
    trt_mod = None
    if trt is not None:
        from .tensorrt import require_tensorrt
        trt_mod = require_tensorrt()  # before any work: say at once what is missing
    fp16 = fp16 or trt == "fp16"
    out_dir = os.path.abspath(out_dir or default_out_dir(source))
    _check_destination(out_dir)
    state = load_checkpoint(source)
    cfg, encoder, decoder = build_models(state)
    started = time.perf_counter()

    with replacing_folder(out_dir) as tmp:
        manifest = base_manifest(state["model_config"], opset=opset, max_batch=max_batch, resize=RESIZE,
                                 source={"step": int(state.get("step", 0)), "data": dict(state.get("data") or {}),
                                         "checkpoint_sha256": sha256_file(checkpoint_path(source))})
        graphs = {"encoder": onnx_mod.export_encoder(encoder, cfg, opset),
                  "decoder": onnx_mod.export_decoder(decoder, cfg, opset)}
        variants = {"fp32": graphs}
        if fp16:
            variants["fp16"] = {role: fp16_mod.to_fp16(g) for role, g in graphs.items()}
        files, blobs = {}, {}
        for precision, models in variants.items():
            for role, model in models.items():
                name = GRAPHS[role][precision]
                onnx_mod.set_metadata(model, onnx_metadata(manifest, role=role, precision=precision))
                onnx_mod.check_model(model, name)
                blobs.setdefault(precision, {})[role] = onnx_mod.serialize(model, name)
                with open(os.path.join(tmp, name), "wb") as f:
                    f.write(blobs[precision][role])
                files[name] = (role, "onnx", precision)
        verification = {}
        if verify:
            verification["fp32"] = onnx_mod.verify_fp32(blobs["fp32"]["encoder"], blobs["fp32"]["decoder"],
                                                         encoder, decoder, cfg)
            if fp16:
                verification["fp16"] = fp16_mod.verify_fp16(blobs["fp32"], blobs["fp16"], cfg)
        torch.save(_weights_copy(state), os.path.join(tmp, WEIGHTS))
        files[WEIGHTS] = ("weights", "torch", "fp32")
        manifest["z_prior"] = _write_prior(tmp, saved_prior(state, cfg.z_dim), files)
        if trt_mod is not None:
            verification["tensorrt"] = _build_plans(trt_mod, tmp, trt, cfg, manifest, blobs, max_batch,
                                                    verify, timing_cache, files)
        manifest["files"] = {name: file_entry(tmp, name, role=role, kind=kind, precision=precision)
                             for name, (role, kind, precision) in sorted(files.items())}
        manifest["verification"] = verification or None
        write_manifest(tmp, manifest)
    log.info("exported %s in %.1f s", out_dir, time.perf_counter() - started)
    return out_dir


def _build_plans(trt, folder: str, precision: str, cfg, manifest: dict, blobs: dict, max_batch: int,
                 verify: bool, timing_cache: str | None, files: dict) -> dict | None:
    """TensorRT plans and sidecars for both graphs in folder; returns their verification or None."""
    from . import tensorrt as trt_build
    gpu = trt_build.gpu_info()
    cache = timing_cache or trt_build.default_timing_cache(trt.__version__, gpu)
    plans = {}
    for role, forms in GRAPHS.items():
        onnx_name = forms[precision]
        plan_path = os.path.join(folder, forms["plan"])
        inputs = {name: shape[1:] for name, shape in manifest["io"][role]["inputs"].items()}
        sidecar = trt_build.build_plan(trt, os.path.join(folder, onnx_name), plan_path, role=role,
                                       precision=precision, inputs=inputs, max_batch=max_batch,
                                       timing_cache=cache)
        sidecar["onnx_sha256"] = sha256_file(os.path.join(folder, onnx_name))
        trt_build.write_sidecar(os.path.join(folder, forms["sidecar"]), sidecar)
        files[forms["plan"]] = (role, "plan", precision)
        files[forms["sidecar"]] = (role, "json", None)
        with open(plan_path, "rb") as f:
            plans[role] = f.read()
    if not verify:
        return None
    images = onnx_mod.sample_inputs(cfg)
    enc_ref = onnx_mod.run(onnx_mod.session(blobs["fp32"]["encoder"]), {"image": images})
    dec_in = onnx_mod.decoder_inputs(enc_ref)
    dec_ref = onnx_mod.run(onnx_mod.session(blobs["fp32"]["decoder"]), dec_in)
    reference = {"encoder": ({"image": images}, enc_ref), "decoder": (dec_in, dec_ref)}
    return trt_build.verify_plans(trt, plans, reference, precision, max_batch)

