"""TensorRT engines (plans) built from the bundle's ONNX graphs, TensorRT 10 and 11.

Networks are strongly typed (always so in TensorRT 11; the flag is set on 10), so a plan's
precision is the precision of the graph it was parsed from: encoder.fp16.onnx gives an fp16 plan,
encoder.onnx an fp32 one (with TF32 off where that flag exists). Each plan gets a JSON sidecar
naming the TensorRT version and GPU it was built for; ``plan_mismatch`` compares a sidecar with the
running machine (``machine_info``), so that the TensorRT backend refuses a plan built elsewhere and says why.
"""
from __future__ import annotations

import json
import logging
import os

import numpy as np

from ..errors import RuntimeFailure

log = logging.getLogger(__name__)

PLAN_FORMAT = "dvgan-trt-plan"
PLAN_FORMAT_VERSION = 1
PRECISIONS = ("fp16", "fp32")
SUPPORTED_MAJORS = (10, 11)
OPT_BATCH = 32  # the batch TensorRT tunes kernels for, within the profile's 1..max_batch
PLAN_FP32_TOLERANCE = 1e-3  # max abs error of an fp32 plan against ONNX Runtime fp32 (different kernels)


def require_tensorrt():
    """The tensorrt module, once the package and a CUDA GPU are both known to be there; else RuntimeFailure."""
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeFailure("--trt needs the tensorrt package, which is not installed "
                             "(pip install 'dvgan[trt]' on a machine with an NVIDIA GPU)") from None
    major = int(str(trt.__version__).split(".")[0])
    if major not in SUPPORTED_MAJORS:
        raise RuntimeFailure(f"TensorRT {trt.__version__} is not supported; dvgan builds plans with "
                             f"TensorRT {' or '.join(map(str, SUPPORTED_MAJORS))}")
    import torch
    if not torch.cuda.is_available():
        raise RuntimeFailure("--trt needs a CUDA GPU, and none is visible to this process")
    return trt


def gpu_info(device: int = 0) -> dict:
    import torch
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def machine_info(trt) -> dict:
    """What a plan is tied to, on this machine: the keys plan_mismatch compares."""
    return {"tensorrt_version": str(trt.__version__), **gpu_info()}


def default_timing_cache(tensorrt_version: str, gpu: dict) -> str:
    """A per-user timing cache, one per TensorRT version and GPU architecture, reused by every build."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    sm = gpu["compute_capability"].replace(".", "")
    return os.path.join(root, "dvgan", "tensorrt", f"timing-trt{tensorrt_version}-sm{sm}.cache")


def _capability(value) -> str:
    """A compute capability as "major.minor", from that string or a (major, minor) pair."""
    if isinstance(value, (list, tuple)):
        return ".".join(str(v) for v in value)
    return str(value)


def plan_mismatch(sidecar: dict, here: dict) -> str | None:
    """Why a plan cannot run here, or None if it can: the one rule the TensorRT backend applies.

    sidecar is a plan's JSON sidecar; here is machine_info() of the machine that wants to run it.
    A plan runs only with the exact TensorRT version that built it and on the GPU model it was built
    for: kernels were chosen by timing them on that model, so another model, even of the same compute
    capability, is refused too.
    """
    name = sidecar.get("plan", "plan")
    if sidecar.get("format") != PLAN_FORMAT:
        return f"{name}: sidecar is not a dvgan TensorRT plan description"
    built_trt = sidecar.get("tensorrt_version")
    if built_trt != here["tensorrt_version"]:
        return (f"{name} was built with TensorRT {built_trt}, this machine has TensorRT {here['tensorrt_version']}; "
                "rebuild it with dvgan-export --trt")
    built = (sidecar.get("gpu_name"), _capability(sidecar.get("compute_capability")))
    if built != (here["gpu_name"], _capability(here["compute_capability"])):
        return (f"{name} was built for {built[0]} (compute capability {built[1]}), this GPU is "
                f"{here['gpu_name']} (compute capability {_capability(here['compute_capability'])}); "
                "rebuild it with dvgan-export --trt")
    return None


def _load_timing_cache(config, path: str):
    data = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    if cache is None and data:
        log.warning("%s: timing cache unreadable by this TensorRT; starting a new one", path)
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config, path: str) -> None:
    from ..files import atomic_write
    cache = config.get_timing_cache()
    if cache is not None:
        data = bytes(memoryview(cache.serialize()))
        atomic_write(path, lambda f: f.write(data))


def build_plan(trt, onnx_path: str, plan_path: str, *, role: str, precision: str,
               inputs: dict[str, list[int]], max_batch: int, timing_cache: str) -> dict:
    """Parse onnx_path, build a plan with one profile (batch 1..max_batch), write plan_path; return its sidecar.

    inputs maps each input name to its shape without the batch dimension.
    """
    if precision not in PRECISIONS:
        raise RuntimeFailure(f"unknown TensorRT precision {precision!r}; use one of {PRECISIONS}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors)) or "no detail"
        raise RuntimeFailure(f"TensorRT could not parse {os.path.basename(onnx_path)}: {errors[:300]}")
    config = builder.create_builder_config()
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32 matmuls and convolutions
    opt = min(OPT_BATCH, max_batch)
    profile = builder.create_optimization_profile()
    shapes = {}
    for name, dims in inputs.items():
        shapes[name] = {"min": [1, *dims], "opt": [opt, *dims], "max": [max_batch, *dims]}
        profile.set_shape(name, *(tuple(shapes[name][k]) for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    _load_timing_cache(config, timing_cache)
    log.info("building %s (%s, batch 1..%d) with TensorRT %s", os.path.basename(plan_path), precision,
             max_batch, trt.__version__)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeFailure(f"TensorRT failed to build {os.path.basename(plan_path)} (see the log above)")
    with open(plan_path, "wb") as f:
        f.write(memoryview(plan))
    _save_timing_cache(config, timing_cache)
    return {"format": PLAN_FORMAT, "format_version": PLAN_FORMAT_VERSION, "plan": os.path.basename(plan_path),
            "role": role, "precision": precision, "onnx": os.path.basename(onnx_path),
            "tensorrt_version": trt.__version__, **gpu_info(), "profile": shapes,
            "strongly_typed": True}


def write_sidecar(path: str, sidecar: dict) -> str:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(sidecar, f, indent=2)
        f.write("\n")
    return path


def run_plan(trt, plan: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run a serialized plan once on CUDA buffers owned by torch; float32 numpy in and out."""
    import torch
    dtypes = {trt.float32: torch.float32, trt.float16: torch.float16}
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    if engine is None:
        raise RuntimeFailure("TensorRT could not deserialize the plan it just built")
    context = engine.create_execution_context()
    tensors, outputs = {}, []
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensors[name] = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
            context.set_input_shape(name, tuple(tensors[name].shape))
    for name in names:
        if engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
            shape = tuple(context.get_tensor_shape(name))
            tensors[name] = torch.empty(shape, dtype=dtypes[engine.get_tensor_dtype(name)], device="cuda")
            outputs.append(name)
    for name, t in tensors.items():
        context.set_tensor_address(name, t.data_ptr())
    stream = torch.cuda.Stream()
    torch.cuda.synchronize()
    if not context.execute_async_v3(stream.cuda_stream):
        raise RuntimeFailure("TensorRT failed to execute the plan")
    stream.synchronize()
    return {name: tensors[name].float().cpu().numpy() for name in outputs}


def verify_plans(trt, plans: dict[str, bytes], reference: dict, precision: str, max_batch: int) -> dict:
    """Each plan against ONNX Runtime fp32 outputs at batch 1 and min(37, max_batch).

    reference: {"encoder": (feeds, outputs), "decoder": (feeds, outputs)} from the fp32 graphs.
    fp16 plans are held to the fp16 graph's bounds; fp32 plans to PLAN_FP32_TOLERANCE.
    """
    from .fp16 import CODE_MIN_COSINE, IMAGE_TOLERANCE, cosine_rows
    result = {}
    for role, (feeds, expected) in reference.items():
        result[role] = {}
        for batch in sorted({1, min(len(next(iter(feeds.values()))), max_batch)}):
            got = run_plan(trt, plans[role], {k: v[:batch] for k, v in feeds.items()})
            for name, ref in expected.items():
                ref = ref[:batch]
                err = float(np.abs(got[name] - ref).max())
                entry = result[role].setdefault(name, {"max_abs": 0.0, "min_cosine": 1.0})
                entry["max_abs"] = max(entry["max_abs"], err)
                if role == "encoder":
                    entry["min_cosine"] = min(entry["min_cosine"], cosine_rows(got[name], ref))
    for role, outs in result.items():
        for name, m in outs.items():
            if precision == "fp32":
                bad = not m["max_abs"] <= PLAN_FP32_TOLERANCE
            elif role == "encoder":
                bad = not m["min_cosine"] >= CODE_MIN_COSINE
            else:
                bad = not m["max_abs"] <= IMAGE_TOLERANCE
            if bad:
                raise RuntimeFailure(f"TensorRT verification failed: {role}.plan output {name!r} "
                                     f"(max abs {m['max_abs']:.3g}, min cosine {m['min_cosine']:.6f}) "
                                     f"is outside the {precision} bounds against ONNX Runtime fp32")
    return {**result, "reference": "onnx-fp32", "precision": precision}
