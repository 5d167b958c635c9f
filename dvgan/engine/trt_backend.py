"""TensorRT backend: the bundle's encoder.plan / decoder.plan, when they were built for this GPU.

A plan only runs on the TensorRT version and GPU model it was built with; its JSON sidecar records
both, and ``plan_problem`` compares them with this machine before anything is deserialised.

Threading: an execution context holds per-call state, so each plan keeps a small pool of contexts;
a call borrows one, runs on its own CUDA stream, synchronises, and returns it.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue

import numpy as np

from ..errors import RuntimeFailure
from ..export.manifest import GRAPHS

log = logging.getLogger(__name__)

CONTEXTS = 4  # concurrent calls per plan before callers wait


def tensorrt_installed() -> bool:
    return importlib.util.find_spec("tensorrt") is not None


def _capability(value) -> str:
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in value)
    return str(value)


def plan_problem(bundle_dir: str, manifest: dict) -> str | None:
    """Why the bundle's plans cannot run here, or None when they can (needs a CUDA GPU and torch)."""
    if not tensorrt_installed():
        return "the tensorrt package is not installed"
    missing = [forms["plan"] for forms in GRAPHS.values() if forms["plan"] not in manifest["files"]]
    if missing:
        return "the bundle has no TensorRT plans (export with TensorRT to add them)"
    import tensorrt as trt
    import torch
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    here = {"tensorrt_version": trt.__version__, "gpu_name": torch.cuda.get_device_name(),
            "compute_capability": _capability(torch.cuda.get_device_capability())}
    for forms in GRAPHS.values():
        plan = forms["plan"]
        try:
            with open(os.path.join(bundle_dir, forms["sidecar"]), encoding="utf-8") as f:
                side = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            return f"{forms['sidecar']} is unreadable ({exc})"
        for key, value in here.items():
            recorded = _capability(side.get(key)) if key == "compute_capability" else side.get(key)
            if recorded != value:
                return f"{plan} was built for {key} {recorded!r}, this machine has {value!r}"
    return None


class _Plan:
    def __init__(self, runtime, path: str):
        with open(path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeFailure(f"{path}: TensorRT could not deserialise the plan")
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.pool: queue.Queue = queue.Queue()
        for _ in range(CONTEXTS):
            self.pool.put(self.engine.create_execution_context())

    def run(self, inputs: dict, outputs: list[str]) -> list[np.ndarray]:
        import tensorrt as trt
        import torch
        ctx = self.pool.get()
        try:
            stream = torch.cuda.Stream()
            bufs = {}
            for name, arr in inputs.items():
                t = torch.from_numpy(np.ascontiguousarray(arr, np.float32)).cuda()
                ctx.set_input_shape(name, tuple(t.shape))
                bufs[name] = t
            for name in outputs:
                shape = tuple(ctx.get_tensor_shape(name))
                dtype = torch.float16 if self.engine.get_tensor_dtype(name) == trt.DataType.HALF else torch.float32
                bufs[name] = torch.empty(shape, dtype=dtype, device="cuda")
            for name, t in bufs.items():
                ctx.set_tensor_address(name, t.data_ptr())
            stream.wait_stream(torch.cuda.current_stream())
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeFailure("TensorRT execution failed")
            stream.synchronize()
            return [bufs[n].float().cpu().numpy() for n in outputs]
        finally:
            self.pool.put(ctx)


class TrtBackend:
    name = "tensorrt"

    def __init__(self, bundle_dir: str):
        import tensorrt as trt
        self.device, self.precision = "cuda", "plan"
        self.logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self.logger)
        self.enc = _Plan(runtime, os.path.join(bundle_dir, GRAPHS["encoder"]["plan"]))
        self.dec = _Plan(runtime, os.path.join(bundle_dir, GRAPHS["decoder"]["plan"]))
        with open(os.path.join(bundle_dir, GRAPHS["encoder"]["sidecar"]), encoding="utf-8") as f:
            self.precision = json.load(f).get("precision", "plan")

    def describe(self) -> str:
        return f"tensorrt {self.precision} plans on cuda"

    def encode(self, x: np.ndarray):
        s, mu, logvar = self.enc.run({"image": x}, ["s", "mu", "logvar"])
        return s, mu, logvar

    def decode(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.dec.run({"s": s, "z": z}, ["image"])[0]


__all__ = ["TrtBackend", "plan_problem", "tensorrt_installed"]
