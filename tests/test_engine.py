"""The inference engine: backends agree, batching changes nothing, inputs and errors, threads, CLI, service."""
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from dvgan.errors import InputError, RuntimeFailure, UsageError

ATOL = 1e-4  # ONNX Runtime vs PyTorch, fp32


def bundle_from_run(run_dir, out, **kw):
    """Export a run folder to a bundle with dvgan's exporter."""
    from dvgan.export import export_bundle
    return export_bundle(run_dir, out, **kw)


@pytest.fixture(scope="session")
def bundle(tiny_run, tmp_path_factory):
    return bundle_from_run(tiny_run, str(tmp_path_factory.mktemp("bundle") / "bundle"))


@pytest.fixture(scope="session")
def engines(bundle):
    from dvgan.engine import Engine
    return {"onnxruntime": Engine.load(bundle, "onnxruntime", "cpu"), "torch": Engine.load(bundle, "torch", "cpu")}


@pytest.fixture(scope="session")
def images():
    from dvgan.data import load
    data = load("sprites:2", 32, 3)
    return data.float_images(np.arange(0, 40, 2))  # (20, 3, 32, 32)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    from PIL import Image
    from dvgan.data import load
    folder = tmp_path_factory.mktemp("gallery")
    data = load("sprites:2", 32, 3)
    paths = []
    for i in range(12):
        p = str(folder / f"{i:02d}.png")
        Image.fromarray(data.images[i].transpose(1, 2, 0)).save(p)
        paths.append(p)
    return paths


def test_backends_agree(engines, images):
    a, b = engines["onnxruntime"].encode(images), engines["torch"].encode(images)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, atol=ATOL)
    np.testing.assert_allclose(engines["onnxruntime"].decode(a.s, a.mu), engines["torch"].decode(a.s, a.mu), atol=ATOL)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_batched_equals_one_at_a_time(bundle, images, backend):
    from dvgan.engine import Engine
    eng = Engine.load(bundle, backend, "cpu")
    eng.max_batch = 3  # force several chunks
    codes = eng.encode(images)
    one = [eng.encode(images[i]) for i in range(len(images))]
    for field in range(3):
        np.testing.assert_allclose(codes[field], np.concatenate([o[field] for o in one]), atol=1e-5)
    spec, unspec = images[:4], images[4:7]
    grid = eng.swap(spec, unspec, grid=True)
    assert grid.shape == (3, 4, 3, 32, 32)
    for i in range(3):
        for j in range(4):
            want = eng.decode(eng.encode(spec[j]).s, eng.encode(unspec[i]).mu)[0]
            np.testing.assert_allclose(grid[i, j], want, atol=1e-5)
    pairs = eng.swap(spec[:3], unspec)
    np.testing.assert_allclose(pairs, np.stack([grid[i, i] for i in range(3)]), atol=1e-5)
    one_to_many = eng.swap(spec[0], unspec)
    np.testing.assert_allclose(one_to_many, grid[:, 0], atol=1e-5)
    samples = eng.sample(spec, 5, seed=3)
    assert samples.shape == (4, 5, 3, 32, 32)
    for j in range(4):
        np.testing.assert_allclose(samples[j], eng.sample(spec[j], 5, seed=3)[0], atol=1e-5)
    eps = np.random.default_rng(3).standard_normal((5, eng.z_dim), dtype=np.float32)
    s1 = np.repeat(codes.s[1:2], 5, 0)
    fitted = eng.z_prior["mean"] + eps @ eng.z_prior["scale"].T  # the bundle's prior, by default
    np.testing.assert_allclose(samples[1], eng.decode(s1, fitted), atol=1e-5)
    np.testing.assert_allclose(eng.sample(spec, 5, seed=3, prior="standard")[1], eng.decode(s1, eps), atol=1e-5)
    assert not np.allclose(samples, eng.sample(spec, 5, seed=4))
    cold = eng.sample(spec, 5, seed=3, temperature=0.5)  # draws scaled about the prior's mean
    np.testing.assert_allclose(cold[1], eng.decode(s1, eng.z_prior["mean"] + 0.5 * eps @ eng.z_prior["scale"].T),
                               atol=1e-5)
    frozen = eng.sample(spec, 5, seed=3, temperature=0)  # every draw is the mean
    np.testing.assert_allclose(frozen[1], eng.decode(s1, np.repeat(eng.z_prior["mean"][None], 5, 0)), atol=1e-5)


class _HostPath:
    """A backend seen without its fused swap: the engine falls back to host codes and max_batch chunks."""

    def __init__(self, backend):
        self.encode, self.decode, self.describe = backend.encode, backend.decode, backend.describe


def test_fused_swap_equals_host_path(bundle, images, monkeypatch):
    from dvgan.engine import Engine, torch_backend
    fused, host = Engine.load(bundle, "torch", "cpu"), Engine.load(bundle, "torch", "cpu")
    host.backend, host.max_batch = _HostPath(host.backend), 3
    fused.backend.chunk = 2  # several encoder and decoder calls per request ...
    monkeypatch.setattr(torch_backend, "OUT_BYTES", 3 * images[:1].nbytes)  # ... and several copies out

    def no_host_codes(*args):
        raise AssertionError("the fused path went through the host encode or decode")
    monkeypatch.setattr(fused.backend, "encode", no_host_codes)
    monkeypatch.setattr(fused.backend, "decode", no_host_codes)
    spec, unspec = images[:5], images[3:7]
    for args, kw in (((spec, unspec), {"grid": True}), ((spec[:4], unspec), {}), ((spec[0], unspec), {}),
                     ((spec, unspec[1]), {})):
        got, want = fused.swap(*args, **kw), host.swap(*args, **kw)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5)
    got, want = fused.sample(spec, 7, seed=2), host.sample(spec, 7, seed=2)
    assert got.shape == (5, 7, 3, 32, 32)
    np.testing.assert_allclose(got, want, atol=1e-5)
    ort = Engine.load(bundle, "onnxruntime", "cpu")
    assert not hasattr(ort.backend, "swap")  # its graphs' batch profile keeps it on max_batch chunks
    np.testing.assert_allclose(ort.swap(spec, unspec, grid=True), fused.swap(spec, unspec, grid=True), atol=ATOL)


def test_from_run_answers_as_the_exported_bundle_on_torch(tiny_run, engines, images, tmp_path):
    """Engine.from_run serves a run folder without exporting it: the same codes, swaps, samples and
    interpolations as its exported bundle on the torch backend, to the bit."""
    from dvgan.engine import Engine
    run, bundled = Engine.from_run(tiny_run), engines["torch"]
    assert run.backend.name == "torch" and run.bundle_dir == tiny_run
    assert (run.image_size, run.channels, run.s_dim, run.z_dim, run.max_batch) == \
        (bundled.image_size, bundled.channels, bundled.s_dim, bundled.z_dim, bundled.max_batch)
    for key in ("mean", "scale"):
        np.testing.assert_array_equal(run.z_prior[key], bundled.z_prior[key])
    for a, b in zip(run.encode(images), bundled.encode(images)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(run.swap(images[:4], images[4:7], grid=True),
                                  bundled.swap(images[:4], images[4:7], grid=True))
    np.testing.assert_array_equal(run.swap(images[:5], images[5:10]), bundled.swap(images[:5], images[5:10]))
    np.testing.assert_array_equal(run.sample(images[:3], 4, seed=1), bundled.sample(images[:3], 4, seed=1))
    np.testing.assert_array_equal(run.interpolate(images[0], images[1], steps=3),
                                  bundled.interpolate(images[0], images[1], steps=3))
    with pytest.raises(UsageError, match="no such checkpoint"):
        Engine.from_run(str(tmp_path))
    with pytest.raises(UsageError, match="unknown device"):
        Engine.from_run(tiny_run, "tpu")


def test_interpolate_grid(engines, images):
    eng = engines["onnxruntime"]
    grid = eng.interpolate(images[0], images[5], steps=4)
    assert grid.shape == (4, 4, 3, 32, 32)
    a, b = eng.encode(images[0]), eng.encode(images[5])
    np.testing.assert_allclose(grid[0, 0], eng.decode(a.s, a.mu)[0], atol=1e-5)
    np.testing.assert_allclose(grid[3, 3], eng.decode(b.s, b.mu)[0], atol=1e-5)
    np.testing.assert_allclose(grid[3, 0], eng.decode(a.s, b.mu)[0], atol=1e-5)  # row keeps z, column keeps s
    mid_s, mid_z = a.s + (b.s - a.s) / 3, a.mu + 2 * (b.mu - a.mu) / 3
    np.testing.assert_allclose(grid[2, 1], eng.decode(mid_s, mid_z)[0], atol=1e-4)


def test_inputs_every_form_preprocess_as_training(engines, image_files):
    from PIL import Image
    from dvgan.data.preprocess import image_to_uint8, open_image, uint8_to_float
    eng = engines["onnxruntime"]
    path = image_files[3]
    want = uint8_to_float(image_to_uint8(open_image(path), 32, 3))[None]
    pil = Image.open(path)
    hwc = np.asarray(pil.convert("RGB"))
    for form in (path, pil, hwc, hwc[None], want, want[0], [path, pil]):
        got = eng.preprocess(form)
        np.testing.assert_array_equal(got[:1], want)
    big = Image.open(path).resize((77, 77))  # resized with the training's bilinear filter
    np.testing.assert_array_equal(eng.preprocess(big), uint8_to_float(image_to_uint8(big, 32, 3))[None])
    np.testing.assert_allclose(eng.encode([path, path]).s[1], eng.encode(want).s[0], atol=1e-6)


def test_input_errors(engines, tmp_path):
    eng = engines["onnxruntime"]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="bad.png: not a readable image"):
        eng.encode(str(bad))
    with pytest.raises(InputError, match="1 channel"):
        eng.encode(np.zeros((2, 1, 32, 32), np.float32))
    with pytest.raises(InputError, match="16x16"):
        eng.encode(np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(InputError, match=r"\[-1, 1\]"):
        eng.encode(np.full((1, 3, 32, 32), 255.0, np.float32))
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((2, 3, 32, 32), np.float32)
        x[1, 2, 3, 4] = bad
        with pytest.raises(InputError, match="NaN or infinity"):
            eng.encode(x)
    with pytest.raises(InputError, match="C = 1, 3 or 4"):
        eng.encode(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(UsageError, match="cannot use"):
        eng.encode(42)
    with pytest.raises(UsageError, match="one to one or one to many"):
        eng.swap(np.zeros((2, 3, 32, 32), np.float32), np.zeros((3, 3, 32, 32), np.float32))
    with pytest.raises(UsageError):
        eng.decode(np.zeros((2, eng.s_dim)), np.zeros((3, eng.z_dim)))
    with pytest.raises(UsageError):
        eng.sample(np.zeros((1, 3, 32, 32), np.float32), 0)


def test_backend_choice_and_refusals(bundle):
    from dvgan.engine import Engine
    from dvgan.engine.backends import choose
    from dvgan.export import load_manifest
    man = load_manifest(bundle)
    with pytest.raises(UsageError, match="unknown backend"):
        Engine.load(bundle, backend="jax")
    with pytest.raises(RuntimeFailure, match="tensorrt"):
        Engine.load(bundle, backend="tensorrt")
    gpu = os.path.exists("/dev/nvidiactl")
    if not gpu:
        with pytest.raises(RuntimeFailure, match="no backend can run this bundle on cuda"):
            choose(bundle, man, "auto", "cuda")
        auto = Engine.load(bundle)
        assert auto.backend.name == "onnxruntime" and auto.backend.device == "cpu"
    picked = choose(bundle, man, "auto", "cpu", precision="bf16")  # onnxruntime has no bf16: passed over, said why
    assert picked.backend.name == "torch" and "onnxruntime on cpu" in picked.report()
    with pytest.raises(RuntimeFailure, match="no fp16 graphs"):
        Engine.load(bundle, "onnxruntime", "cpu", precision="fp16")


class _FakePlanEngine:
    """What _Plan.io reads of a deserialised TensorRT engine: IO tensor names, modes and shapes."""

    def __init__(self, io):
        self.tensors = [(n, "in", shape) for n, shape in io["inputs"].items()] + \
                       [(n, "out", shape) for n, shape in io["outputs"].items()]
        self.num_io_tensors = len(self.tensors)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return next(m for n, m, _ in self.tensors if n == name)

    def get_tensor_shape(self, name):
        return [-1 if d == "N" else d for n, _, shape in self.tensors if n == name for d in shape]


def test_tensorrt_plans_are_checked_against_the_manifest(bundle, monkeypatch):
    """Engine.load compares the TensorRT plans' IO shapes with manifest.json as it does for the other
    backends (tensorrt and the plans faked: their IO is what the engine checks)."""
    import types
    from dvgan.engine import engine as engine_mod
    from dvgan.engine.backends import Choice
    from dvgan.engine.trt_backend import TrtBackend, _Plan
    from dvgan.export.manifest import load_manifest
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="in")))
    io = load_manifest(bundle)["io"]

    def fake_trt(plans_io):
        backend = object.__new__(TrtBackend)
        for attr, role in (("enc", "encoder"), ("dec", "decoder")):
            plan = object.__new__(_Plan)
            plan.engine = _FakePlanEngine(plans_io[role])
            plan.names = [plan.engine.get_tensor_name(i) for i in range(plan.engine.num_io_tensors)]
            setattr(backend, attr, plan)
        backend.precision = "fp16"
        return backend

    monkeypatch.setattr(engine_mod, "choose", lambda *a, **k: Choice(fake_trt(io)))
    assert engine_mod.Engine.load(bundle, "tensorrt").backend.io() == io
    other = json.loads(json.dumps(io))
    other["decoder"]["outputs"]["image"][2] = 64  # plans built for another image size
    monkeypatch.setattr(engine_mod, "choose", lambda *a, **k: Choice(fake_trt(other)))
    with pytest.raises(InputError, match="tensorrt graphs' shapes disagree with manifest.json"):
        engine_mod.Engine.load(bundle, "tensorrt")


def test_threads_give_serial_results(engines, images):
    """8 threads x 50 mixed calls on one engine per backend give the serial results."""
    calls = []
    rng = np.random.default_rng(0)
    for i in range(50):
        a, b = sorted(rng.choice(len(images), 2, replace=False))
        calls.append((["encode", "swap", "sample", "decode", "grid"][i % 5], int(a), int(b)))

    def run(eng, kind, a, b):
        x = images
        if kind == "encode":
            return eng.encode(x[a:b + 1]).mu
        if kind == "swap":
            return eng.swap(x[a], x[a:b + 1])
        if kind == "sample":
            return eng.sample(x[a:b], 2, seed=a)
        if kind == "grid":
            return eng.swap(x[:2], x[a:a + 3], grid=True)
        c = eng.encode(x[a:b])
        return eng.decode(c.s, c.mu)

    for eng in engines.values():
        want = [run(eng, *c) for c in calls]
        got = [[None] * len(calls) for _ in range(8)]
        errors = []

        def worker(t):
            try:
                for i in np.random.default_rng(t).permutation(len(calls)):
                    got[t][i] = run(eng, *calls[i])
            except Exception as exc:  # surfaced by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for t in range(8):
            for i in range(len(calls)):
                np.testing.assert_allclose(got[t][i], want[i], atol=1e-5)


def test_import_is_light_and_state_is_per_engine(bundle):
    code = ("import sys, dvgan; from dvgan.engine import Engine; "
            "e = Engine.load(sys.argv[1], 'onnxruntime', 'cpu'); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, bundle], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_default_model_loads_under_a_second(tmp_path):
    """The default recipe (32x32x3, s 64, z 128, width 32) loads in under a second (imports excluded)."""
    import torch
    from dvgan.config import ModelConfig, to_dict
    from dvgan.engine import Engine
    from dvgan.model import Decoder, Encoder
    from dvgan.train.checkpoint import save_checkpoint
    cfg = ModelConfig()
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(str(run / "checkpoint.pt"), {"model_config": to_dict(cfg), "encoder": Encoder(cfg).state_dict(),
                                                 "decoder": Decoder(cfg).state_dict(), "step": 0,
                                                 "z_prior": {"mean": torch.zeros(cfg.z_dim), "scale": torch.eye(cfg.z_dim)}})
    b = bundle_from_run(str(run), str(tmp_path / "bundle"))
    Engine.load(b, "onnxruntime", "cpu")  # imports
    t0 = time.perf_counter()
    eng = Engine.load(b)
    assert time.perf_counter() - t0 < 1.0
    assert eng.s_dim == 64 and eng.z_dim == 128


def test_cli_defaults_and_errors(bundle, image_files, tmp_path, monkeypatch):
    import shutil
    from dvgan.cli.main import cli
    home = tmp_path / "home"
    shutil.copytree(bundle, home / "bundle")
    monkeypatch.setenv("DVGAN_HOME", str(home))
    folder = os.path.dirname(image_files[0])
    r = CliRunner()
    res = r.invoke(cli, ["index", "build", "--images", folder])
    assert res.exit_code == 0, res.output
    assert (home / "index" / "index.json").is_file()
    res = r.invoke(cli, ["query", "--by", "specified", image_files[2], "--json", "-k", "3"])
    assert res.exit_code == 0, res.output
    hits = json.loads(res.output)[0]["hits"]
    assert hits[0]["path"] == os.path.abspath(image_files[2]) and hits[0]["distance"] < 1e-6
    strip = tmp_path / "strip.png"
    res = r.invoke(cli, ["query", "--by", "unspecified", image_files[2], "-k", "4", "--strip", str(strip)])
    assert res.exit_code == 0 and strip.is_file()
    for args in (["swap", "-s", image_files[0], "-s", folder, "-u", image_files[1]],
                 ["sample", image_files[0], image_files[1], "-n", "3"],
                 ["sample", image_files[0], "-n", "2", "--prior", "standard"],
                 ["sample", image_files[0], "-n", "2", "--temperature", "0.5"],
                 ["interpolate", image_files[0], image_files[1], "--steps", "3"]):
        out = tmp_path / (args[0] + ".png")
        res = r.invoke(cli, args + ["-o", str(out)])
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 0
    for args, code, text in ((["query", "-k", "0", image_files[0]], 2, "k must be >= 1"),
                             (["query", "-k", "13", image_files[0]], 2, "larger than the gallery"),
                             (["query", str(tmp_path / "missing.png")], 2, "no such file"),
                             (["swap", "-s", image_files[0], "-u", image_files[0], "--backend", "tensorrt"], 1, "tensorrt"),
                             (["query", image_files[0], "--index", str(tmp_path / "nowhere")], 2, "no such index"),
                             (["sample", image_files[0], "--prior", "uniform"], 2, "prior must be one of"),
                             (["sample", image_files[0], "--temperature", "-1"], 2, "temperature must be")):
        res = r.invoke(cli, args)
        assert res.exit_code == code, (args, res.output)
        assert text in res.output and "Traceback" not in res.output


def _strip_cells(path, n, size=32, scale=2):
    """The n tiles of the first row of a strip written by write_grid (figures.tile, saved at scale)."""
    from PIL import Image
    from dvgan.figures import PAD
    grid = np.asarray(Image.open(path))[::scale, ::scale]
    return [grid[PAD:PAD + size, PAD + j * (size + PAD):PAD + j * (size + PAD) + size].transpose(2, 0, 1)
            for j in range(n)]


def test_query_strip_shows_each_hits_own_image(bundle, image_files, tmp_path, monkeypatch):
    """An approximate index built from --data adds its codes in a shuffled order, so an id is not the
    data set's row: the strip shows the query, then the image of each hit's source, drawn alone (the
    data set is not loaded again)."""
    import dvgan.data
    from dvgan.cli.main import cli
    from dvgan.data import load
    from dvgan.data.preprocess import image_to_uint8, open_image
    r = CliRunner()
    idx, strip = str(tmp_path / "idx"), str(tmp_path / "strip.png")
    res = r.invoke(cli, ["index", "build", "--bundle", bundle, "--data", "sprites:2", "--method", "hnsw", "-o", idx])
    assert res.exit_code == 0, res.output

    def whole_set(*args, **kwargs):
        raise AssertionError("the strip loaded the whole data set")

    monkeypatch.setattr(dvgan.data, "load", whole_set)
    res = r.invoke(cli, ["query", "--bundle", bundle, "--index", idx, "--by", "unspecified", image_files[3],
                         "-k", "5", "--strip", strip])
    assert res.exit_code == 0, res.output
    sources = [line.split()[2] for line in res.output.splitlines()[1:6]]
    assert all(s.startswith("sprites:") for s in sources), res.output
    data = load("sprites:2", 32, 3)
    cells = _strip_cells(strip, 7)
    assert np.array_equal(cells[0], image_to_uint8(open_image(image_files[3]), 32, 3))
    for cell, source in zip(cells[2:], sources):
        assert np.array_equal(cell, data.images[int(source.split(":")[1])]), source


def test_service(engines, image_files):
    import base64
    import urllib.error
    import urllib.request
    from dvgan.engine.service import make_server
    eng = engines["onnxruntime"]
    server = make_server(eng, None, "127.0.0.1", 0, max_bytes=200_000)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        png = [base64.b64encode(open(p, "rb").read()).decode() for p in image_files[:2]]

        def post(route, body):
            req = urllib.request.Request(url + route, json.dumps(body).encode(), {"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        with urllib.request.urlopen(url + "/health") as resp:
            assert json.loads(resp.read())["digest"] == eng.digest
        code, out = post("/encode", {"images": png})
        assert code == 200
        np.testing.assert_allclose(out["s"], eng.encode(image_files[:2]).s, atol=1e-5)
        code, out = post("/swap", {"specified": png[:1], "unspecified": png, "grid": True})
        assert code == 200 and len(out["images"]) == 2 and len(out["images"][0]) == 1
        assert post("/sample", {"specified": png, "n": 0})[0] == 400
        assert post("/query", {"images": png})[0] == 400  # no index
        assert post("/encode", {"images": ["@@@"]})[0] == 400
        assert post("/encode", {"images": ["A" * 300_000]})[0] == 413
    finally:
        server.shutdown()
        server.server_close()
