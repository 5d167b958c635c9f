"""Export: ONNX parity with PyTorch, fp16 parity with fp32, dynamic batch, manifest checks, clear errors."""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from dvgan.cli.export import info as info_cli
from dvgan.cli.export import main as export_cli
from dvgan.config import ModelConfig, to_dict
from dvgan.errors import InputError, RuntimeFailure, UsageError
from dvgan.export import bundle_digest, export_bundle, load_manifest
from dvgan.export import bundle as bundle_mod
from dvgan.export import onnx as onnx_mod
from dvgan.export.fp16 import cosine_rows
from dvgan.export.manifest import read_onnx_metadata
from dvgan.export.tensorrt import plan_mismatch
from dvgan.model import Decoder, Encoder
from dvgan.prior import gaussian
from dvgan.train.checkpoint import FORMAT, FORMAT_VERSION, build_models, load_checkpoint

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def make_checkpoint(path, seed=0, **overrides) -> str:
    """A checkpoint file with random weights and non-trivial BatchNorm statistics."""
    cfg = ModelConfig(**{"image_size": 32, "channels": 3, "s_dim": 8, "z_dim": 6, "width": 8, "adv_width": 8,
                         **overrides}).validate()
    torch.manual_seed(seed)
    enc, dec = Encoder(cfg), Decoder(cfg)
    for m in list(enc.modules()) + list(dec.modules()):
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    with torch.no_grad():  # train-mode passes move the running statistics away from (0, 1)
        enc.train(), dec.train()
        for _ in range(3):
            x = torch.rand(16, cfg.channels, cfg.image_size, cfg.image_size) * 1.6 - 0.9
            s, mu, _ = enc(x)
            dec(s, mu)
    state = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_config": to_dict(cfg),
             "encoder": enc.state_dict(), "decoder": dec.state_dict(), "z_prior": gaussian(mu), "step": 7,
             "data": {"spec": "sprites:3", "image_size": cfg.image_size, "channels": cfg.channels},
             "dvgan_version": "test", "torch_version": str(torch.__version__)}
    torch.save(state, path)
    return str(path)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint.pt")


@pytest.fixture(scope="session")
def bundle(tmp_path_factory, checkpoint):
    return export_bundle(checkpoint, str(tmp_path_factory.mktemp("export") / "bundle"), fp16=True)


def copy_bundle(src, dst) -> str:
    import shutil
    shutil.copytree(src, dst)
    return str(dst)


def session(path):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def leftovers(folder, name):
    return [f for f in os.listdir(folder) if f.startswith("." + name + ".")]


# -- parity ---------------------------------------------------------------------------------------------

def test_bundle_files_and_manifest(bundle, checkpoint):
    m = load_manifest(bundle)
    assert set(m["files"]) == {"encoder.onnx", "decoder.onnx", "encoder.fp16.onnx", "decoder.fp16.onnx", "model.pt",
                               "z_prior.npz"}
    assert sorted(os.listdir(bundle)) == sorted([*m["files"], "manifest.json"])  # no external-data side files
    assert m["io"]["encoder"]["inputs"]["image"] == ["N", 3, 32, 32]
    assert m["io"]["decoder"]["outputs"]["image"] == ["N", 3, 32, 32]
    assert m["io"]["encoder"]["outputs"]["mu"] == ["N", 6]
    assert m["preprocess"] == {"mode": "RGB", "resize": "bilinear", "value_range": [-1, 1]}
    assert m["source"]["step"] == 7 and m["opset"] == 18 and m["max_batch"] == 256
    assert set(m["versions"]) == {"dvgan", "torch", "onnx", "onnxruntime"}
    assert m["files"]["encoder.fp16.onnx"]["precision"] == "fp16"
    assert m["verification"]["fp32"]["encoder"]["mu"] <= 1e-4
    assert m["verification"]["fp16"]["decoder"]["image"]["max_abs"] <= 2e-2
    assert len(bundle_digest(bundle)) == 64


def test_fp32_matches_pytorch_at_batch_1_and_37(bundle):
    """Independent of the exporter's own check: model.pt in PyTorch against the ONNX files."""
    cfg, enc, dec = build_models(load_checkpoint(os.path.join(bundle, "model.pt"), bundle_weights=True))
    enc_s, dec_s = session(os.path.join(bundle, "encoder.onnx")), session(os.path.join(bundle, "decoder.onnx"))
    rng = np.random.default_rng(3)
    for batch in (1, 37):
        x = rng.uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32)
        s, mu, logvar = enc_s.run(["s", "mu", "logvar"], {"image": x})
        z = rng.standard_normal((batch, cfg.z_dim)).astype(np.float32)
        (image,) = dec_s.run(["image"], {"s": s, "z": z})
        with torch.no_grad():
            ref = enc(torch.from_numpy(x))
            ref_img = dec(torch.from_numpy(s), torch.from_numpy(z)).numpy()
        assert s.shape == (batch, 8) and image.shape == (batch, 3, 32, 32)
        for got, want in zip((s, mu, logvar), ref):
            assert np.abs(got - want.numpy()).max() <= 1e-4
        assert np.abs(image - ref_img).max() <= 1e-4
        assert np.abs(image).max() <= 1.0


def test_fp16_graphs_match_fp32(bundle):
    x = onnx_mod.sample_inputs(ModelConfig(image_size=32, channels=3), batch=20, seed=5)
    codes32 = session(os.path.join(bundle, "encoder.onnx")).run(None, {"image": x})
    codes16 = session(os.path.join(bundle, "encoder.fp16.onnx")).run(None, {"image": x})
    for a, b in zip(codes32, codes16):
        assert b.dtype == np.float32 and cosine_rows(a, b) >= 0.999
    feeds = {"s": codes32[0], "z": codes32[1]}
    img32 = session(os.path.join(bundle, "decoder.onnx")).run(None, feeds)[0]
    img16 = session(os.path.join(bundle, "decoder.fp16.onnx")).run(None, feeds)[0]
    assert img16.dtype == np.float32 and np.abs(img32 - img16).max() <= 2e-2
    half = onnx.load(os.path.join(bundle, "decoder.fp16.onnx"))
    types = {i.data_type for i in half.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types  # really converted, not a copy
    bn = [n for n in half.graph.node if n.op_type == "BatchNormalization"]
    assert bn, "decoder keeps its first BatchNorm unfused"
    produced_by = {o: n for n in half.graph.node for o in n.output}
    assert all(produced_by[n.input[0]].op_type == "Cast" for n in bn)  # kept in float32 behind a Cast


def test_graphs_have_dynamic_batch_and_metadata(bundle):
    m = load_manifest(bundle)
    for name in ("encoder.onnx", "decoder.fp16.onnx"):
        model = onnx.load(os.path.join(bundle, name))
        for v in list(model.graph.input) + list(model.graph.output):
            dim = v.type.tensor_type.shape.dim[0]
            assert dim.dim_param == "N" and not dim.dim_value
        meta = read_onnx_metadata(model.metadata_props)
        assert meta["model_config"] == m["model_config"] and meta["io"] == m["io"]
        assert meta["preprocess"] == m["preprocess"] and meta["opset"] == 18
    half = onnx.load(os.path.join(bundle, "decoder.fp16.onnx"))
    assert read_onnx_metadata(half.metadata_props)["precision"] == "fp16"


@pytest.mark.parametrize("size,channels,trunk,z_trunk", [(32, 1, "conv3", False), (64, 3, "conv3", False),
                                                         (64, 1, "conv5", False), (32, 1, "conv5", True)])
def test_variants_export_and_verify(tmp_path, size, channels, trunk, z_trunk):
    ckpt = make_checkpoint(tmp_path / "c.pt", seed=1, image_size=size, channels=channels, trunk=trunk, z_trunk=z_trunk)
    out = export_bundle(ckpt, str(tmp_path / "b"), fp16=True, max_batch=64)
    m = load_manifest(out)
    assert m["io"]["encoder"]["inputs"]["image"] == ["N", channels, size, size]
    assert m["preprocess"]["mode"] == ("L" if channels == 1 else "RGB")
    assert max(m["verification"]["fp32"]["decoder"].values()) <= 1e-4
    assert min(v["min_cosine"] for v in m["verification"]["fp16"]["encoder"].values()) >= 0.999
    x = np.zeros((37, channels, size, size), np.float32)
    assert session(os.path.join(out, "encoder.fp16.onnx")).run(["s"], {"image": x})[0].shape == (37, 8)


def test_a_decoder_wider_than_the_encoder_exports_verifies_and_is_named_by_info(tmp_path):
    out = export_bundle(make_checkpoint(tmp_path / "c.pt", seed=2, dec_width=16), str(tmp_path / "b"))
    m = load_manifest(out)
    assert m["model_config"]["width"] == 8 and m["model_config"]["dec_width"] == 16
    assert max(m["verification"]["fp32"]["decoder"].values()) <= 1e-4
    result = CliRunner().invoke(info_cli, [out])
    assert result.exit_code == 0 and "conv5 trunk, width 8, decoder width 16, s_dim 8, z_dim 6" in result.output


def test_export_from_a_training_run_folder(tmp_path, monkeypatch):
    from dvgan.config import TrainConfig
    monkeypatch.setenv("DVGAN_HOME", str(tmp_path / "home"))
    from dvgan.train.loop import train
    run = str(tmp_path / "run")
    train(ModelConfig(image_size=32, channels=3, s_dim=8, z_dim=8, width=8, adv_width=8),
          TrainConfig(steps=2, batch_size=4, sample_every=0), {"spec": "sprites:3"}, run, device="cpu",
          progress=False)
    out = export_bundle(run)  # the default place: $DVGAN_HOME/bundle, where the engine looks
    assert out == os.path.join(str(tmp_path / "home"), "bundle")
    m = load_manifest(out)
    assert m["source"]["step"] == 2 and "encoder.fp16.onnx" not in m["files"]
    # the run's sampling prior travels with the bundle, byte for byte the checkpoint's
    fitted = load_checkpoint(run)["z_prior"]
    assert m["files"]["z_prior.npz"]["kind"] == "npz" and m["z_prior"]["file"] == "z_prior.npz"
    assert m["z_prior"]["n_images"] == fitted["n_images"]
    with np.load(os.path.join(out, "z_prior.npz")) as f:
        np.testing.assert_array_equal(f["mean"], fitted["mean"].numpy())
        np.testing.assert_array_equal(f["scale"], fitted["scale"].numpy())
    from dvgan.engine import Engine
    loaded = Engine.load(out, "onnxruntime", "cpu").z_prior  # what sample draws from
    np.testing.assert_array_equal(loaded["mean"], fitted["mean"].numpy())
    np.testing.assert_array_equal(loaded["scale"], fitted["scale"].numpy())


# -- tampering and the manifest contract -----------------------------------------------------------------

def test_tampered_file_detected_by_info_and_by_loading(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    path = os.path.join(b, "decoder.onnx")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(InputError, match="decoder.onnx.*sha256"):
        load_manifest(b)
    load_manifest(b, verify=False)  # same size: only the checksum can tell
    result = CliRunner().invoke(info_cli, [b])
    assert result.exit_code == 1 and "decoder.onnx" in result.output and "Traceback" not in result.output
    ok = CliRunner().invoke(info_cli, [bundle])
    assert ok.exit_code == 0 and "sha256 verified" in ok.output and "encoder.fp16.onnx" in ok.output


def test_truncated_and_missing_files(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    with open(os.path.join(b, "model.pt"), "r+b") as f:
        f.truncate(100)
    with pytest.raises(InputError, match="model.pt.*size"):
        load_manifest(b, verify=False)
    os.remove(os.path.join(b, "encoder.onnx"))
    with pytest.raises(InputError, match="encoder.onnx"):
        load_manifest(b)


def _edit_manifest(folder, edit):
    path = os.path.join(folder, "manifest.json")
    m = json.load(open(path))
    edit(m)
    json.dump(m, open(path, "w"))


@pytest.mark.parametrize("bad_name,message", [("../outside.onnx", "escapes"), ("/etc/passwd", "absolute"),
                                              ("sub/../../x", "escapes")])
def test_manifest_paths_cannot_leave_the_bundle(bundle, tmp_path, bad_name, message):
    b = copy_bundle(bundle, tmp_path / "b")
    _edit_manifest(b, lambda m: m["files"].update({bad_name: dict(m["files"]["model.pt"])}))
    with pytest.raises(InputError, match=message):
        load_manifest(b, verify=False)


def test_symlinked_file_is_refused(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    outside = tmp_path / "elsewhere.onnx"
    os.replace(os.path.join(b, "encoder.onnx"), outside)
    os.symlink(outside, os.path.join(b, "encoder.onnx"))
    with pytest.raises(InputError, match="symbolic link"):
        load_manifest(b)


def test_unknown_format_version_and_not_a_folder(bundle, tmp_path):
    b = copy_bundle(bundle, tmp_path / "b")
    before = bundle_digest(b)
    _edit_manifest(b, lambda m: m.update(format_version=99))
    assert bundle_digest(b) != before
    with pytest.raises(InputError, match="format version 99"):
        load_manifest(b)
    with pytest.raises(UsageError, match="no such bundle"):
        load_manifest(tmp_path / "nothing")
    with pytest.raises(UsageError, match="not a folder"):
        load_manifest(os.path.join(bundle, "manifest.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="manifest.json: missing"):
        load_manifest(tmp_path / "empty")


# -- failures leave nothing behind ------------------------------------------------------------------------

def test_failed_verification_keeps_the_previous_bundle(bundle, tmp_path, checkpoint, monkeypatch):
    out = copy_bundle(bundle, tmp_path / "bundle")
    before = bundle_digest(out)
    other = Decoder(ModelConfig(image_size=32, channels=3, s_dim=8, z_dim=6, width=8))  # other weights
    real_export = onnx_mod.export_decoder
    monkeypatch.setattr(bundle_mod.onnx_mod, "export_decoder", lambda dec, cfg, opset: real_export(other, cfg, opset))
    with pytest.raises(RuntimeFailure, match="verification failed: decoder output 'image'"):
        export_bundle(checkpoint, out)
    assert bundle_digest(out) == before and load_manifest(out)
    assert leftovers(tmp_path, "bundle") == []


def test_failed_fp16_verification_leaves_no_bundle(tmp_path, checkpoint, monkeypatch):
    real = bundle_mod.fp16_mod.verify_fp16
    monkeypatch.setattr(bundle_mod.fp16_mod, "verify_fp16", lambda a, b, cfg: real(a, b, cfg, image_tolerance=1e-9))
    with pytest.raises(RuntimeFailure, match="fp16 verification failed: decoder images"):
        export_bundle(checkpoint, str(tmp_path / "fresh"), fp16=True)
    assert not os.path.exists(tmp_path / "fresh") and leftovers(tmp_path, "fresh") == []


@pytest.mark.skipif(HAS_TRT, reason="tests the message given when tensorrt is missing")
def test_trt_without_tensorrt_fails_at_once(tmp_path, checkpoint):
    result = CliRunner().invoke(export_cli, [checkpoint, "-o", str(tmp_path / "b"), "--trt", "fp16"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "tensorrt package" in lines[0]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("args,message", [
    (["--opset", "17"], "opset 17"),
    (["--max-batch", "0"], "max-batch"),
    (["--trt", "int8"], "int8"),
])
def test_usage_errors_are_one_line(tmp_path, checkpoint, args, message):
    result = CliRunner().invoke(export_cli, [checkpoint, "-o", str(tmp_path / "b"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not os.path.exists(tmp_path / "b")


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tmp_path, checkpoint):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not a dvgan bundle"):
        export_bundle(checkpoint, str(target))
    assert (target / "notes.txt").read_text() == "keep me"
    result = CliRunner().invoke(export_cli, [str(tmp_path / "missing.pt")])
    assert result.exit_code == 2 and "no such run folder or checkpoint" in result.output


def test_unusable_checkpoint_is_an_input_error(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(export_cli, [str(bad), "-o", str(tmp_path / "b")])
    assert result.exit_code == 1 and "not a loadable dvgan checkpoint" in result.output


# -- TensorRT -------------------------------------------------------------------------------------------

def test_plan_mismatch_names_the_reason():
    """The one rule for running a plan: the TensorRT version and the GPU model it was built with."""
    side = {"format": "dvgan-trt-plan", "plan": "encoder.plan", "tensorrt_version": "10.8.0",
            "gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
    here = {"tensorrt_version": "10.8.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
    assert plan_mismatch(side, here) is None
    assert plan_mismatch(dict(side, compute_capability=[9, 0]), here) is None  # sidecars that wrote a pair
    assert "TensorRT 10.8.0" in plan_mismatch(side, dict(here, tensorrt_version="11.0.0"))
    why = plan_mismatch(side, dict(here, gpu_name="NVIDIA A100", compute_capability="8.0"))
    assert "compute capability 9.0" in why and "NVIDIA A100" in why
    # another GPU model of the same compute capability: its kernels were not timed there
    why = plan_mismatch(side, dict(here, gpu_name="NVIDIA H100 PCIe"))
    assert "NVIDIA H100 (compute capability 9.0)" in why and "NVIDIA H100 PCIe" in why
    assert "not a dvgan TensorRT plan" in plan_mismatch(dict(side, format="other"), here)


def test_the_tensorrt_backend_checks_plans_with_the_exporters_rule(tmp_path, monkeypatch):
    """plan_problem reads each sidecar and applies plan_mismatch (tensorrt and the GPU faked)."""
    import sys
    import types
    from dvgan.engine import trt_backend
    from dvgan.export import tensorrt as trt_export
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.8.0"))
    monkeypatch.setattr(trt_backend, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(trt_export, "gpu_info", lambda device=0: {"gpu_name": "NVIDIA H100",
                                                                  "compute_capability": "9.0"})
    manifest = {"files": {"encoder.plan": {}, "decoder.plan": {}}}
    side = {"format": "dvgan-trt-plan", "tensorrt_version": "10.8.0", "gpu_name": "NVIDIA H100",
            "compute_capability": "9.0"}

    def sidecars(**change):
        for role in ("encoder", "decoder"):
            (tmp_path / f"{role}.plan.json").write_text(json.dumps(dict(side, plan=f"{role}.plan", **change)))

    sidecars()
    assert trt_backend.plan_problem(str(tmp_path), manifest) is None
    sidecars(gpu_name="NVIDIA H100 PCIe")
    assert "NVIDIA H100 PCIe" in trt_backend.plan_problem(str(tmp_path), manifest)
    sidecars(format="something else")
    assert "not a dvgan TensorRT plan" in trt_backend.plan_problem(str(tmp_path), manifest)
    sidecars()
    (tmp_path / "decoder.plan.json").write_text("[]")
    assert "decoder.plan.json" in trt_backend.plan_problem(str(tmp_path), manifest)


@pytest.mark.trt
@pytest.mark.skipif(not HAS_TRT or not torch.cuda.is_available(), reason="needs the tensorrt package and a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_plans(tmp_path, checkpoint, precision):
    cache = str(tmp_path / "timing.cache")
    out = export_bundle(checkpoint, str(tmp_path / "b"), trt=precision, max_batch=64, timing_cache=cache)
    m = load_manifest(out)
    assert {"encoder.plan", "decoder.plan", "encoder.plan.json", "decoder.plan.json"} <= set(m["files"])
    side = json.load(open(os.path.join(out, "encoder.plan.json")))
    assert side["precision"] == precision and side["profile"]["image"]["max"][0] == 64
    assert os.path.getsize(cache) > 0
    assert m["verification"]["tensorrt"]["precision"] == precision


def test_warp_decoder_exports_and_verifies(tmp_path):
    """The warping decoder (grid sampling) exports too, and its graphs match PyTorch."""
    ckpt = make_checkpoint(tmp_path / "c.pt", seed=2, warp=True)
    state = torch.load(ckpt, weights_only=False)
    torch.manual_seed(3)
    state["decoder"]["to_pose.weight"] = torch.randn_like(state["decoder"]["to_pose.weight"]) * 0.3
    torch.save(state, ckpt)
    out = export_bundle(ckpt, str(tmp_path / "b"), fp16=True, max_batch=64)
    m = load_manifest(out)
    assert m["model_config"]["warp"] is True
    assert max(m["verification"]["fp32"]["decoder"].values()) <= 1e-4
    dec = build_models(load_checkpoint(ckpt))[2]
    rng = np.random.default_rng(0)
    s, z = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((5, 6)).astype(np.float32)
    got = session(os.path.join(out, "decoder.onnx")).run(None, {"s": s, "z": z})[0]
    with torch.no_grad():
        want = dec.eval()(torch.from_numpy(s), torch.from_numpy(z)).numpy()
    assert np.abs(got - want).max() < 1e-4
