"""The Engine: a loaded bundle that answers swap, conditional sampling, interpolation and encoding in batches.

All methods take images in any form ``dvgan.engine.inputs.to_batch`` accepts and return float32 numpy
arrays; images come back in [-1, 1] as (..., C, H, W) (``to_uint8`` converts). Work is cut into batches
of at most the bundle's max_batch (the ONNX and TensorRT graphs' batch profile); swap and sample on the
torch backend run fused on its device in chunks of its own (torch_backend.SWAP_CHUNK). Every call's
result equals the concatenation of one-image calls within float tolerance (BatchNorm runs in inference
mode, so rows never interact).

Threading: an Engine holds no mutable state after load and no global state at all; any method may be
called from many threads at once. The backend's own notes (torch_backend, ort_backend, trt_backend)
say how concurrent calls share the device. Random draws use a generator made from the call's seed.
"""
from __future__ import annotations

import logging
import numbers
import os
import time
from typing import NamedTuple

import numpy as np

from ..errors import InputError, UsageError
from ..prior import PRIORS, check_prior, draw
from .. import defaults
from .backends import choose
from .inputs import to_batch, to_codes

log = logging.getLogger(__name__)


class Codes(NamedTuple):
    s: np.ndarray       # (N, s_dim) specified code (identity)
    mu: np.ndarray      # (N, z_dim) posterior mean of the unspecified code
    logvar: np.ndarray  # (N, z_dim) log sigma^2 of the unspecified code


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [-1, 1] -> uint8, same shape."""
    from ..data.preprocess import float_to_uint8
    return float_to_uint8(images)


class Engine:
    """Use ``Engine.load(bundle)``, or ``Engine.from_run(run_dir)`` for a training run on the torch backend;
    attributes: manifest, bundle_dir (the run folder for from_run), digest, backend, choice."""

    def __init__(self, bundle_dir: str, manifest: dict, digest: str, choice):
        self.bundle_dir = bundle_dir
        self.manifest = manifest
        self.digest = digest                  # sha256 of manifest.json: the bundle's identity
        self.choice = choice                  # which backend runs, and why better ones were passed over
        self.backend = choice.backend
        self.image_size = int(manifest["image_size"])
        self.channels = int(manifest["channels"])
        self.s_dim, self.z_dim = int(manifest["s_dim"]), int(manifest["z_dim"])
        self.max_batch = int(manifest.get("max_batch", 256))
        self.z_prior = _load_prior(bundle_dir, manifest)  # None: a bundle exported without one; sample N(0, I)

    @classmethod
    def load(cls, bundle: str | None = None, backend: str = "auto", device: str = "auto", *,
             precision: str = "auto", threads: int = 0, cuda_graphs: bool = False,
             verify: bool = True) -> "Engine":
        """Open a bundle folder (default: dvgan.defaults.bundle_dir()).

        backend: auto | tensorrt | onnxruntime | torch; device: auto | cpu | cuda; precision: auto | fp32 |
        fp16 | bf16 (bf16: torch only); threads: onnxruntime intra-op threads (0 = one per core);
        cuda_graphs: torch on cuda only. verify re-checks every file's sha256 against the manifest.
        """
        from ..export.manifest import bundle_digest, load_manifest
        t0 = time.perf_counter()
        bundle = os.fspath(bundle) if bundle is not None else defaults.bundle_dir()
        manifest = load_manifest(bundle, verify=verify)
        choice = choose(bundle, manifest, backend, device, precision, threads, cuda_graphs)
        check_io(bundle, choice.backend, manifest)
        engine = cls(bundle, manifest, bundle_digest(bundle), choice)
        log.info("loaded %s in %.2f s; %s", bundle, time.perf_counter() - t0, choice.report())
        return engine

    @classmethod
    def from_run(cls, run_dir: str, device: str = "cpu", *, max_batch: int = 256,
                 state: dict | None = None) -> "Engine":
        """An engine over a training run folder (or its checkpoint.pt) on the torch backend, without
        exporting: the checkpoint's weights, model config and fitted z prior. Its answers are those of
        Engine.load(<the run's exported bundle>, "torch", device).

        device: cpu | cuda | auto; max_batch: rows per encode and decode call (256, as an export's).
        digest is the checkpoint file's sha256 (an index built with this engine is tied to the checkpoint).
        state: the run's checkpoint, when the caller has loaded it already (load_checkpoint(run_dir)).
        """
        import torch

        from ..config import to_dict
        from ..export.manifest import io_spec
        from ..files import sha256_file
        from ..train.checkpoint import checkpoint_path, load_checkpoint, saved_prior
        from .backends import DEVICES, Choice
        from .torch_backend import TorchBackend

        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        run_dir = os.fspath(run_dir)
        state = load_checkpoint(run_dir) if state is None else state
        backend = TorchBackend(None, device, "fp32", False, max_batch, state=state)
        c = backend.cfg
        # The part of a bundle's manifest.json that the engine reads; a run has no files to list.
        manifest = {"model_config": to_dict(c), "image_size": c.image_size, "channels": c.channels,
                    "s_dim": c.s_dim, "z_dim": c.z_dim, "max_batch": int(max_batch),
                    "io": io_spec(c.channels, c.image_size, c.s_dim, c.z_dim),
                    "source": {"run": os.path.abspath(run_dir), "step": int(state.get("step", 0))}}
        engine = cls(run_dir, manifest, sha256_file(checkpoint_path(run_dir)), Choice(backend))
        # The prior as export writes it into the bundle (z_prior.npz) and Engine.load reads it back.
        fitted = saved_prior(state, c.z_dim)
        engine.z_prior = {k: fitted[k].numpy().astype(np.float32) for k in ("mean", "scale")}
        return engine

    def __repr__(self):
        return (f"Engine({self.bundle_dir!r}, {self.backend.describe()}, {self.image_size}x{self.image_size}"
                f"x{self.channels}, s {self.s_dim}, z {self.z_dim})")

    # -- inputs and the two graphs ---------------------------------------------------------------

    def preprocess(self, images) -> np.ndarray:
        """Any accepted input -> float32 (N, C, H, W) in [-1, 1], exactly as in training."""
        return to_batch(images, self.image_size, self.channels)

    def _chunks(self, n: int):
        return [(i, min(i + self.max_batch, n)) for i in range(0, n, self.max_batch)]

    def encode(self, images) -> Codes:
        """images -> Codes(s (N, s_dim), mu (N, z_dim), logvar (N, z_dim))."""
        return self._encode(self.preprocess(images))

    def _encode(self, x: np.ndarray) -> Codes:
        if not len(x):
            return Codes(np.zeros((0, self.s_dim), np.float32), np.zeros((0, self.z_dim), np.float32),
                         np.zeros((0, self.z_dim), np.float32))
        parts = [self.backend.encode(x[a:b]) for a, b in self._chunks(len(x))]
        if len(parts) == 1:
            return Codes(*parts[0])
        return Codes(*(np.concatenate([p[i] for p in parts]) for i in range(3)))

    def decode(self, s, z) -> np.ndarray:
        """s (N, s_dim), z (N, z_dim) -> images float32 (N, C, H, W) in [-1, 1]."""
        s, z = to_codes("s", s, self.s_dim), to_codes("z", z, self.z_dim)
        if len(s) != len(z):
            raise UsageError(f"s and z must have the same number of rows, got {len(s)} and {len(z)}")
        return self._decode(s, z)

    def _decode(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        if not len(s):
            return np.zeros((0, self.channels, self.image_size, self.image_size), np.float32)
        parts = [self.backend.decode(s[a:b], z[a:b]) for a, b in self._chunks(len(s))]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _recombine(self, x_s: np.ndarray, s_rows: np.ndarray, z_rows: np.ndarray, *,
                   x_z: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
        """Dec(s(x_s)[s_rows], u[z_rows]) with u = mu(x_z), or u = z when z is given -> (len(s_rows), C, H, W).

        A backend with a fused ``swap`` (torch) keeps the codes on its device; the others encode to host
        arrays and decode them in max_batch chunks, which their graphs' batch profile requires.
        """
        fused = getattr(self.backend, "swap", None)
        if fused is not None:
            return fused(x_s, s_rows, z_rows, x_z=x_z, z=z)
        s = self._encode(x_s).s
        u = self._encode(x_z).mu if x_z is not None else z
        return self._decode(s[s_rows], u[z_rows])

    # -- the questions the model answers -----------------------------------------------------------

    def swap(self, specified, unspecified, grid: bool = False) -> np.ndarray:
        """Dec(s of specified, mu of unspecified).

        Pairwise: M specified and N unspecified images with M == N, or one of them 1 (broadcast)
        -> (max(M, N), C, H, W). grid=True: every pair -> (N, M, C, H, W), cell [i, j] = Dec(s_j, mu_i),
        the paper's Fig. 2a (rows keep a z, columns keep an s).
        """
        x_s, x_z = self.preprocess(specified), self.preprocess(unspecified)
        m, n = len(x_s), len(x_z)
        if not m or not n:
            raise UsageError("swap needs at least one specified and one unspecified image")
        if grid:
            out = self._recombine(x_s, np.tile(np.arange(m), n), np.repeat(np.arange(n), m), x_z=x_z)
            return out.reshape(n, m, *out.shape[1:])
        if m != n and 1 not in (m, n):
            raise UsageError(f"swap pairs images one to one or one to many; got {m} specified and "
                             f"{n} unspecified (use grid=True for every pair)")
        k = max(m, n)
        return self._recombine(x_s, np.repeat(np.arange(m), k // m), np.repeat(np.arange(n), k // n), x_z=x_z)

    def sample(self, specified, n: int, seed: int = 0, prior: str = "auto", temperature: float = 1.0) -> np.ndarray:
        """Conditional generation: Dec(s of each image, z) for n draws of z -> (M, n, C, H, W).

        prior: "fitted" draws z from the Gaussian fitted to the training codes that the bundle carries
        (z_prior.npz; see dvgan/prior.py), "standard" from the paper's N(0, I), "auto" the
        fitted one when the bundle has it. The n draws come from numpy's default_rng(seed) and are
        shared by every image, so each column shows one pose across identities and a one-image call
        equals its row of a batch call. temperature scales the draws around the prior's mean (1: the
        prior as it is; below 1 fewer samples lose the identity and less varies: benchmarks/RESULTS.md,
        "MNIST: a lighter KL term", the judged samples; 0: the mean for every draw).
        """
        if not (isinstance(temperature, numbers.Real) and not isinstance(temperature, bool)
                and np.isfinite(temperature) and temperature >= 0):
            raise UsageError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if prior not in PRIORS:
            raise UsageError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        if prior == "fitted" and self.z_prior is None:
            raise UsageError(f"{self.bundle_dir}: the bundle has no fitted prior (exported from a checkpoint "
                             "that predates it); use prior 'standard'")
        if int(n) < 1:
            raise UsageError(f"n must be >= 1, got {n}")
        n = int(n)
        x_s = self.preprocess(specified)
        m = len(x_s)
        if not m:
            raise UsageError("sample needs at least one specified image")
        eps = np.random.default_rng(seed).standard_normal((n, self.z_dim), dtype=np.float32)
        z = draw(None if prior == "standard" else self.z_prior, eps, temperature)
        out = self._recombine(x_s, np.repeat(np.arange(m), n), np.tile(np.arange(n), m), z=z)
        return out.reshape(m, n, *out.shape[1:])

    def interpolate(self, a, b, steps: int = 8) -> np.ndarray:
        """The paper's Fig. 2b: (steps, steps, C, H, W); row i keeps z = lerp(mu_a, mu_b, t_i), column j
        keeps s = lerp(s_a, s_b, t_j), t = linspace(0, 1, steps). Corners reconstruct a and b."""
        if int(steps) < 2:
            raise UsageError(f"steps must be >= 2, got {steps}")
        ca, cb = self.encode(a), self.encode(b)
        if len(ca.s) != 1 or len(cb.s) != 1:
            raise UsageError("interpolate takes exactly one image a and one image b")
        t = np.linspace(0.0, 1.0, int(steps), dtype=np.float32)[:, None]
        s = ca.s + t * (cb.s - ca.s)     # (steps, s_dim), one per column
        z = ca.mu + t * (cb.mu - ca.mu)  # (steps, z_dim), one per row
        out = self.decode(np.tile(s, (steps, 1)), np.repeat(z, steps, axis=0))
        return out.reshape(steps, steps, *out.shape[1:])


def check_io(bundle: str, backend, manifest: dict) -> None:
    """Refuse a backend whose graphs (ONNX, plans or weights) take or give other names or shapes than the
    manifest's "io" says: every backend reports its own with io()."""
    if backend.io() != manifest["io"]:
        raise InputError(f"{bundle}: the {backend.name} graphs' shapes disagree with manifest.json; "
                         "the bundle was edited or mixed with another")


def _load_prior(bundle_dir: str, manifest: dict) -> dict | None:
    """The bundle's fitted z prior {"mean", "scale"} as float32 arrays, checked; None if it has none."""
    record = manifest.get("z_prior")
    if not record:
        return None
    path = os.path.join(bundle_dir, str(record.get("file", "")))
    if os.path.basename(path) not in manifest["files"]:
        raise InputError(f"{bundle_dir}: manifest.json names a z prior file that it does not list")
    try:
        with np.load(path, allow_pickle=False) as f:
            fitted = {"mean": f["mean"].astype(np.float32), "scale": f["scale"].astype(np.float32)}
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path}: not a readable z prior ({exc})") from None
    problem = check_prior(fitted, int(manifest["z_dim"]), path)
    if problem:
        raise InputError(problem)
    return fitted


__all__ = ["Engine", "Codes", "to_uint8", "PRIORS"]
