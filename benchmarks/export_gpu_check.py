"""GPU check of an exported bundle: fp32 and fp16 graphs in ONNX Runtime's CUDA provider against PyTorch on CUDA.

Exports a small random-weight checkpoint (or the RUN_DIR given) with fp16 graphs, then runs both
graphs with CUDAExecutionProvider (when onnxruntime has it) at batch 1 and 37 and prints max abs
errors against the PyTorch model on the GPU, and fp16 against fp32.

  python benchmarks/export_gpu_check.py [RUN_DIR|CHECKPOINT] [--out /tmp/gpu_bundle]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import time

import numpy as np
import onnxruntime as ort
import torch

from dvgan.config import ModelConfig, to_dict
from dvgan.export import export_bundle, load_manifest
from dvgan.export.fp16 import cosine_rows
from dvgan.export.onnx import decoder_inputs, sample_inputs
from dvgan.model import Decoder, Encoder
from dvgan.prior import gaussian
from dvgan.train.checkpoint import FORMAT, FORMAT_VERSION, build_models, load_checkpoint


def random_checkpoint(path: str) -> str:
    cfg = ModelConfig(image_size=64, channels=3, s_dim=64, z_dim=512, width=32)
    torch.manual_seed(0)
    enc, dec = Encoder(cfg), Decoder(cfg)
    with torch.no_grad():
        enc.train(), dec.train()
        s, mu, _ = enc(torch.rand(32, 3, 64, 64) * 2 - 1)
        dec(s, mu)
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": to_dict(cfg),
                "encoder": enc.state_dict(), "decoder": dec.state_dict(), "z_prior": gaussian(mu), "step": 0,
                "data": {}, "dvgan_version": "check", "torch_version": str(torch.__version__)}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?")
    ap.add_argument("--out", default="/tmp/gpu_bundle")
    args = ap.parse_args()
    print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
          torch.cuda.get_device_name() if torch.cuda.is_available() else "-")
    print("onnxruntime", ort.__version__, ort.get_available_providers())
    print("tensorrt installed:", importlib.util.find_spec("tensorrt") is not None)
    source = args.source or random_checkpoint("/tmp/gpu_check_ckpt.pt")
    started = time.perf_counter()
    bundle = export_bundle(source, args.out, fp16=True)
    print(f"export (CPU verification included): {time.perf_counter() - started:.1f} s")
    manifest = load_manifest(bundle)
    provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers() \
        else "CPUExecutionProvider"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    _, enc, dec = build_models(load_checkpoint(os.path.join(bundle, "model.pt"), bundle_weights=True), device=device)
    cfg = ModelConfig(image_size=manifest["image_size"], channels=manifest["channels"])
    sess = {name: ort.InferenceSession(os.path.join(bundle, name), providers=[provider])
            for name in ("encoder.onnx", "decoder.onnx", "encoder.fp16.onnx", "decoder.fp16.onnx")}
    print("provider", sess["encoder.onnx"].get_providers()[0])
    images = sample_inputs(cfg)
    for batch in (1, 37):
        x = images[:batch]
        with torch.no_grad():
            ref = [t.cpu().numpy() for t in enc(torch.from_numpy(x).to(device))]
        codes = dict(zip(("s", "mu", "logvar"), ref))
        feeds = {k: v[:batch] for k, v in decoder_inputs(codes).items()}
        with torch.no_grad():
            ref_img = dec(*(torch.from_numpy(feeds[k]).to(device) for k in ("s", "z"))).cpu().numpy()
        got32 = sess["encoder.onnx"].run(None, {"image": x})
        got16 = sess["encoder.fp16.onnx"].run(None, {"image": x})
        img32 = sess["decoder.onnx"].run(None, feeds)[0]
        img16 = sess["decoder.fp16.onnx"].run(None, feeds)[0]
        fp32_err = max(float(np.abs(a - b).max()) for a, b in zip(got32 + [img32], ref + [ref_img]))
        cos = min(cosine_rows(a, b) for a, b in zip(got16, got32))
        print(f"batch {batch:>2}: fp32 vs torch max abs {fp32_err:.3g}; fp16 vs fp32 image max abs "
              f"{float(np.abs(img16 - img32).max()):.3g}, code min cosine {cos:.7f}")


if __name__ == "__main__":
    main()
