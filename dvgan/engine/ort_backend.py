"""ONNX Runtime backend: the bundle's encoder.onnx / decoder.onnx (or their fp16 twins) on CPU or CUDA.

Threading: InferenceSession.run is safe to call from many threads at once; concurrent runs share the
session's intra-op thread pool, whose idle threads sleep rather than spin. On CUDA each run uses ONNX Runtime's own stream for that session.
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..errors import RuntimeFailure, first_line
from ..export.manifest import GRAPHS

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cuda_provider_available() -> bool:
    import onnxruntime as ort
    return CUDA in ort.get_available_providers()


class OrtBackend:
    """Two InferenceSessions. IO: float32 numpy arrays (the fp16 graphs also take and give float32)."""

    name = "onnxruntime"

    def __init__(self, bundle_dir: str, device: str = "cpu", precision: str = "fp32", threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads)  # 0: one per physical core
        opts.log_severity_level = 3  # provider fallbacks are reported by the engine, not ORT's log
        # Idle pool threads sleep instead of spinning: spinning takes the cores that concurrent callers
        # (and anything else on the machine) need, and slowed decoding on a busy 2-core host.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = [CUDA, CPU] if device == "cuda" else [CPU]
        self.device, self.precision = device, precision
        try:
            self.enc, self.dec = (ort.InferenceSession(os.path.join(bundle_dir, GRAPHS[role][precision]), opts,
                                                       providers=providers) for role in ("encoder", "decoder"))
        except Exception as exc:  # ORT raises its own exception types for bad graphs and provider failures
            raise RuntimeFailure(f"onnxruntime could not open the bundle's graphs ({first_line(exc)})") from None
        if device == "cuda" and self.enc.get_providers()[0] != CUDA:
            raise RuntimeFailure("onnxruntime's CUDA provider is installed but could not start on this machine")

    def io(self) -> dict:
        """The graphs' own IO names and shapes, in the manifest's "io" layout."""
        def names(args):
            return {a.name: list(a.shape) for a in args}
        return {role: {"inputs": names(sess.get_inputs()), "outputs": names(sess.get_outputs())}
                for role, sess in (("encoder", self.enc), ("decoder", self.dec))}

    def describe(self) -> str:
        return f"onnxruntime {self.precision} on {self.device} ({self.enc.get_providers()[0]})"

    def encode(self, x: np.ndarray):
        s, mu, logvar = self.enc.run(["s", "mu", "logvar"], {"image": np.ascontiguousarray(x, np.float32)})
        return s, mu, logvar

    def decode(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.dec.run(["image"], {"s": np.ascontiguousarray(s, np.float32),
                                        "z": np.ascontiguousarray(z, np.float32)})[0]


__all__ = ["OrtBackend", "cuda_provider_available", "CUDA", "CPU"]
