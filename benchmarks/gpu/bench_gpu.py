"""GPU benchmark of the engine: PyTorch eager fp32 against the engine's GPU paths for swap at batch
1 to 4096, and exact top-k over 1M codes on the GPU. Needs only torch (CUDA), onnx and onnxruntime;
faiss, tensorrt and onnxscript (for an ONNX export) are used when present and reported skipped if not.

    bash benchmarks/gpu/run.sh                 # the full run on a GPU (about 3 to 5 minutes)
    python benchmarks/gpu/bench_gpu.py --device cpu --quick    # the same code paths, small, on a CPU

The model is the sprites model at the paper's size (s 64, z 512) with random weights (speed does not
depend on them). The baseline is the obvious eager code: numpy in, Encoder/Decoder fp32 on the GPU,
numpy out. Engine rows go through Engine.swap with the same numpy IO: the torch backend's fused swap (codes stay on the device), and
once, for comparison, the path without it ("host codes": encode to numpy, decode in max_batch chunks).
Each number is the median of --reps calls after warm-up.
The card's name and a short table are printed last, and written to $OUT/gpu_results.txt when OUT is set.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from dvgan.config import ModelConfig, to_dict  # noqa: E402
from dvgan.engine import search as S  # noqa: E402
from dvgan.engine.backends import Choice  # noqa: E402
from dvgan.engine.engine import Engine  # noqa: E402
from dvgan.engine.torch_backend import TorchBackend  # noqa: E402
from dvgan.errors import first_line  # noqa: E402
from dvgan.export.manifest import base_manifest  # noqa: E402
from dvgan.model import Decoder, Encoder  # noqa: E402
from dvgan.train.checkpoint import save_checkpoint  # noqa: E402

MAX_BATCH = 4096


def timed(fn, reps: int, sync) -> float:
    fn()
    fn()
    times = []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class HostCodes:
    """The torch backend without its fused swap: Engine.swap then encodes to host numpy and decodes."""

    def __init__(self, backend):
        self.encode, self.decode, self.describe = backend.encode, backend.decode, backend.describe


def make_model(work: str, device: str):
    """A random sprites model (s 64, z 512) written as model.pt, and an Engine factory over it (torch backend)."""
    cfg = ModelConfig(z_dim=512)  # the size the recorded numbers were measured at
    torch.manual_seed(0)
    enc, dec = Encoder(cfg).eval(), Decoder(cfg).eval()
    save_checkpoint(os.path.join(work, "model.pt"), {"model_config": to_dict(cfg), "encoder": enc.state_dict(),
                                                     "decoder": dec.state_dict(), "step": 0})
    manifest = base_manifest(to_dict(cfg), opset=18, max_batch=MAX_BATCH, source={"step": 0}, resize="bilinear")
    manifest["files"] = {}

    def engine(precision="fp32", graphs=False, fused=True):
        backend = TorchBackend(work, device, precision, graphs, MAX_BATCH)
        return Engine(work, manifest, "random-weights", Choice(backend if fused else HostCodes(backend)))

    return cfg, enc.to(device), dec.to(device), engine


def eager_swap(enc, dec, device):
    """The baseline: plain PyTorch eager fp32, numpy in and out."""
    def swap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            s, _, _ = enc(torch.from_numpy(a).to(device))
            _, mu, _ = enc(torch.from_numpy(b).to(device))
            return dec(s, mu).cpu().numpy()
    return swap


def optional_bundle_rows(work, batches, pool, reps, sync, notes):
    """ONNX Runtime CUDA and TensorRT rows, when their packages (and the exporter's) are installed."""
    rows = {}
    import importlib.util
    try:
        import onnxruntime as ort
        has_cuda_ep = "CUDAExecutionProvider" in ort.get_available_providers()
    except ImportError:
        has_cuda_ep = False
    want_trt = importlib.util.find_spec("tensorrt") is not None
    if not has_cuda_ep:
        notes.append("onnxruntime CUDA: skipped (onnxruntime has no CUDA provider here)")
    if not want_trt:
        notes.append("tensorrt: skipped (tensorrt is not installed)")
    if not (has_cuda_ep or want_trt):
        return rows
    if importlib.util.find_spec("onnxscript") is None:
        notes.append("onnxruntime CUDA / tensorrt: skipped (ONNX export needs onnxscript, not installed)")
        return rows
    from dvgan.export import export_bundle
    try:
        bundle = export_bundle(os.path.join(work, "model.pt"), os.path.join(work, "bundle"), fp16=True, trt="fp16" if want_trt else None,
                               max_batch=MAX_BATCH)
    except Exception as exc:
        notes.append(f"bundle export failed: {first_line(exc, 150)}")
        return rows
    variants = []
    if has_cuda_ep:
        variants += [("onnxruntime cuda fp32", "onnxruntime", "fp32"), ("onnxruntime cuda fp16", "onnxruntime", "fp16")]
    if want_trt:
        variants += [("tensorrt fp16 plan", "tensorrt", "auto")]
    for name, backend, precision in variants:
        try:
            eng = Engine.load(bundle, backend, "cuda", precision=precision)
            rows[name] = {b: b / timed(lambda: eng.swap(pool[:b], pool[b:2 * b]), reps, sync) for b in batches}
        except Exception as exc:
            notes.append(f"{name}: failed ({first_line(exc, 150)})")
    return rows


def topk_rows(device, n, dims, queries, reps, sync, notes):
    out = []
    problem = S.faiss_gpu_problem()
    notes.append(f"faiss-gpu: {'usable' if problem is None else 'skipped (' + problem + ')'}")
    for dim in dims:
        rng = np.random.default_rng(dim)
        gallery = torch.from_numpy(rng.standard_normal((n, dim), dtype=np.float32)).to(device)
        q = rng.standard_normal((queries, dim), dtype=np.float32)
        t = timed(lambda: S.torch_topk(gallery, q, 10), reps, sync)
        _, ids = S.torch_topk(gallery, q[:8], 10)
        _, want = S.numpy_topk(gallery.cpu().numpy(), q[:8], 10)
        out.append((dim, queries / t, float((ids == want).mean())))
        del gallery
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--quick", action="store_true", help="small batches and gallery (to check the script on a CPU)")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible to PyTorch (use --device cpu --quick to check the script)")
    gpu = device == "cuda"
    card = torch.cuda.get_device_name() if gpu else "cpu"
    sync = torch.cuda.synchronize if gpu else (lambda: None)
    batches = (1, 16, 64) if args.quick else (1, 4, 16, 64, 256, 1024, 4096)
    n_codes = 20_000 if args.quick else 1_000_000
    started = time.perf_counter()
    notes = []
    print(f"torch {torch.__version__}, device {card}", flush=True)
    with tempfile.TemporaryDirectory() as work:
        cfg, enc, dec, engine = make_model(work, device)
        pool = np.random.default_rng(0).uniform(-1, 1, (2 * max(batches), 3, cfg.image_size, cfg.image_size)) \
            .astype(np.float32)
        base = eager_swap(enc, dec, device)
        rows = {"torch eager fp32 (baseline)": {b: b / timed(lambda: base(pool[:b], pool[b:2 * b]), args.reps, sync)
                                                for b in batches}}
        print(rows, flush=True)
        variants = [("engine torch fp32, host codes", "fp32", False, False), ("engine torch fp32", "fp32", False, True),
                    ("engine torch bf16", "bf16", False, True)]
        if gpu:
            variants += [("engine torch fp16", "fp16", False, True),
                         ("engine torch fp16 + CUDA graphs", "fp16", True, True),
                         ("engine torch bf16 + CUDA graphs", "bf16", True, True)]
        ref = base(pool[:64], pool[64:128])
        for name, precision, graphs, fused in variants:
            try:
                eng = engine(precision, graphs, fused)
                err = float(np.abs(eng.swap(pool[:64], pool[64:128]) - ref).max())
                rows[name] = {b: b / timed(lambda: eng.swap(pool[:b], pool[b:2 * b]), args.reps, sync) for b in batches}
                notes.append(f"{name}: max |swap - fp32 eager| = {err:.2e} over 64 pairs")
            except Exception as exc:  # report the failure and carry on with the other rows
                notes.append(f"{name}: failed ({type(exc).__name__}: {first_line(exc, 150)})")
                traceback.print_exc()
            print(name, rows.get(name), flush=True)
        rows.update(optional_bundle_rows(work, batches, pool, args.reps, sync, notes))
    topk = topk_rows(device, n_codes, (64, 512), 1024 if not args.quick else 64, args.reps, sync, notes)

    base_row = rows["torch eager fp32 (baseline)"]
    engine_rows = [k for k in rows if k != "torch eager fp32 (baseline)"]
    best = {b: max(engine_rows, key=lambda k: rows[k].get(b, 0)) for b in batches}
    lines = [f"card: {card}   torch {torch.__version__}   total {time.perf_counter() - started:.0f} s",
             "", "swap images/s (sprites model 32x32x3, s 64, z 512; numpy in and out; median of "
             f"{args.reps})", f"{'variant':34}" + "".join(f"{b:>9}" for b in batches)]
    for name, r in rows.items():
        lines.append(f"{name:34}" + "".join(f"{r.get(b, float('nan')):9.0f}" for b in batches))
    lines.append(f"{'best engine / eager fp32':34}" + "".join(f"{rows[best[b]][b] / base_row[b]:8.1f}x" for b in batches))
    lines.append("best engine path per batch: " + ", ".join(f"{b}: {best[b]}" for b in batches))
    lines += ["", f"exact top-10 over {n_codes:,} codes on {device} (torch matmul + topk)"]
    for dim, qps, agree in topk:
        lines.append(f"  dim {dim:4d}: {qps:10.0f} queries/s   ids equal numpy brute force: {agree:.3f}")
    lines += [""] + notes
    table = "\n".join(lines)
    print("\n" + table)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_results.txt"), "w", encoding="utf-8") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
