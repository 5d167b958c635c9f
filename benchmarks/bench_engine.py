"""ONNX Runtime against PyTorch eager on this CPU: encode and decode images/s at one batch size, with
achieved GFLOP/s against the machine's measured fp32 matmul peak.

    python benchmarks/bench_engine.py [--batch 256] [--reps 5] [--models sprites32,sprites64]

Models have random weights (speed does not depend on them): "sprites32" is the sprites model at the
paper's size (32x32x3, s 64, z 512, width 32, conv5: the default recipe's until z went to 128 on
2026-11-30, kept so the recorded numbers reproduce); "sprites64" is the same at 64x64.
Both backends go through Engine.encode / Engine.decode; each number is the median of --reps timed
calls after one warm-up call, the backends' calls interleaved so that both see the same machine load;
the ratio is taken from the same run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

MODELS = {"sprites32": {"z_dim": 512}, "sprites64": {"image_size": 64, "z_dim": 512}}


def make_bundle(cfg, out: str, max_batch: int = 256) -> str:
    """A bundle of a randomly initialised model of this config, made by dvgan's exporter."""
    from dvgan.config import to_dict
    from dvgan.export import export_bundle
    from dvgan.model import Decoder, Encoder
    from dvgan.train.checkpoint import save_checkpoint
    torch.manual_seed(0)
    ckpt = os.path.join(out, "checkpoint.pt")
    save_checkpoint(ckpt, {"model_config": to_dict(cfg), "encoder": Encoder(cfg).state_dict(),
                           "decoder": Decoder(cfg).state_dict(), "step": 0,
                           "z_prior": {"mean": torch.zeros(cfg.z_dim), "scale": torch.eye(cfg.z_dim)}})
    return export_bundle(ckpt, os.path.join(out, "bundle"), max_batch=max_batch)


def median_time(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(reps: int = 5, n: int = 2048) -> float:
    """Measured fp32 GFLOP/s of a square torch matmul (torch's thread count), median of reps."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / median_time(lambda: a @ b, reps) / 1e9


def flops(cfg, batch: int) -> tuple[float, float]:
    """Multiply-adds x 2 of one encode and one decode call at this batch (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    from dvgan.model import Decoder, Encoder
    enc, dec = Encoder(cfg).eval(), Decoder(cfg).eval()
    out = []
    with torch.no_grad():
        for fn in (lambda: enc(torch.zeros(batch, cfg.channels, cfg.image_size, cfg.image_size)),
                   lambda: dec(torch.zeros(batch, cfg.s_dim), torch.zeros(batch, cfg.z_dim))):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out.append(counter.get_total_flops())
    return out[0], out[1]


def bench_model(name: str, batch: int, reps: int, workdir: str) -> list[dict]:
    from dvgan.config import ModelConfig
    from dvgan.engine import Engine
    cfg = ModelConfig(**MODELS[name])
    bundle = make_bundle(cfg, os.path.join(workdir, name))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (batch, cfg.channels, cfg.image_size, cfg.image_size)).astype(np.float32)
    s = rng.standard_normal((batch, cfg.s_dim), dtype=np.float32)
    z = rng.standard_normal((batch, cfg.z_dim), dtype=np.float32)
    f_enc, f_dec = flops(cfg, batch)
    engines = {b: Engine.load(bundle, b, "cpu") for b in ("torch", "onnxruntime")}
    times = {b: {"enc": [], "dec": []} for b in engines}
    for eng in engines.values():  # warm-up
        eng.encode(x), eng.decode(s, z)
    for _ in range(reps):  # interleaved, so both backends see the same machine load
        for b, eng in engines.items():
            t0 = time.perf_counter()
            eng.encode(x)
            t1 = time.perf_counter()
            eng.decode(s, z)
            times[b]["enc"].append(t1 - t0)
            times[b]["dec"].append(time.perf_counter() - t1)
    rows = []
    for b in engines:
        t_enc, t_dec = statistics.median(times[b]["enc"]), statistics.median(times[b]["dec"])
        rows.append({"model": name, "backend": b, "enc_ips": batch / t_enc, "dec_ips": batch / t_dec,
                     "enc_gflops": f_enc / t_enc / 1e9, "dec_gflops": f_dec / t_dec / 1e9})
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--models", default="sprites32,sprites64")
    args = p.parse_args()
    threads = torch.get_num_threads()
    peak = matmul_peak(args.reps)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.models.split(","):
            rows += bench_model(name, args.batch, args.reps, work)
    print(f"cpu threads (torch) {threads}; fp32 matmul peak (torch 2048^3) {peak:.1f} GFLOP/s; "
          f"batch {args.batch}; median of {args.reps}")
    print(f"{'model':10} {'backend':12} {'encode img/s':>13} {'decode img/s':>13} {'enc GFLOP/s':>12} "
          f"{'dec GFLOP/s':>12} {'enc %peak':>9} {'dec %peak':>9}")
    for r in rows:
        print(f"{r['model']:10} {r['backend']:12} {r['enc_ips']:13.0f} {r['dec_ips']:13.0f} {r['enc_gflops']:12.1f} "
              f"{r['dec_gflops']:12.1f} {100 * r['enc_gflops'] / peak:8.0f}% {100 * r['dec_gflops'] / peak:8.0f}%")
    for name in dict.fromkeys(r["model"] for r in rows):
        t, o = [r for r in rows if r["model"] == name and r["backend"] == "torch"][0], \
            [r for r in rows if r["model"] == name and r["backend"] == "onnxruntime"][0]
        print(f"{name}: onnxruntime / torch eager  encode {o['enc_ips'] / t['enc_ips']:.2f}x  "
              f"decode {o['dec_ips'] / t['dec_ips']:.2f}x")


if __name__ == "__main__":
    main()
