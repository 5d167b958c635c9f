"""One table of backends, and the choice among them.

    backend       device        graphs used                       needs
    tensorrt      cuda          encoder.plan, decoder.plan        tensorrt, plans built for this GPU
    onnxruntime   cuda | cpu    encoder[.fp16].onnx, decoder...   onnxruntime (-gpu for cuda)
    torch         cuda | cpu    model.pt                          torch

``auto`` first settles the device (cuda when a GPU is usable by onnxruntime or torch, else cpu),
then takes the first backend in the table that works there, and records why each better one was
passed over. A backend or device asked for by name is used or refused with the reason, never replaced.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass, field

from ..errors import RuntimeFailure, UsageError
from ..export.manifest import GRAPHS, WEIGHTS

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


@dataclass
class Choice:
    backend: object                                   # TrtBackend | OrtBackend | TorchBackend
    passed_over: list[str] = field(default_factory=list)  # "backend on device: reason", best first

    def report(self) -> str:
        text = f"backend: {self.backend.describe()}"
        if self.passed_over:
            text += "; passed over: " + "; ".join(self.passed_over)
        return text


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _torch_cuda() -> bool:
    # A machine without the NVIDIA driver's device node has no CUDA GPU: skip importing torch (about a second).
    if not os.path.exists("/dev/nvidiactl") or not _installed("torch"):
        return False
    import torch
    return torch.cuda.is_available()


def _ort_cuda() -> bool:
    from .ort_backend import cuda_provider_available
    return _installed("onnxruntime") and cuda_provider_available()


def _has_fp16(manifest: dict) -> bool:
    return all(forms["fp16"] in manifest["files"] for forms in GRAPHS.values())


def _ort_precision(manifest: dict, device: str, precision: str) -> str:
    if precision == "bf16":
        raise UsageError("the onnxruntime backend runs fp32 or fp16 graphs, not bf16 (use backend torch)")
    if precision == "fp16" and not _has_fp16(manifest):
        raise RuntimeFailure("fp16 asked for, but the bundle has no fp16 graphs (export with --fp16)")
    if precision == "auto":
        return "fp16" if device == "cuda" and _has_fp16(manifest) else "fp32"
    return precision


def _open_trt(bundle_dir, manifest):
    from .trt_backend import TrtBackend, plan_problem
    problem = plan_problem(bundle_dir, manifest)
    if problem:
        raise RuntimeFailure(f"tensorrt cannot run this bundle here: {problem}")
    return TrtBackend(bundle_dir)


def _open_ort(bundle_dir, manifest, device, precision, threads):
    if not _installed("onnxruntime"):
        raise RuntimeFailure("backend onnxruntime is not installed (pip install onnxruntime)")
    if device == "cuda" and not _ort_cuda():
        raise RuntimeFailure("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
    from .ort_backend import OrtBackend
    return OrtBackend(bundle_dir, device, _ort_precision(manifest, device, precision), threads)


def _open_torch(bundle_dir, manifest, device, precision, cuda_graphs):
    if not _installed("torch"):
        raise RuntimeFailure("backend torch is not installed (pip install torch)")
    if WEIGHTS not in manifest["files"]:
        raise RuntimeFailure(f"the bundle has no {WEIGHTS} for the torch backend")
    from .torch_backend import TorchBackend
    return TorchBackend(bundle_dir, device, "fp32" if precision == "auto" else precision,
                        cuda_graphs, int(manifest.get("max_batch", 256)))


def choose(bundle_dir: str, manifest: dict, backend: str = "auto", device: str = "auto",
           precision: str = "auto", threads: int = 0, cuda_graphs: bool = False) -> Choice:
    """Open the requested backend, or with "auto" the best one that works; see the module docstring."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if cuda_graphs and backend != "torch":
        raise UsageError("CUDA graphs are a torch backend option (use backend='torch', device='cuda')")
    if backend == "tensorrt":
        if device == "cpu":
            raise UsageError("the tensorrt backend runs on cuda only")
        return Choice(_open_trt(bundle_dir, manifest))
    if device == "auto":
        device = "cuda" if (_ort_cuda() or _torch_cuda()) else "cpu"
    if backend == "onnxruntime":
        return Choice(_open_ort(bundle_dir, manifest, device, precision, threads))
    if backend == "torch":
        if device == "cuda" and not _torch_cuda():
            raise RuntimeFailure("torch backend asked for cuda, but PyTorch sees no CUDA GPU")
        return Choice(_open_torch(bundle_dir, manifest, device, precision, cuda_graphs))

    passed = []
    attempts = []
    if device == "cuda":
        attempts.append(("tensorrt", lambda: _open_trt(bundle_dir, manifest)))
    attempts.append(("onnxruntime", lambda: _open_ort(bundle_dir, manifest, device, precision, threads)))
    attempts.append(("torch", lambda: _open_torch(bundle_dir, manifest, device, precision, False)))
    for name, attempt in attempts:
        try:
            chosen = Choice(attempt(), passed)
        except (RuntimeFailure, UsageError) as exc:
            passed.append(f"{name} on {device}: {exc}")
            continue
        return chosen
    raise RuntimeFailure(f"no backend can run this bundle on {device}: " + "; ".join(passed))


__all__ = ["Choice", "choose", "BACKENDS", "DEVICES", "PRECISIONS"]
