"""TensorRT backend: the bundle's encoder.plan / decoder.plan, when they were built for this GPU.

A plan only runs on the TensorRT version and GPU model it was built with; its JSON sidecar records
both, and ``plan_problem`` checks them with the exporter's rule (export.tensorrt.plan_mismatch)
before anything is deserialised.

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


def plan_problem(bundle_dir: str, manifest: dict) -> str | None:
    """Why the bundle's plans cannot run here, or None when they can (needs a CUDA GPU and torch)."""
    if not tensorrt_installed():
        return "the tensorrt package is not installed"
    missing = [forms["plan"] for forms in GRAPHS.values() if forms["plan"] not in manifest["files"]]
    if missing:
        return "the bundle has no TensorRT plans (export with TensorRT to add them)"
    import tensorrt as trt
    import torch

    from ..export.tensorrt import machine_info, plan_mismatch
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    here = machine_info(trt)
    for forms in GRAPHS.values():
        try:
            with open(os.path.join(bundle_dir, forms["sidecar"]), encoding="utf-8") as f:
                side = json.load(f)
        except (OSError, json.JSONDecodeError) as exc:
            return f"{forms['sidecar']} is unreadable ({exc})"
        if not isinstance(side, dict):
            return f"{forms['sidecar']}: not a dvgan TensorRT plan description"
        problem = plan_mismatch({"plan": forms["plan"], **side}, here)
        if problem:
            return problem
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

    def io(self) -> dict:
        """The plan's own IO names and shapes, {"inputs": {name: shape}, "outputs": ...}, the dynamic batch as "N"."""
        import tensorrt as trt
        out = {"inputs": {}, "outputs": {}}
        for name in self.names:
            side = "inputs" if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "outputs"
            out[side][name] = ["N" if int(d) < 0 else int(d) for d in self.engine.get_tensor_shape(name)]
        return out

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

    def io(self) -> dict:
        """The plans' IO names and shapes, in the manifest's "io" layout."""
        return {"encoder": self.enc.io(), "decoder": self.dec.io()}

    def describe(self) -> str:
        return f"tensorrt {self.precision} plans on cuda"

    def encode(self, x: np.ndarray):
        s, mu, logvar = self.enc.run({"image": x}, ["s", "mu", "logvar"])
        return s, mu, logvar

    def decode(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.dec.run({"s": s, "z": z}, ["image"])[0]


__all__ = ["TrtBackend", "plan_problem", "tensorrt_installed"]
