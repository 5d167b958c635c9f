"""fp16 graphs with float32 inputs and outputs, for strongly typed TensorRT and half-precision runtimes.

TensorRT 11 has no FP16 builder flag: a network runs in the types its graph declares. So the fp16
variant is its own ONNX graph, made from the float32 one by onnxconverter-common's float16
conversion with keep_io_types (Cast nodes at the edges, so callers still feed and read float32).
Operators whose fp16 error is out of proportion stay float32 behind Casts: normalisation with its
small epsilon, exponentials and logarithms, and reductions.

(ModelOpt AutoCast, NVIDIA's documented route, gives the same precision split on these graphs,
but its ONNX extra brings onnxruntime-gpu, CuPy and a CUDA toolchain into what must stay a
CPU-installable package; the pure-Python converter needs none of it.)
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx

from ..errors import RuntimeFailure
from .onnx import decoder_inputs, run, sample_inputs, session

log = logging.getLogger(__name__)

IMAGE_TOLERANCE = 2e-2   # max |fp16 - fp32| on decoded images in [-1, 1]
CODE_MIN_COSINE = 0.999  # per-row cosine similarity of s, mu and logvar, fp16 against fp32
KEEP_FLOAT32 = ("BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization",
                "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "Softmax", "LogSoftmax",
                "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp")


def _converter():
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise RuntimeFailure("fp16 export needs the onnxconverter-common package, which is not installed "
                             "(pip install onnxconverter-common)") from None
    return float16


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """An fp16 copy of a float32 graph: float32 IO, KEEP_FLOAT32 operators left in float32."""
    float16 = _converter()
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(KEEP_FLOAT32))
    with warnings.catch_warnings():
        # The converter warns for each weight it clamps into fp16 range; the verification below judges the result.
        warnings.simplefilter("ignore", UserWarning)
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    for value in list(half.graph.input) + list(half.graph.output):
        if value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise RuntimeFailure(f"fp16 conversion changed the type of {value.name!r}; expected float32 IO")
    return half


def cosine_rows(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine similarity between matching rows (1.0 for two zero rows)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)
    cos = (a * b).sum(axis=1) / np.maximum(na * nb, 1e-300)
    cos[both_zero] = 1.0
    return float(cos.min())


def verify_fp16(fp32: dict[str, bytes], fp16: dict[str, bytes], cfg,
                image_tolerance: float = IMAGE_TOLERANCE, min_cosine: float = CODE_MIN_COSINE) -> dict:
    """Both fp16 graphs in ONNX Runtime (CPU) against the fp32 graphs on the same seeded inputs.

    fp32 and fp16 map "encoder"/"decoder" to serialized graphs. The decoder gets the fp32 encoder's
    codes (and prior samples), so each graph is judged on its own error. Raises RuntimeFailure on
    a cosine below min_cosine or an image error above image_tolerance; returns the measured numbers.
    """
    images = sample_inputs(cfg)
    ref_enc = run(session(fp32["encoder"]), {"image": images})
    got_enc = run(session(fp16["encoder"]), {"image": images})
    dec_in = decoder_inputs(ref_enc)
    ref_img = run(session(fp32["decoder"]), dec_in)["image"]
    got_img = run(session(fp16["decoder"]), dec_in)["image"]
    result = {"encoder": {}, "decoder": {}}
    for name, ref in ref_enc.items():
        got = got_enc[name]
        result["encoder"][name] = {"max_abs": float(np.abs(got - ref).max()), "min_cosine": cosine_rows(got, ref)}
    result["decoder"]["image"] = {"max_abs": float(np.abs(got_img - ref_img).max())}
    for name, m in result["encoder"].items():
        if not m["min_cosine"] >= min_cosine:
            raise RuntimeFailure(f"fp16 verification failed: encoder output {name!r} has cosine similarity "
                                 f"{m['min_cosine']:.6f} to fp32, under the {min_cosine} minimum")
    err = result["decoder"]["image"]["max_abs"]
    if not err <= image_tolerance:
        raise RuntimeFailure(f"fp16 verification failed: decoder images differ from fp32 by {err:.3g} "
                             f"(max abs), over the {image_tolerance:g} tolerance")
    log.info("fp16 ONNX matches fp32: image max abs error %.3g, code cosine >= %.6f", err,
             min(m["min_cosine"] for m in result["encoder"].values()))
    return {**result, "image_tolerance": image_tolerance, "min_cosine": min_cosine, "reference": "onnx-fp32",
            "runtime": "onnxruntime-cpu", "batch": int(len(images)), "converter": "onnxconverter-common",
            "kept_float32": list(KEEP_FLOAT32)}
