"""Encoder and decoder as float32 ONNX graphs with a dynamic batch, checked against PyTorch.

The graphs come from torch's dynamo exporter with an example batch of 2 and an explicit dynamic
batch dimension "N" (an example batch of 1 would be specialised into the graph). Modules are
exported in eval mode, so BatchNorm uses its running statistics (and is mostly folded into the
convolutions). Opset 18 is the lowest the exporter emits natively: asking it for less runs a
version down-conversion that leaves opset-18 operators (Split with num_outputs) in an opset-17
graph, which ONNX Runtime then refuses.
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import torch

from ..errors import RuntimeFailure, UsageError, first_line

log = logging.getLogger(__name__)

MIN_OPSET = 18
EXAMPLE_BATCH = 2       # > 1, so the exporter keeps the batch dimension symbolic
CHECK_BATCHES = (1, 37)  # batch sizes ONNX Runtime runs after export, to prove the batch is dynamic
FP32_TOLERANCE = 1e-4   # max |ONNX Runtime - PyTorch| on any output


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


def check_opset(opset: int) -> int:
    top = max_opset()
    if not MIN_OPSET <= int(opset) <= top:
        raise UsageError(f"--opset {opset} is not supported: use {MIN_OPSET}..{top} "
                         f"(below {MIN_OPSET} torch's exporter writes graphs ONNX Runtime rejects)")
    return int(opset)


def _export(module: torch.nn.Module, args: tuple, arg_names: list[str], input_names: list[str],
            output_names: list[str], opset: int) -> onnx.ModelProto:
    batch = torch.export.Dim("N", min=1, max=1 << 16)
    dynamic = {name: {0: batch} for name in arg_names}
    # Without torchvision the exporter warns once per torchvision operator it cannot register; dvgan
    # uses none of them.
    # The exporter's own libraries log every graph pass at INFO; keep them to warnings while it runs.
    quiet = {"torch.onnx._internal.exporter._registration": logging.ERROR, "onnxscript": logging.WARNING,
             "onnx_ir": logging.WARNING}
    previous = {name: logging.getLogger(name).level for name in quiet}
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)
    try:
        with warnings.catch_warnings():
            # Inputs that share one batch dimension make the exporter note that they share a name.
            warnings.filterwarnings("ignore", message=r".*axis name: N will not be used.*")
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec.*")  # torch-internal
            program = torch.onnx.export(module, args, input_names=input_names, output_names=output_names,
                                        opset_version=opset, dynamo=True, dynamic_shapes=dynamic, verbose=False)
    except Exception as exc:  # the exporter raises many types; say which graph failed and why
        raise RuntimeFailure(f"ONNX export of the {type(module).__name__.lower()} failed: {first_line(exc, 300)}") from exc
    finally:
        for name, level in previous.items():
            logging.getLogger(name).setLevel(level)
    model = program.model_proto
    for value in list(model.graph.input) + list(model.graph.output):
        dim0 = value.type.tensor_type.shape.dim[0]
        if dim0.dim_value or not dim0.dim_param:
            raise RuntimeFailure(f"ONNX export froze the batch dimension of {value.name!r} to {dim0.dim_value}")
        dim0.dim_param = "N"
    return model


def export_encoder(encoder: torch.nn.Module, cfg, opset: int) -> onnx.ModelProto:
    """image float32 (N, C, H, W) in [-1, 1] -> s (N, s_dim), mu (N, z_dim), logvar (N, z_dim)."""
    example = torch.zeros(EXAMPLE_BATCH, cfg.channels, cfg.image_size, cfg.image_size)
    return _export(encoder.eval(), (example,), ["x"], ["image"], ["s", "mu", "logvar"], opset)


def export_decoder(decoder: torch.nn.Module, cfg, opset: int) -> onnx.ModelProto:
    """s (N, s_dim), z (N, z_dim) float32 -> image float32 (N, C, H, W) in [-1, 1]."""
    example = (torch.zeros(EXAMPLE_BATCH, cfg.s_dim), torch.zeros(EXAMPLE_BATCH, cfg.z_dim))
    return _export(decoder.eval(), example, ["s", "z"], ["s", "z"], ["image"], opset)


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    """Replace the graph's metadata_props with these string key/values."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    model.producer_name = "dvgan"
    return model


def check_model(model: onnx.ModelProto, name: str) -> None:
    """The ONNX checker with shape inference; a failure names the graph."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise RuntimeFailure(f"{name}: the ONNX checker rejected the exported graph ({first_line(exc, 300)})") from None


def serialize(model: onnx.ModelProto, name: str) -> bytes:
    """Serialized model bytes; refuses graphs too big for one protobuf rather than writing side files."""
    if model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        raise RuntimeFailure(f"{name}: the graph is over 2 GB and would need external-data files, "
                             "which a bundle does not hold")
    return model.SerializeToString()


def session(model_bytes: bytes, providers=("CPUExecutionProvider",)):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, sess_options=options, providers=list(providers))


def sample_inputs(cfg, batch: int = max(CHECK_BATCHES), seed: int = 0) -> np.ndarray:
    """Seeded images that look like data: smooth colour fields quantised to 8 bits, plus flat black and white.

    float32 (batch, C, H, W) on the uint8 grid mapped to [-1, 1], as preprocessing produces.
    """
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.uniform(0, 255, (batch, cfg.channels, 4, 4)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(cfg.image_size,) * 2, mode="bilinear",
                                             align_corners=False).numpy()
    noise = rng.normal(0, 12, smooth.shape)  # texture, edges
    pixels = np.clip(np.round(smooth + noise), 0, 255)
    pixels[0], pixels[-1] = 0, 255
    return (pixels / 127.5 - 1.0).astype(np.float32)


def decoder_inputs(encoder_outputs: dict, seed: int = 0) -> dict:
    """Codes the decoder sees in use: (s, mu) of encoded images for half, (s, z ~ N(0, I)) for the rest."""
    s, mu = encoder_outputs["s"], encoder_outputs["mu"]
    z = mu.copy()
    half = len(z) // 2
    z[half:] = np.random.default_rng(seed + 1).standard_normal(z[half:].shape).astype(np.float32)
    return {"s": s.astype(np.float32), "z": z.astype(np.float32)}


def run(sess, feeds: dict) -> dict:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def torch_outputs(encoder, decoder, images: np.ndarray) -> tuple[dict, dict, dict]:
    """PyTorch reference: (encoder outputs, decoder inputs, decoder outputs) as float32 numpy."""
    with torch.no_grad():
        s, mu, logvar = encoder.eval()(torch.from_numpy(images))
        enc = {"s": s.numpy(), "mu": mu.numpy(), "logvar": logvar.numpy()}
        dec_in = decoder_inputs(enc)
        image = decoder.eval()(torch.from_numpy(dec_in["s"]), torch.from_numpy(dec_in["z"]))
    return enc, dec_in, {"image": image.numpy()}


def verify_fp32(encoder_bytes: bytes, decoder_bytes: bytes, encoder, decoder, cfg,
                tolerance: float = FP32_TOLERANCE) -> dict:
    """ONNX Runtime (CPU) against PyTorch at each batch of CHECK_BATCHES; returns the max abs errors.

    Raises RuntimeFailure naming the output and the error when any is over tolerance.
    """
    images = sample_inputs(cfg)
    ref_enc, dec_in, ref_dec = torch_outputs(encoder, decoder, images)
    enc_sess, dec_sess = session(encoder_bytes), session(decoder_bytes)
    errors = {"encoder": {}, "decoder": {}}
    for batch in CHECK_BATCHES:
        got_enc = run(enc_sess, {"image": images[:batch]})
        got_dec = run(dec_sess, {k: v[:batch] for k, v in dec_in.items()})
        for graph, got, ref in (("encoder", got_enc, ref_enc), ("decoder", got_dec, ref_dec)):
            for name, value in got.items():
                if value.shape != ref[name][:batch].shape:
                    raise RuntimeFailure(f"verification failed: {graph} output {name!r} has shape {value.shape} "
                                         f"at batch {batch}, PyTorch gives {ref[name][:batch].shape}")
                err = float(np.abs(value - ref[name][:batch]).max())
                errors[graph][name] = max(errors[graph].get(name, 0.0), err)
    for graph, outs in errors.items():
        for name, err in outs.items():
            if not err <= tolerance:  # also catches NaN
                raise RuntimeFailure(f"verification failed: {graph} output {name!r} differs from PyTorch by "
                                     f"{err:.3g} (max abs, ONNX Runtime fp32), over the {tolerance:g} tolerance")
    log.info("fp32 ONNX matches PyTorch: max abs error %.3g (batches %s)",
             max(e for outs in errors.values() for e in outs.values()), ", ".join(map(str, CHECK_BATCHES)))
    return {**errors, "tolerance": tolerance, "batches": list(CHECK_BATCHES), "reference": "pytorch",
            "runtime": "onnxruntime-cpu"}
