"""The bundle contract: manifest.json, its checksums, and the metadata embedded in each ONNX file.

A bundle is a folder::

    manifest.json                     this module's format, version "dvgan-bundle" / 1
    encoder.onnx, decoder.onnx        float32 graphs, dynamic batch
    model.pt                          weights-only checkpoint for the PyTorch backend
    z_prior.npz                       the sampling prior: mean and scale of z (manifest "z_prior")
    encoder.fp16.onnx, decoder.fp16.onnx          optional, float32 inputs and outputs
    encoder.plan, decoder.plan (+ .plan.json)     optional TensorRT engines and their sidecars

manifest.json records every other file with its sha256, size, role, precision and kind;
``load_manifest`` refuses a bundle whose files are missing, altered, or point outside the folder.
"""
from __future__ import annotations

import json
import logging
import os

from .. import __version__
from ..errors import InputError, UsageError
from ..files import sha256_file

log = logging.getLogger(__name__)

FORMAT = "dvgan-bundle"
FORMAT_VERSION = 1
# The files of a bundle: the one place their names are spelled.
MANIFEST = "manifest.json"
WEIGHTS = "model.pt"   # weights-only checkpoint for the PyTorch backend
PRIOR = "z_prior.npz"  # the sampling prior (manifest "z_prior")
GRAPHS = {             # role -> its graph in each form: ONNX fp32 / fp16, TensorRT plan and the plan's sidecar
    "encoder": {"fp32": "encoder.onnx", "fp16": "encoder.fp16.onnx", "plan": "encoder.plan",
                "sidecar": "encoder.plan.json"},
    "decoder": {"fp32": "decoder.onnx", "fp16": "decoder.fp16.onnx", "plan": "decoder.plan",
                "sidecar": "decoder.plan.json"},
}
REQUIRED_FILES = tuple(forms["fp32"] for forms in GRAPHS.values())
REQUIRED_KEYS = ("model_config", "image_size", "channels", "s_dim", "z_dim", "preprocess", "io", "files")
KINDS = ("onnx", "plan", "torch", "json", "npz")
PRECISIONS = ("fp32", "fp16", None)
METADATA_PREFIX = "dvgan."
# Keys of the manifest copied into each ONNX file's metadata_props. "files" and "verification"
# stay out: a file cannot hold its own checksum, and the numbers are measured on the graphs.
EMBEDDED_KEYS = ("format", "format_version", "model_config", "image_size", "channels", "s_dim", "z_dim",
                 "preprocess", "io", "opset", "max_batch", "versions", "source")


def file_entry(bundle_dir: str, name: str, *, role: str, kind: str, precision: str | None = None) -> dict:
    """The manifest's record of one bundle file: checksum, size and what it is."""
    if kind not in KINDS or precision not in PRECISIONS:
        raise ValueError(f"bad file entry for {name}: kind={kind!r} precision={precision!r}")
    path = os.path.join(bundle_dir, name)
    return {"sha256": sha256_file(path), "bytes": os.path.getsize(path), "role": role,
            "precision": precision, "kind": kind}


def io_spec(channels: int, image_size: int, s_dim: int, z_dim: int) -> dict:
    """IO names and shapes of both graphs; "N" is the dynamic batch dimension."""
    image = ["N", channels, image_size, image_size]
    return {
        "encoder": {"inputs": {"image": image},
                    "outputs": {"s": ["N", s_dim], "mu": ["N", z_dim], "logvar": ["N", z_dim]}},
        "decoder": {"inputs": {"s": ["N", s_dim], "z": ["N", z_dim]},
                    "outputs": {"image": image}},
    }


def versions() -> dict:
    import onnx
    import onnxruntime
    import torch
    return {"dvgan": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def base_manifest(model_config: dict, *, opset: int, max_batch: int, source: dict, resize: str) -> dict:
    """Everything but "files" and "verification", which the exporter adds once the files exist."""
    channels = int(model_config["channels"])
    size = int(model_config["image_size"])
    s_dim, z_dim = int(model_config["s_dim"]), int(model_config["z_dim"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": dict(model_config),
        "image_size": size,
        "channels": channels,
        "s_dim": s_dim,
        "z_dim": z_dim,
        "preprocess": {"mode": "L" if channels == 1 else "RGB", "resize": resize, "value_range": [-1, 1]},
        "io": io_spec(channels, size, s_dim, z_dim),
        "opset": int(opset),
        "max_batch": int(max_batch),
        "versions": versions(),
        "source": source,
    }


def onnx_metadata(manifest: dict, *, role: str, precision: str) -> dict[str, str]:
    """String key/values for an ONNX file's metadata_props (JSON for nested values)."""
    meta = {METADATA_PREFIX + k: json.dumps(manifest[k]) for k in EMBEDDED_KEYS if k in manifest}
    meta[METADATA_PREFIX + "role"] = json.dumps(role)
    meta[METADATA_PREFIX + "precision"] = json.dumps(precision)
    return meta


def read_onnx_metadata(props) -> dict:
    """Inverse of onnx_metadata on a model's metadata_props (a list of key/value entries)."""
    out = {}
    for p in props:
        if p.key.startswith(METADATA_PREFIX):
            out[p.key[len(METADATA_PREFIX):]] = json.loads(p.value)
    return out


def write_manifest(bundle_dir: str, manifest: dict) -> None:
    with open(os.path.join(bundle_dir, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _bundle_folder(bundle_dir) -> str:
    bundle_dir = os.fspath(bundle_dir)
    if not os.path.exists(bundle_dir):
        raise UsageError(f"{bundle_dir}: no such bundle folder")
    if not os.path.isdir(bundle_dir):
        raise UsageError(f"{bundle_dir}: not a folder (expected a bundle made by dvgan-export)")
    return bundle_dir


def _safe_path(bundle_dir: str, name) -> str:
    """The path of a manifest-listed file, refusing names that could leave the bundle folder."""
    where = os.path.join(bundle_dir, MANIFEST)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InputError(f"{where}: invalid file name {name!r}")
    if os.path.isabs(name) or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise InputError(f"{where}: file path {name!r} is absolute; bundle paths must be relative")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise InputError(f"{where}: file path {name!r} escapes the bundle folder")
    path = os.path.join(bundle_dir, *parts)
    # A symlink anywhere on the way could point outside the bundle, or swap a file after hashing.
    walk = bundle_dir
    for part in parts:
        walk = os.path.join(walk, part)
        if os.path.islink(walk):
            raise InputError(f"{path}: is a symbolic link; bundle files must be regular files")
    root = os.path.realpath(bundle_dir)
    if os.path.commonpath([root, os.path.realpath(path)]) != root:
        raise InputError(f"{where}: file path {name!r} escapes the bundle folder")
    return path


def _read_json(path: str) -> dict:
    if os.path.islink(path):
        raise InputError(f"{path}: is a symbolic link; bundle files must be regular files")
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing (not a dvgan bundle, or an unfinished one)")
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object")
    return data


def _check_consistent(manifest: dict, where: str) -> None:
    """The shape fields are copies of model_config; an edit to one but not the others is refused."""
    cfg = manifest["model_config"]
    if not isinstance(cfg, dict):
        raise InputError(f"{where}: 'model_config' must be an object")
    for key in ("image_size", "channels", "s_dim", "z_dim"):
        if manifest[key] != cfg.get(key) or not isinstance(manifest[key], int):
            raise InputError(f"{where}: {key} {manifest[key]!r} disagrees with model_config ({cfg.get(key)!r}); "
                             "the manifest was edited")
    if manifest["io"] != io_spec(manifest["channels"], manifest["image_size"], manifest["s_dim"], manifest["z_dim"]):
        raise InputError(f"{where}: 'io' disagrees with the model's shapes; the manifest was edited")


def load_manifest(bundle_dir, verify: bool = True) -> dict:
    """Read BUNDLE/manifest.json and check the bundle against it.

    Always checks the format and version, the required keys, that every listed file is a regular
    file inside the folder, and that it has the recorded size. With verify (the default) also
    recomputes every sha256. Raises UsageError if bundle_dir is not a folder, InputError naming the
    file for anything else wrong. Files in the folder that the manifest does not list are logged.
    """
    bundle_dir = _bundle_folder(bundle_dir)
    where = os.path.join(bundle_dir, MANIFEST)
    manifest = _read_json(where)
    if manifest.get("format") != FORMAT:
        raise InputError(f"{where}: not a dvgan bundle manifest (format {manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(f"{where}: bundle format version {manifest.get('format_version')!r} is not supported "
                         f"by dvgan {__version__} (expects {FORMAT_VERSION})")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise InputError(f"{where}: manifest lacks {', '.join(missing)}")
    _check_consistent(manifest, where)
    files = manifest["files"]
    if not isinstance(files, dict):
        raise InputError(f"{where}: 'files' must be an object of file name -> entry")
    for name in REQUIRED_FILES:
        if name not in files:
            raise InputError(f"{where}: manifest does not list {name}")
    for name, entry in files.items():
        path = _safe_path(bundle_dir, name)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise InputError(f"{where}: entry for {name!r} lacks a sha256")
        if not os.path.isfile(path):
            raise InputError(f"{path}: missing from the bundle (listed in manifest.json)")
        size = os.path.getsize(path)
        if "bytes" in entry and size != entry["bytes"]:
            raise InputError(f"{path}: size {size} bytes does not match manifest.json ({entry['bytes']}); "
                             "the file was modified or truncated")
        if verify and sha256_file(path) != entry["sha256"].lower():
            raise InputError(f"{path}: sha256 does not match manifest.json; the file was modified")
    extra = sorted(set(os.listdir(bundle_dir)) - set(files) - {MANIFEST})
    if extra:
        log.warning("%s: files not listed in the manifest (ignored): %s", bundle_dir, ", ".join(extra))
    return manifest


def bundle_digest(bundle_dir) -> str:
    """sha256 of manifest.json's bytes: one string that identifies a bundle and, through it, every file."""
    bundle_dir = _bundle_folder(bundle_dir)
    path = os.path.join(bundle_dir, MANIFEST)
    if not os.path.isfile(path):
        raise InputError(f"{path}: missing (not a dvgan bundle, or an unfinished one)")
    return sha256_file(path)


__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "WEIGHTS", "PRIOR", "GRAPHS", "load_manifest", "bundle_digest", "file_entry",
           "base_manifest", "io_spec", "onnx_metadata", "read_onnx_metadata", "write_manifest"]
