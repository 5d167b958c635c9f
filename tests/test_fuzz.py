"""Property-based tests of preprocessing and the query path, and a seeded fuzz of image decoding.

The fuzz feeds open_image (and the conversion after it) random byte strings and mutations of valid
PNG, JPEG, GIF, BMP, TIFF and WebP files; every input must either decode or raise ImageError.
"""
from __future__ import annotations

import io
import logging
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dvgan.data import preprocess
from dvgan.data.preprocess import ImageError, image_to_uint8, open_image
from dvgan.engine.inputs import to_batch
from dvgan.errors import InputError, UsageError

log = logging.getLogger(__name__)

FUZZ_INPUTS = 20_000
FUZZ_SEED = 20261127
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- preprocessing ---------------------------------------------------------------------------------------

@PROPERTY
@given(h=st.integers(1, 300), w=st.integers(1, 300), c=st.sampled_from([0, 1, 3, 4]),
       size=st.sampled_from([8, 16, 32, 64]), channels=st.sampled_from([1, 3]), seed=st.integers(0, 2**32 - 1))
def test_any_uint8_image_becomes_float_in_range(h, w, c, size, channels, seed):
    """Any uint8 (H, W) or (H, W, C) with C in 1, 3, 4 -> float32 (1, channels, size, size) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w) if c == 0 else (h, w, c), dtype=np.uint8)
    x = to_batch(arr, size, channels)
    assert x.dtype == np.float32 and x.shape == (1, channels, size, size)
    assert np.isfinite(x).all() and x.min() >= -1.0 and x.max() <= 1.0
    # the same image as a PNG file's bytes gives the same result (one preprocessing path)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if c == 1 else arr).save(buf, format="PNG")
    np.testing.assert_array_equal(to_batch(buf.getvalue(), size, channels), x)


@PROPERTY
@given(n=st.integers(1, 4), channels=st.sampled_from([1, 3]), seed=st.integers(0, 2**32 - 1),
       bad=st.sampled_from([np.nan, np.inf, -np.inf]), dtype=st.sampled_from([np.float16, np.float32, np.float64]))
def test_non_finite_float_images_are_refused(n, channels, seed, bad, dtype):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, channels, 16, 16)).astype(dtype)
    assert np.array_equal(to_batch(x, 16, channels), x.astype(np.float32))  # in-range floats pass unchanged
    x[tuple(rng.integers(0, d) for d in x.shape)] = bad
    with pytest.raises(InputError, match="NaN or infinity"):
        to_batch(x, 16, channels)


@PROPERTY
@given(shape=st.one_of(st.lists(st.integers(0, 5), min_size=1, max_size=5),
                       st.tuples(st.integers(0, 3), st.sampled_from([1, 3]), st.integers(3, 5), st.integers(3, 5)).map(list)),
       seed=st.integers(0, 100))
def test_float_arrays_of_other_shapes_are_refused_clearly(shape, seed):
    x = np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)
    if len(shape) in (3, 4) and tuple(shape[-3:]) == (3, 4, 4):
        assert to_batch(x, 4, 3).shape == ((1,) if len(shape) == 3 else (shape[0],)) + (3, 4, 4)
    else:
        with pytest.raises(InputError):
            to_batch(x, 4, 3)


# -- the query path --------------------------------------------------------------------------------------

def make_index(n: int, s_dim: int, z_dim: int, seed: int):
    from dvgan.engine.index import CodeIndex
    rng = np.random.default_rng(seed)
    index = CodeIndex.create("f" * 64, s_dim, z_dim, device="cpu")
    s, mu = rng.standard_normal((n, s_dim)), rng.standard_normal((n, z_dim))
    index.add_codes(s, mu, [f"{i}.png" for i in range(n)])
    return index, {"specified": s.astype(np.float32), "unspecified": mu.astype(np.float32)}


@PROPERTY
@given(n=st.integers(1, 40), dims=st.tuples(st.integers(1, 16), st.integers(1, 16)), q=st.integers(1, 5),
       by=st.sampled_from(["specified", "unspecified"]), data=st.data(), seed=st.integers(0, 1000))
def test_search_in_range_matches_brute_force(n, dims, q, by, data, seed):
    index, codes = make_index(n, *dims, seed)
    k = data.draw(st.integers(1, n), label="k")
    queries = np.random.default_rng(seed + 1).standard_normal((q, codes[by].shape[1])).astype(np.float32)
    dist, ids = index.search(by, queries, k)
    assert dist.shape == ids.shape == (q, k) and ids.min() >= 0 and ids.max() < n
    assert (np.diff(dist, axis=1) >= -1e-5).all()
    exact = ((queries[:, None, :] - codes[by][None]) ** 2).sum(-1)  # (Q, N)
    np.testing.assert_allclose(dist, np.sort(exact, axis=1)[:, :k], rtol=1e-4, atol=1e-4)


@PROPERTY
@given(n=st.integers(1, 30), k=st.integers(-5, 80), seed=st.integers(0, 1000))
def test_search_out_of_range_k_is_a_usage_error(n, k, seed):
    index, codes = make_index(n, 4, 6, seed)
    if 1 <= k <= n:
        assert index.search("specified", codes["specified"][:2], k)[1].shape == (min(2, n), k)
        return
    with pytest.raises(UsageError, match="k must be >= 1" if k < 1 else "larger than the gallery"):
        index.search("specified", codes["specified"][:1], k)


@PROPERTY
@given(n=st.integers(2, 20), seed=st.integers(0, 1000), bad=st.sampled_from([np.nan, np.inf]))
def test_non_finite_queries_are_refused(n, seed, bad):
    index, codes = make_index(n, 4, 6, seed)
    q = codes["unspecified"][:1].copy()
    q[0, seed % 6] = bad
    with pytest.raises(InputError, match="NaN or infinity"):
        index.search("unspecified", q, 1)


# -- fuzzing image decoding ------------------------------------------------------------------------------

def seeds() -> dict[str, bytes]:
    """Small valid files of each format (and a grey and a palette PNG) to mutate."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    out = {}
    for fmt in FORMATS:
        buf = io.BytesIO()
        rgb.save(buf, format=fmt)
        out[fmt] = buf.getvalue()
    for mode in ("L", "P", "RGBA", "I;16"):
        buf = io.BytesIO()
        (rgb.convert(mode) if mode != "I;16" else Image.fromarray(rng.integers(0, 65535, (7, 9), dtype=np.uint16))
         ).save(buf, format="PNG")
        out["PNG-" + mode] = buf.getvalue()
    return out


def mutate(data: bytes, rng: np.random.Generator, pool: list[bytes]) -> bytes:
    """One of: truncation, bit flips, byte overwrites, insertion, deletion, a header spliced onto another body."""
    b = bytearray(data)
    if len(b) < 2:
        return bytes(b) + rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
    kind = int(rng.integers(6))
    if kind == 0:
        return bytes(b[:int(rng.integers(0, len(b)))])
    if kind == 1:
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if kind == 2:
        for _ in range(int(rng.integers(1, 5))):
            i = int(rng.integers(len(b)))
            b[i] = int(rng.choice([0, 0xFF, 0x7F, 0x80, int(rng.integers(256))]))
        return bytes(b)
    if kind == 3:
        i = int(rng.integers(len(b) + 1))
        return bytes(b[:i] + rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes() + b[i:])
    if kind == 4:
        i = int(rng.integers(len(b)))
        return bytes(b[:i] + b[i + int(rng.integers(1, 32)):])
    other = pool[int(rng.integers(len(pool)))]
    cut, cut2 = int(rng.integers(1, min(64, len(b)) + 1)), int(rng.integers(0, min(64, len(other)) + 1))
    return bytes(b[:cut] + other[cut2:])


def test_fuzz_image_decoding(monkeypatch):
    """FUZZ_INPUTS random and mutated byte strings: each decodes or raises ImageError, nothing else."""
    # A mutated header may claim any size; a 1 Mpx cap keeps each decode small (the limit has its own test).
    monkeypatch.setattr(preprocess, "MAX_PIXELS", 1 << 20)
    rng = np.random.default_rng(FUZZ_SEED)
    pool = list(seeds().values())
    magic = [p[:8] for p in pool]
    counts = {"decoded": 0, "ImageError": 0}
    failures = []
    started = time.perf_counter()
    for i in range(FUZZ_INPUTS):
        r = i % 10
        if r == 0:   # random bytes
            data = rng.integers(0, 256, int(rng.integers(0, 512)), dtype=np.uint8).tobytes()
        elif r == 1:  # random bytes behind a real format's magic number
            data = magic[int(rng.integers(len(magic)))] + rng.integers(0, 256, int(rng.integers(0, 512)),
                                                                       dtype=np.uint8).tobytes()
        else:
            data = pool[int(rng.integers(len(pool)))]
            for _ in range(int(rng.integers(1, 4))):
                data = mutate(data, rng, pool)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about some damaged files; errors are what count
                im = open_image(data)
                image_to_uint8(im, 8, 3)
                image_to_uint8(im, 8, 1)
            counts["decoded"] += 1
        except ImageError:
            counts["ImageError"] += 1
        except Exception as exc:  # anything but the clear error fails the test, with the input to reproduce it
            failures.append((i, type(exc).__name__, str(exc)[:120], data[:16].hex()))
    log.info("fuzzed %d inputs in %.1f s: %s", FUZZ_INPUTS, time.perf_counter() - started, counts)
    assert not failures, f"{len(failures)} inputs raised other errors, e.g. {failures[:5]}"
    assert counts["decoded"] > 100 and counts["ImageError"] > 1000, counts  # both outcomes were exercised
