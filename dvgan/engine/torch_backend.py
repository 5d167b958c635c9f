"""PyTorch backend: the bundle's weights-only model.pt, eager, optionally half precision and CUDA graphs.

Threading: modules are in eval mode and every call runs under torch.inference_mode, so calls share no
mutable state and may run from many threads at once. On CUDA, eager calls are queued on the calling
thread's current stream (PyTorch's default stream unless the caller set one). A captured CUDA graph
owns static input and output buffers, so each graph is replayed under its own lock: concurrent calls
of the same batch bucket take turns, calls of different buckets do not wait for each other.
"""
from __future__ import annotations

import logging
import os
import threading

import numpy as np

from ..errors import RuntimeFailure, UsageError

log = logging.getLogger(__name__)

DTYPES = ("fp32", "fp16", "bf16")
# Rows per encoder / decoder call in the fused swap. Eager torch has no batch profile to respect (the
# ONNX and TensorRT graphs do: the bundle's max_batch), so the chunk is set by the device: on an H100,
# eager fp32 swap gained up to batch 1024 and lost at 4096 (benchmarks/RESULTS.md, "GPU: swap on an NVIDIA
# H100 80GB HBM3, before the fused path"); a fixed chunk also bounds the activation memory of one call
# whatever the request's size.
# CUDA graphs stay at their capture limit (max_batch) when it is smaller.
SWAP_CHUNK = 1024
OUT_BYTES = 1 << 28  # decoded images gathered on the device before one copy to the host


def _bucket(n: int, cap: int) -> int:
    """Smallest power of two >= n, at most cap: the batch a CUDA graph is captured for."""
    b = 1
    while b < n:
        b *= 2
    return min(b, cap)


class _GraphedCall:
    """fn(*tensors) replayed from CUDA graphs captured per power-of-two batch bucket.

    Inputs are padded up to the bucket with zeros; BatchNorm is in eval mode, so padding rows do not
    change the real rows. Outputs are cloned out of the graph's static buffers before the lock is released.
    """

    def __init__(self, fn, max_batch: int):
        self.fn, self.max_batch = fn, max_batch
        self.graphs: dict[int, tuple] = {}
        self.capture_lock = threading.Lock()

    def _capture(self, bucket: int, example):
        import torch
        static_in = [torch.zeros((bucket, *t.shape[1:]), dtype=t.dtype, device=t.device) for t in example]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):  # warm up kernels and the allocator outside the graph
                self.fn(*static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self.fn(*static_in)
        return graph, static_in, static_out, threading.Lock()

    def __call__(self, *inputs):
        n = inputs[0].shape[0]
        bucket = _bucket(n, self.max_batch)
        entry = self.graphs.get(bucket)
        if entry is None:
            with self.capture_lock:
                entry = self.graphs.get(bucket)
                if entry is None:
                    entry = self.graphs[bucket] = self._capture(bucket, inputs)
        graph, static_in, static_out, lock = entry
        with lock:
            for buf, t in zip(static_in, inputs):
                buf[:n].copy_(t)
                buf[n:].zero_()
            graph.replay()
            outs = static_out if isinstance(static_out, tuple) else (static_out,)
            return tuple(o[:n].clone() for o in outs)


class TorchBackend:
    """Encoder and decoder of the bundle's model.pt (or of a loaded checkpoint) on cpu or cuda.
    IO: float32 numpy arrays."""

    name = "torch"

    def __init__(self, bundle_dir: str | None, device: str = "cpu", precision: str = "fp32",
                 cuda_graphs: bool = False, max_batch: int = 256, *, state: dict | None = None):
        """state: a checkpoint dict (train.checkpoint.load_checkpoint) to run instead of the bundle's
        model.pt; bundle_dir is then not read (Engine.from_run)."""
        import torch

        from ..export.manifest import WEIGHTS
        from ..train.checkpoint import build_models, load_checkpoint

        if precision not in DTYPES:
            raise UsageError(f"torch backend precision must be one of {', '.join(DTYPES)}, got {precision!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeFailure("torch backend asked for cuda, but PyTorch sees no CUDA GPU")
        if device == "cpu" and precision == "fp16":
            raise UsageError("fp16 on the cpu is not supported by the torch backend; use fp32 or bf16")
        if cuda_graphs and device != "cuda":
            raise UsageError("CUDA graphs need device cuda")
        self.device, self.precision, self.cuda_graphs = device, precision, cuda_graphs
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        if state is None:
            state = load_checkpoint(os.path.join(bundle_dir, WEIGHTS), bundle_weights=True)
        self.cfg, enc, dec = build_models(state, device)
        self.enc, self.dec = enc.to(self.dtype), dec.to(self.dtype)
        # What encode, decode and swap call: the modules, or CUDA graphs of them; both give tensors.
        self._enc_call, self._dec_call = self.enc, self.dec
        self.chunk = min(SWAP_CHUNK, max_batch) if cuda_graphs else SWAP_CHUNK  # rows per call in swap
        if cuda_graphs:
            self._enc_call = _GraphedCall(self.enc, max_batch)
            graphed_dec = _GraphedCall(lambda s, z: (self.dec(s, z),), max_batch)
            self._dec_call = lambda s, z: graphed_dec(s, z)[0]

    def io(self) -> dict:
        """The weights' IO names and shapes, in the manifest's "io" layout."""
        from ..export.manifest import io_spec
        c = self.cfg
        return io_spec(c.channels, c.image_size, c.s_dim, c.z_dim)

    def describe(self) -> str:
        extra = ", CUDA graphs" if self.cuda_graphs else ""
        return f"torch {self.precision} on {self.device}{extra}"

    def _tensor(self, a: np.ndarray):
        import torch
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device, self.dtype, non_blocking=False)

    @staticmethod
    def _numpy(t) -> np.ndarray:
        import torch
        return t.to(torch.float32).cpu().numpy()

    def encode(self, x: np.ndarray):
        import torch
        with torch.inference_mode():
            out = self._enc_call(self._tensor(x))
            return tuple(self._numpy(t) for t in out)

    def decode(self, s: np.ndarray, z: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            return self._numpy(self._dec_call(self._tensor(s), self._tensor(z)))

    def swap(self, x_s: np.ndarray, s_rows: np.ndarray, z_rows: np.ndarray, *,
             x_z: np.ndarray | None = None, z: np.ndarray | None = None) -> np.ndarray:
        """Fused Dec(s(x_s)[s_rows], u[z_rows]) with u = mu(x_z), or u = z when z is given (ops.recombine).

        x_s, x_z: float32 (N, C, H, W); s_rows, z_rows: int row indices of equal length L; z: (K, z_dim).
        The images are copied to the device once, the codes never leave it, and the decoded images come
        back in copies of up to OUT_BYTES -> float32 (L, C, H, W).
        """
        import torch

        from .. import ops
        c = self.cfg
        rows = len(s_rows)
        out = np.empty((rows, c.channels, c.image_size, c.image_size), np.float32)
        with torch.inference_mode():
            s_idx = torch.from_numpy(np.asarray(s_rows, np.int64)).to(self.device)
            z_idx = torch.from_numpy(np.asarray(z_rows, np.int64)).to(self.device)
            chunks = ops.recombine_chunks(self._enc_call, self._dec_call, self._tensor(x_s), s_idx, z_idx,
                                          x_z=None if x_z is None else self._tensor(x_z),
                                          z=None if z is None else self._tensor(z), chunk=self.chunk)
            per_row = out[:1].nbytes
            pending, start = [], 0
            for _, b, images in chunks:
                pending.append(images)
                if (b - start) * per_row >= OUT_BYTES or b == rows:
                    block = pending[0] if len(pending) == 1 else torch.cat(pending)
                    torch.from_numpy(out[start:b]).copy_(block)  # to the host and to float32 in one copy
                    pending, start = [], b
        return out


__all__ = ["TorchBackend", "DTYPES", "SWAP_CHUNK"]
