"""The model's operations, written once: swap, conditional sampling and interpolation (the
reparameterised draw of z is model.reparameterize).

Torch only. ``encoder(x) -> (s, mu, logvar)`` and ``decoder(s, z) -> images`` are the modules of
dvgan/model.py, or anything called the same way (the torch backend's CUDA graphs). Images are float
(N, C, H, W) in [-1, 1]. The caller puts the modules in eval mode and turns gradients off
(``evaluating`` does both, and puts modules that were training back as they were).

The engine's torch backend, evaluation and training's swap previews call these. The engine's
ONNX Runtime and TensorRT backends run without torch, so Engine itself swaps, samples and
interpolates on numpy arrays with the backend's encode and decode.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from .prior import draw

# Rows per encoder or decoder call when the caller names none; the torch backend's SWAP_CHUNK says
# why it is this size there.
CHUNK = 1024


@contextlib.contextmanager
def evaluating(*modules):
    """Inside: the modules in eval mode (BatchNorm running statistics) and no gradients; afterwards
    each module is back in the mode it had."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in zip(modules, was):
            m.train(training)


def encode_part(encoder, x: torch.Tensor, which: int, chunk: int = CHUNK) -> torch.Tensor:
    """One encoder output (0: s, 1: mu, 2: logvar) of x, computed chunk rows at a time."""
    parts = [encoder(x[a:a + chunk])[which] for a in range(0, len(x), chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def recombine_chunks(encoder, decoder, x_s: torch.Tensor, s_rows: torch.Tensor, z_rows: torch.Tensor, *,
                     x_z: torch.Tensor | None = None, z: torch.Tensor | None = None, chunk: int = CHUNK):
    """Dec(s(x_s)[s_rows], u[z_rows]) with u = mu(x_z), or u = z when z is given, chunk rows per call.

    x_s, x_z (N, C, H, W); s_rows, z_rows: int64 row indices of equal length L, on the images' device;
    z (K, z_dim). Yields (start, end, images (end - start, C, H, W)) for consecutive rows, so that a
    caller can move finished images off the device while the rest are decoded. Every code is
    computed once, whatever the number of rows that use it.
    """
    s = encode_part(encoder, x_s, 0, chunk)
    u = encode_part(encoder, x_z, 1, chunk) if x_z is not None else z
    for a in range(0, len(s_rows), chunk):
        b = min(a + chunk, len(s_rows))
        yield a, b, decoder(s[s_rows[a:b]], u[z_rows[a:b]])


def recombine(encoder, decoder, x_s, s_rows, z_rows, *, x_z=None, z=None, chunk: int = CHUNK) -> torch.Tensor:
    """recombine_chunks gathered into one tensor (L, C, H, W)."""
    parts = [images for _, _, images in
             recombine_chunks(encoder, decoder, x_s, s_rows, z_rows, x_z=x_z, z=z, chunk=chunk)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _rows(index: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.asarray(index, np.int64)).to(like.device)


def swap(encoder, decoder, x_s: torch.Tensor, x_z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Pairwise Dec(s of x_s[i], mu of x_z[i]): x_s, x_z (N, C, H, W) -> (N, C, H, W)."""
    rows = _rows(np.arange(len(x_s)), x_s)
    return recombine(encoder, decoder, x_s, rows, rows, x_z=x_z, chunk=chunk)


def swap_grid(encoder, decoder, x_s: torch.Tensor, x_z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Every pair, the paper's Fig. 2a: x_s (M, ...), x_z (N, ...) -> (N, M, C, H, W), cell [i, j] =
    Dec(s_j, mu_i) (rows keep a z, columns keep an s)."""
    m, n = len(x_s), len(x_z)
    out = recombine(encoder, decoder, x_s, _rows(np.tile(np.arange(m), n), x_s),
                    _rows(np.repeat(np.arange(n), m), x_s), x_z=x_z, chunk=chunk)
    return out.view(n, m, *out.shape[1:])


def draw_z(prior, n: int, z_dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws of z, float32 (n, z_dim), from prior (dvgan/prior.py: the Gaussian fitted to the training
    codes; None: the paper's N(0, I)), with eps ~ N(0, I) from generator."""
    eps = torch.randn(n, z_dim, generator=generator)
    return torch.from_numpy(draw(prior, eps.numpy()))


def sample(encoder, decoder, x: torch.Tensor, z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Pairwise conditional samples Dec(s of x[i], z[i]): x (N, C, H, W), z (N, z_dim) -> (N, C, H, W)."""
    rows = _rows(np.arange(len(x)), x)
    return recombine(encoder, decoder, x, rows, rows, z=z, chunk=chunk)


def sample_grid(encoder, decoder, x: torch.Tensor, z: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """Every image with every z: x (M, ...), z (K, z_dim) -> (M, K, C, H, W), cell [i, k] = Dec(s_i, z_k)."""
    m, k = len(x), len(z)
    out = recombine(encoder, decoder, x, _rows(np.repeat(np.arange(m), k), x),
                    _rows(np.tile(np.arange(k), m), x), z=z, chunk=chunk)
    return out.view(m, k, *out.shape[1:])


def interpolate(encoder, decoder, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
    """The paper's Fig. 2b: x_a, x_b (1, C, H, W) -> (steps, steps, C, H, W); row i keeps
    z = lerp(mu_a, mu_b, t_i), column j keeps s = lerp(s_a, s_b, t_j), t = linspace(0, 1, steps).
    The corners reconstruct a and b."""
    s, mu, _ = encoder(torch.cat([x_a, x_b]))
    t = torch.linspace(0, 1, steps, device=s.device)[:, None]
    s_path, mu_path = s[0] + t * (s[1] - s[0]), mu[0] + t * (mu[1] - mu[0])  # (steps, dim)
    out = decoder(s_path.repeat(steps, 1), mu_path.repeat_interleave(steps, 0))  # row i = mu_path[i]
    return out.view(steps, steps, *out.shape[1:])


__all__ = ["CHUNK", "evaluating", "encode_part", "recombine_chunks", "recombine", "swap",
           "swap_grid", "draw_z", "sample", "sample_grid", "interpolate"]
