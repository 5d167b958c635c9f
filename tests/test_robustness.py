"""Bad input, tampered files and user mistakes: one table of cases, each with its exit code and one-line error.

Every CLI case runs the real click command (CliRunner) and checks the exit code, that the error is a single
line starting with "error:" naming the problem, and that no traceback is printed. A few run as separate
processes to show that nothing but that line reaches stderr. API cases check the exception class and
message. docs/errors.md lists the same cases; a test keeps the two in step.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dvgan.errors import InputError, UsageError
from conftest import Evil, as_format_1, write_lpc_folder, write_lpc_sheet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- files that users point the tools at -------------------------------------------------------------

def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 greyscale PNG whose header claims width x height (a decompression bomb's header)."""
    data = bytearray(png_bytes(Image.new("L", (1, 1))))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def noise(mode: str, size=(40, 40), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def make_files(root: str) -> SimpleNamespace:
    f = SimpleNamespace()

    def put(name, data: bytes) -> str:
        path = os.path.join(root, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    good_png, good_jpg = png_bytes(noise("RGB", (64, 64))), jpeg_bytes(noise("RGB", (64, 64)))
    f.good = put("good.png", good_png)
    f.zero = put("zero.png", b"")
    f.trunc_png = put("trunc.png", good_png[: len(good_png) // 2])
    f.trunc_jpg = put("trunc.jpg", good_jpg[: len(good_jpg) // 2])
    f.text = put("notes.png", b"these are not pixels\n")
    f.bomb = put("bomb.png", png_claiming(9000, 9000))        # 81 Mpx: over dvgan's 64 Mpx limit
    f.huge_bomb = put("huge.png", png_claiming(20000, 20000))  # 400 Mpx: Pillow itself refuses it
    f.g16 = put("grey16.png", png_bytes(Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16))))
    f.palette = put("palette.png", png_bytes(noise("RGB").convert("P", palette=Image.ADAPTIVE)))
    f.alpha = put("alpha.png", png_bytes(noise("RGBA")))
    f.grey_alpha = put("grey_alpha.png", png_bytes(noise("LA")))
    f.cmyk = put("cmyk.jpg", jpeg_bytes(noise("CMYK")))
    f.folder = os.path.join(root, "a_folder")
    os.makedirs(f.folder)
    f.no_images = os.path.join(root, "no_images")
    os.makedirs(f.no_images)
    with open(os.path.join(f.no_images, "readme.txt"), "w") as fh:
        fh.write("no images here")
    f.missing = os.path.join(root, "missing.png")
    return f


def make_datasets(root: str) -> SimpleNamespace:
    d = SimpleNamespace(empty=os.path.join(root, "empty"), one=os.path.join(root, "one"),
                        unreadable=os.path.join(root, "unreadable"))
    os.makedirs(d.empty)
    os.makedirs(os.path.join(d.one, "alice"))
    for i in range(4):
        noise("RGB", seed=i).save(os.path.join(d.one, "alice", f"{i}.png"))
    for person in ("bob", "carol"):
        os.makedirs(os.path.join(d.unreadable, person))
        with open(os.path.join(d.unreadable, person, "x.png"), "wb") as fh:
            fh.write(b"\x89PNG broken")
    d.lpc_size, d.lpc_missing = os.path.join(root, "lpc-size"), os.path.join(root, "lpc-missing")
    write_lpc_folder(d.lpc_size, n=3)
    write_lpc_sheet(os.path.join(d.lpc_size, "char_2.png"), 2, size=(4 * 64, 21 * 64 - 8))
    write_lpc_folder(d.lpc_missing, n=3)
    os.remove(os.path.join(d.lpc_missing, "char_1.png"))
    return d


# -- a tiny bundle, an index, and ways to spoil them ------------------------------------------------------

class Ctx(SimpleNamespace):
    """Paths the cases use; copy_bundle / copy_index give a fresh spoilable copy per case."""
    n = 0

    def _fresh(self, src: str, name: str) -> str:
        Ctx.n += 1
        dst = os.path.join(self.tmp, f"{name}-{Ctx.n}")
        shutil.copytree(src, dst)
        return dst

    def copy_bundle(self, edit_manifest=None, edit_file=None) -> str:
        out = self._fresh(self.bundle, "bundle")
        if edit_manifest:
            path = os.path.join(out, "manifest.json")
            m = json.load(open(path))
            edit_manifest(m)
            with open(path, "w") as fh:
                json.dump(m, fh)
        if edit_file:
            edit_file(out)
        return out

    def copy_index(self, edit) -> str:
        out = self._fresh(self.index, "index")
        edit(out)
        return out

    def checkpoint_with(self, edit) -> str:
        Ctx.n += 1
        state = torch.load(self.checkpoint, weights_only=True)
        edit(state)
        path = os.path.join(self.tmp, f"ckpt-{Ctx.n}.pt")
        torch.save(state, path)
        return path

    def put(self, name: str, data: bytes) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path


def flip_byte(path: str, at: float = 0.5) -> None:
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        fh.seek(int(size * at))
        b = fh.read(1)
        fh.seek(int(size * at))
        fh.write(bytes([b[0] ^ 0x5A]))


def truncate(path: str) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(fh.seek(0, 2) // 2)


def consistent_resize(m: dict) -> None:
    """Edit every shape field of a manifest together, as a careful forger would."""
    from dvgan.export.manifest import io_spec
    m["model_config"]["image_size"] = m["image_size"] = 64
    m["io"] = io_spec(m["channels"], 64, m["s_dim"], m["z_dim"])


@pytest.fixture(scope="module")
def ctx(tiny_run, tmp_path_factory):
    from dvgan.engine import Engine
    from dvgan.engine.index import Gallery, build_index
    from dvgan.export import export_bundle
    tmp = str(tmp_path_factory.mktemp("robust"))
    c = Ctx(tmp=tmp, run=tiny_run, checkpoint=os.path.join(tiny_run, "checkpoint.pt"))
    c.bundle = export_bundle(tiny_run, os.path.join(tmp, "bundle"))
    c.files = make_files(tmp)
    c.data = make_datasets(tmp)
    c.engine = Engine.load(c.bundle, "onnxruntime", "cpu")
    gallery = [noise("RGB", seed=s) for s in range(6)]
    codes = c.engine.encode(gallery)
    c.index_obj = build_index(c.engine, Gallery(codes.s, codes.mu, [f"g{i}.png" for i in range(6)]))
    c.index = os.path.join(tmp, "index")
    c.index_obj.save(c.index)
    # Another bundle: the same weights, a different manifest (so another digest).
    c.other_bundle = c.copy_bundle(edit_manifest=lambda m: m.update(max_batch=7))
    c.other_engine = Engine.load(c.other_bundle, "onnxruntime", "cpu")
    c.marker = os.path.join(tmp, "PWNED")
    c.evil_checkpoint = os.path.join(tmp, "evil.pt")
    torch.save({"format": "dvgan-checkpoint", "format_version": 1, "payload": Evil(c.marker)}, c.evil_checkpoint)
    return c


# -- the table -------------------------------------------------------------------------------------------

@dataclass
class CliCase:
    name: str
    argv: Callable        # ctx -> argv (after the program name)
    code: int             # expected exit code
    text: str             # the one-line error must contain this ("" for a success)
    program: str = "dvgan"  # dvgan | dvgan-train | dvgan-export


def sample(*images):
    return lambda c: ["sample", *[img(c) for img in images], "--bundle", c.bundle, "-n", "2",
                      "-o", os.path.join(c.tmp, "out.png")]


def file_(name):
    return lambda c: getattr(c.files, name)


def train(data):
    def argv(c):
        Ctx.n += 1
        return ["--data", data(c), "--out", os.path.join(c.tmp, f"run-{Ctx.n}"), "--steps", "2",
                "--device", "cpu", "--no-progress"]
    return argv


def query(*extra, index=None, bundle=None):
    return lambda c: ["query", c.files.good, "--index", (index or (lambda c: c.index))(c),
                      "--bundle", (bundle or (lambda c: c.bundle))(c), *extra]


# A checkpoint that dvgan 0.1.0 wrote (format 1) without the fitted prior: refused, saying what to do.
FORMAT_1_REFUSED = "(checkpoint format 1, no fitted z prior); retrain it with dvgan"


def _format_1(edit):
    """An edit for Ctx.checkpoint_with: the checkpoint as dvgan 0.1.0 wrote it (format 1), then edit."""
    def to_format_1(state):
        old = as_format_1(state)
        edit(old)
        state.clear()
        state.update(old)
    return to_format_1


def _without_prior(state):
    del state["z_prior"]


CLI_CASES = [
    # images given to the engine commands
    CliCase("image: missing path", sample(file_("missing")), 2, "no such file"),
    CliCase("image: a directory where a file is expected", lambda c: [
        "interpolate", c.files.folder, c.files.good, "--bundle", c.bundle, "-o", os.path.join(c.tmp, "i.png")],
        2, "is a directory"),
    CliCase("image: folder with no image files", sample(file_("no_images")), 2, "no image files"),
    CliCase("image: zero-byte file", sample(file_("zero")), 1, "empty file"),
    CliCase("image: truncated PNG", sample(file_("trunc_png")), 1, "not a readable image"),
    CliCase("image: truncated JPEG", sample(file_("trunc_jpg")), 1, "not a readable image"),
    CliCase("image: not an image (text named .png)", sample(file_("text")), 1, "not a readable image"),
    CliCase("image: decompression bomb, 81 Mpx header", sample(file_("bomb")), 1, "pixel limit"),
    CliCase("image: decompression bomb, 400 Mpx header", sample(file_("huge_bomb")), 1, "DecompressionBombError"),
    CliCase("image: 16-bit greyscale PNG (accepted)", sample(file_("g16")), 0, ""),
    CliCase("image: palette PNG (accepted)", sample(file_("palette")), 0, ""),
    CliCase("image: RGBA PNG, alpha on black (accepted)", sample(file_("alpha")), 0, ""),
    CliCase("image: grey + alpha PNG (accepted)", sample(file_("grey_alpha")), 0, ""),
    CliCase("image: CMYK JPEG (accepted)", sample(file_("cmyk")), 0, ""),
    # bundles
    CliCase("bundle: missing folder", lambda c: ["info", os.path.join(c.tmp, "nowhere")], 2, "no such bundle folder"),
    CliCase("bundle: a file where the folder is expected", lambda c: ["info", c.files.good], 2, "not a folder"),
    CliCase("bundle: ONNX file tampered (same size)", lambda c: ["info", c.copy_bundle(
        edit_file=lambda b: flip_byte(os.path.join(b, "decoder.onnx")))], 1, "sha256 does not match"),
    CliCase("bundle: ONNX file truncated", lambda c: ["info", c.copy_bundle(
        edit_file=lambda b: truncate(os.path.join(b, "encoder.onnx")))], 1, "modified or truncated"),
    CliCase("bundle: manifest checksum edited", lambda c: ["info", c.copy_bundle(
        edit_manifest=lambda m: m["files"]["model.pt"].update(sha256="0" * 64))], 1, "sha256 does not match"),
    CliCase("bundle: manifest image_size edited", lambda c: ["info", c.copy_bundle(
        edit_manifest=lambda m: m.update(image_size=64))], 1, "disagrees with model_config"),
    CliCase("bundle: manifest shapes all edited together (onnxruntime)", lambda c: [
        "sample", c.files.good, "--bundle", c.copy_bundle(edit_manifest=consistent_resize), "--backend", "onnxruntime",
        "-o", os.path.join(c.tmp, "o.png")], 1, "shapes disagree with manifest.json"),
    CliCase("bundle: manifest shapes all edited together (torch)", lambda c: [
        "sample", c.files.good, "--bundle", c.copy_bundle(edit_manifest=consistent_resize), "--backend", "torch",
        "-o", os.path.join(c.tmp, "o.png")], 1, "shapes disagree with manifest.json"),
    CliCase("bundle: manifest path pointing outside the bundle", lambda c: ["info", c.copy_bundle(
        edit_manifest=lambda m: m["files"].update({"../checkpoint.pt": m["files"]["model.pt"]}))],
        1, "escapes the bundle folder"),
    CliCase("bundle: manifest absolute path", lambda c: ["info", c.copy_bundle(
        edit_manifest=lambda m: m["files"].update({"/etc/passwd": m["files"]["model.pt"]}))], 1, "is absolute"),
    CliCase("bundle: manifest not JSON", lambda c: ["info", c.copy_bundle(
        edit_file=lambda b: open(os.path.join(b, "manifest.json"), "w").write("{half"))], 1, "not valid JSON"),
    CliCase("bundle: unknown format version", lambda c: ["info", c.copy_bundle(
        edit_manifest=lambda m: m.update(format_version=99))], 1, "format version 99"),
    CliCase("bundle: manifest missing", lambda c: ["info", c.copy_bundle(
        edit_file=lambda b: os.unlink(os.path.join(b, "manifest.json")))], 1, "manifest.json: missing"),
    CliCase("bundle: z prior of the wrong shape, checksum updated", lambda c: [
        "sample", c.files.good, "--bundle", c.copy_bundle(edit_file=_wrong_prior), "-o", os.path.join(c.tmp, "s.png")],
        1, "z prior has shapes"),
    CliCase("sample: unknown --prior", lambda c: ["sample", c.files.good, "--bundle", c.bundle, "--prior", "uniform"],
            2, "prior must be one of auto, fitted, standard, got 'uniform'"),
    # indexes and queries
    CliCase("query: k = 0", query("-k", "0"), 2, "k must be >= 1"),
    CliCase("query: k larger than the gallery", query("-k", "7"), 2, "larger than the gallery (6 images)"),
    CliCase("query: index from another bundle", query(bundle=lambda c: c.other_bundle), 2, "built from bundle"),
    CliCase("query: missing index folder", query(index=lambda c: os.path.join(c.tmp, "noindex")), 2,
            "no such index folder"),
    CliCase("query: index data file tampered", query(index=lambda c: c.copy_index(
        lambda d: flip_byte(os.path.join(d, "specified.faiss")))), 1, "sha256 does not match index.json"),
    CliCase("query: index items.json tampered", query(index=lambda c: c.copy_index(
        lambda d: open(os.path.join(d, "items.json"), "a").write(" "))), 1, "sha256 does not match index.json"),
    CliCase("query: index.json without checksums", query(index=lambda c: c.copy_index(
        lambda d: _edit_json(os.path.join(d, "index.json"), lambda m: m.pop("files")))), 1, "no checksums"),
    # training data
    CliCase("train: unknown data spec", train(lambda c: "faces:somewhere"), 2, "unknown data spec",
            "dvgan-train"),
    CliCase("train: empty dataset folder", train(lambda c: c.data.empty), 2, "no identity sub-folders", "dvgan-train"),
    CliCase("train: folder with one identity", train(lambda c: c.data.one), 2, "at least two identities",
            "dvgan-train"),
    CliCase("train: identity folders with no readable image", train(lambda c: c.data.unreadable), 2,
            "no readable images", "dvgan-train"),
    CliCase("train: lpc sheet not a whole number of cells", train(lambda c: f"lpc:{c.data.lpc_size}"), 2,
            "char_2.png: 256x1336 pixels is not a whole number of 64x64 cells", "dvgan-train"),
    CliCase("train: lpc attributes.json naming a missing sheet", train(lambda c: f"lpc:{c.data.lpc_missing}"), 2,
            "names char_1.png, which is not in", "dvgan-train"),
    CliCase("train: sprites with one image per identity", train(lambda c: "sprites:1"), 2,
            "at least 2 images per identity", "dvgan-train"),
    CliCase("train: time budget not positive", lambda c: [*train(lambda c: "sprites:3")(c), "--time-budget", "0"],
            2, "time budget must be > 0", "dvgan-train"),
    CliCase("train: --resume with no checkpoint", lambda c: [
        "--out", c.data.empty, "--resume", "--no-progress"], 2, "no such checkpoint", "dvgan-train"),
    # checkpoints
    CliCase("checkpoint: missing path", lambda c: [os.path.join(c.tmp, "none.pt")], 2,
            "no such run folder or checkpoint", "dvgan-export"),
    CliCase("checkpoint: run folder without checkpoint.pt", lambda c: [c.data.empty, "-o", os.path.join(c.tmp, "x")],
            2, "no such checkpoint", "dvgan-export"),
    CliCase("checkpoint: garbage bytes", lambda c: [c.put("garbage.pt", b"\x00" * 100), "-o", os.path.join(c.tmp, "x")],
            1, "not a loadable dvgan checkpoint", "dvgan-export"),
    CliCase("checkpoint: truncated (half-copied)", lambda c: [
        c.put("half.pt", open(c.checkpoint, "rb").read()[:5000]), "-o", os.path.join(c.tmp, "x")],
        1, "not a loadable dvgan checkpoint", "dvgan-export"),
    CliCase("checkpoint: malicious pickle", lambda c: [c.evil_checkpoint, "-o", os.path.join(c.tmp, "x")],
            1, "not a loadable dvgan checkpoint", "dvgan-export"),
    CliCase("checkpoint: incompatible format version", lambda c: [c.checkpoint_with(
        lambda s: s.update(format_version=99)), "-o", os.path.join(c.tmp, "x")], 1, "format version 99",
        "dvgan-export"),
    CliCase("checkpoint: format 1 without the fitted prior", lambda c: [c.checkpoint_with(
        _format_1(_without_prior)), "-o", os.path.join(c.tmp, "x")], 1, FORMAT_1_REFUSED, "dvgan-export"),
    CliCase("checkpoint: format 1 with CoordConv", lambda c: [c.checkpoint_with(
        _format_1(lambda s: s["model_config"].update(coords=True))), "-o", os.path.join(c.tmp, "x")], 1,
        "(checkpoint format 1, model.coords on); retrain it with dvgan", "dvgan-export"),
    CliCase("checkpoint: format 1 without the fitted prior, in dvgan eval", lambda c: [
        "eval", _run_copy_with_checkpoint(c, _format_1(_without_prior)), "--quick"], 1, FORMAT_1_REFUSED),
    CliCase("checkpoint: not a dvgan checkpoint", lambda c: [c.checkpoint_with(
        lambda s: s.update(format="something-else")), "-o", os.path.join(c.tmp, "x")], 1, "not a dvgan checkpoint",
        "dvgan-export"),
    CliCase("checkpoint: weights do not fit its config", lambda c: [c.checkpoint_with(
        lambda s: s["model_config"].update(s_dim=5)), "-o", os.path.join(c.tmp, "x")], 1, "do not fit",
        "dvgan-export"),
    CliCase("checkpoint: z prior of the wrong shape", lambda c: [c.checkpoint_with(
        lambda s: s["z_prior"].update(mean=torch.zeros(3))), "-o", os.path.join(c.tmp, "x")], 1,
        "z prior has shapes", "dvgan-export"),
    CliCase("checkpoint: incompatible version on --resume", lambda c: [
        "--out", _run_with_checkpoint(c, lambda s: s.update(format_version=99)), "--resume", "--no-progress"],
        1, "format version 99", "dvgan-train"),
    CliCase("checkpoint: format 1 without the fitted prior on --resume", lambda c: [
        "--out", _run_with_checkpoint(c, _format_1(_without_prior)), "--resume", "--no-progress"],
        1, FORMAT_1_REFUSED, "dvgan-train"),
    # the demo
    CliCase("demo: output folder holding a run of another model", lambda c: [
        "demo", "-o", _demo_folder_with(c, c.run), "--no-progress"], 2, "holds a run of another model (s_dim 8, z_dim 8, width 8, warp False; this demo trains s_dim 64"),
]


def _demo_folder_with(c: Ctx, run: str) -> str:
    """A demo output folder whose run/ is a copy of run (the tiny run: z 8, where the demo trains 32)."""
    Ctx.n += 1
    out = os.path.join(c.tmp, f"demo-{Ctx.n}")
    shutil.copytree(run, os.path.join(out, "run"))
    return out


def _wrong_prior(bundle: str) -> None:
    """Replace z_prior.npz with one of another z size and record its checksum, as a careless tool might."""
    import numpy as np
    from dvgan.files import sha256_file
    path = os.path.join(bundle, "z_prior.npz")
    with open(path, "wb") as fh:
        np.savez(fh, mean=np.zeros(3, np.float32), scale=np.eye(3, dtype=np.float32))
    _edit_json(os.path.join(bundle, "manifest.json"), lambda m: m["files"]["z_prior.npz"].update(
        sha256=sha256_file(path), bytes=os.path.getsize(path)))


def _edit_json(path: str, edit) -> None:
    m = json.load(open(path))
    edit(m)
    with open(path, "w") as fh:
        json.dump(m, fh)


def _run_copy_with_checkpoint(c: Ctx, edit) -> str:
    """A copy of the tiny run (split.json and all) whose checkpoint is edited."""
    src = c.checkpoint_with(edit)
    run = os.path.join(c.tmp, f"run-copy-{Ctx.n}")
    shutil.copytree(c.run, run)
    shutil.move(src, os.path.join(run, "checkpoint.pt"))
    return run


def _run_with_checkpoint(c: Ctx, edit) -> str:
    src = c.checkpoint_with(edit)
    run = os.path.join(c.tmp, f"run-resume-{Ctx.n}")
    os.makedirs(run)
    shutil.move(src, os.path.join(run, "checkpoint.pt"))
    return run


def program(name: str):
    from dvgan.cli.export import main as export_main
    from dvgan.cli.main import cli
    from dvgan.cli.train import main as train_main
    return {"dvgan": cli, "dvgan-train": train_main, "dvgan-export": export_main}[name]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_case(ctx, case):
    result = CliRunner().invoke(program(case.program), case.argv(ctx))
    assert "Traceback" not in result.output
    assert result.exit_code == case.code, (result.output, result.exception)
    if case.code == 0:
        assert result.exception is None
        return
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an unhandled exception
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: "), result.stderr
    assert case.text in errors[0], errors[0]
    assert not os.path.exists(ctx.marker)


# -- a few as separate processes: nothing but the one line reaches stderr ----------------------------------

SUBPROCESS_CASES = ["image: truncated JPEG", "query: k = 0", "bundle: manifest path pointing outside the bundle",
                    "checkpoint: format 1 without the fitted prior, in dvgan eval"]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_subprocess_prints_one_line(ctx, name):
    case = next(c for c in CLI_CASES if c.name == name)
    proc = subprocess.run([sys.executable, "-m", "dvgan.cli.main", *case.argv(ctx)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith(("INFO ", "W1", "I1"))]
    assert proc.returncode == case.code, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.text in lines[0], proc.stderr


# -- the Python API ----------------------------------------------------------------------------------------

@dataclass
class ApiCase:
    name: str
    call: Callable        # ctx -> anything; must raise
    error: type
    text: str


def enc(x):
    return lambda c: c.engine.encode(x(c) if callable(x) else x)


F32 = np.zeros((1, 3, 32, 32), np.float32)


def _with(value, at=(0, 0, 0, 0)):
    a = F32.copy()
    a[at] = value
    return a


def _load_checkpoint(path):
    from dvgan.train.checkpoint import load_checkpoint
    return load_checkpoint(path)


API_CASES = [
    ApiCase("Engine.load: missing bundle", lambda c: __import__("dvgan").Engine.load(os.path.join(c.tmp, "nope")),
            UsageError, "no such bundle folder"),
    ApiCase("encode: missing path", enc(lambda c: c.files.missing), UsageError, "no such file"),
    ApiCase("encode: a directory", enc(lambda c: c.files.folder), UsageError, "is a directory"),
    ApiCase("encode: truncated PNG bytes", enc(lambda c: open(c.files.trunc_png, "rb").read()), InputError,
            "not a readable image"),
    ApiCase("encode: decompression bomb bytes", enc(png_claiming(9000, 9000)), InputError, "pixel limit"),
    ApiCase("encode: float NaN", enc(_with(np.nan)), InputError, "NaN or infinity"),
    ApiCase("encode: float inf", enc(_with(np.inf, (0, 2, 31, 31))), InputError, "NaN or infinity"),
    ApiCase("encode: float out of [-1, 1]", enc(_with(3.0)), InputError, "[-1, 1]"),
    ApiCase("encode: float with 1 channel for a 3-channel model", enc(np.zeros((2, 1, 32, 32), np.float32)),
            InputError, "1 channel"),
    ApiCase("encode: float of the wrong size", enc(np.zeros((2, 3, 16, 16), np.float32)), InputError, "16x16"),
    ApiCase("encode: float 5-D", enc(np.zeros((1, 1, 3, 32, 32), np.float32)), InputError, "expected (C, H, W)"),
    ApiCase("encode: uint8 with 2 channels", enc(np.zeros((32, 32, 2), np.uint8)), InputError, "C = 1, 3 or 4"),
    ApiCase("encode: uint8 of 0x0 pixels", enc(np.zeros((0, 0, 3), np.uint8)), InputError, "0x0 pixels"),
    ApiCase("encode: int64 array", enc(np.zeros((32, 32, 3), np.int64)), InputError, "dtype int64"),
    ApiCase("encode: object array", enc(np.array([None, 1], dtype=object)), InputError, "dtype object"),
    ApiCase("encode: not images at all", enc(42), UsageError, "cannot use int"),
    ApiCase("decode: NaN in s", lambda c: c.engine.decode(np.full((1, c.engine.s_dim), np.nan),
                                                         np.zeros((1, c.engine.z_dim))), InputError, "NaN"),
    ApiCase("decode: inf in z", lambda c: c.engine.decode(np.zeros((1, c.engine.s_dim)),
                                                         np.full((1, c.engine.z_dim), -np.inf)), InputError, "NaN"),
    ApiCase("decode: wrong code width", lambda c: c.engine.decode(np.zeros((1, 3)), np.zeros((1, c.engine.z_dim))),
            UsageError, "must have shape"),
    ApiCase("decode: strings as codes", lambda c: c.engine.decode([["a"] * c.engine.s_dim],
                                                                 np.zeros((1, c.engine.z_dim))),
            InputError, "cannot be read as float32"),
    ApiCase("sample: n = 0", lambda c: c.engine.sample(F32, 0), UsageError, "n must be >= 1"),
    ApiCase("sample: unknown prior", lambda c: c.engine.sample(F32, 2, prior="uniform"), UsageError,
            "prior must be one of"),
    ApiCase("sample: negative temperature", lambda c: c.engine.sample(F32, 2, temperature=-0.5), UsageError,
            "temperature must be a finite number >= 0"),
    ApiCase("sample: NaN temperature", lambda c: c.engine.sample(F32, 2, temperature=float("nan")), UsageError,
            "temperature must be a finite number >= 0"),
    ApiCase("interpolate: steps = 1", lambda c: c.engine.interpolate(F32, F32, 1), UsageError, "steps must be >= 2"),
    ApiCase("search: k = 0", lambda c: c.index_obj.search("specified", np.zeros((1, c.engine.s_dim)), 0),
            UsageError, "k must be >= 1"),
    ApiCase("search: k larger than the gallery", lambda c: c.index_obj.search(
        "specified", np.zeros((1, c.engine.s_dim)), 7), UsageError, "larger than the gallery"),
    ApiCase("search: NaN query", lambda c: c.index_obj.search(
        "unspecified", np.full((1, c.engine.z_dim), np.nan), 2), InputError, "NaN"),
    ApiCase("search: unknown --by", lambda c: c.index_obj.search("identity", np.zeros((1, 8)), 2),
            UsageError, "--by must be one of"),
    ApiCase("add_codes: inf code", lambda c: c.index_obj.add_codes(
        np.full((1, c.engine.s_dim), np.inf), np.zeros((1, c.engine.z_dim)), ["x"]), InputError, "NaN"),
    ApiCase("CodeIndex.load: index from another bundle", lambda c: __import__(
        "dvgan.engine.index", fromlist=["CodeIndex"]).CodeIndex.load(c.index, c.other_engine),
        UsageError, "built from bundle"),
    ApiCase("data.load: unknown spec", lambda c: __import__("dvgan.data", fromlist=["load"]).load("faces:x"),
            UsageError, "unknown data spec"),
    ApiCase("load_checkpoint: missing", lambda c: _load_checkpoint(os.path.join(c.tmp, "none.pt")), UsageError,
            "no such checkpoint"),
    ApiCase("load_checkpoint: malicious pickle", lambda c: _load_checkpoint(c.evil_checkpoint), InputError,
            "not a loadable dvgan checkpoint"),
    ApiCase("load_checkpoint: format 1 without the fitted prior", lambda c: _load_checkpoint(
        c.checkpoint_with(_format_1(_without_prior))), InputError, FORMAT_1_REFUSED),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_api_case(ctx, case):
    with pytest.raises(case.error) as info:
        case.call(ctx)
    message = str(info.value)
    assert case.text in message and "\n" not in message, message
    assert not os.path.exists(ctx.marker)


def test_accepted_modes_match_the_training_preprocessing(ctx):
    """Images the table accepts go through the same conversion as training: same array from file and PIL."""
    from dvgan.data.preprocess import image_to_uint8, open_image, uint8_to_float
    for name in ("g16", "palette", "alpha", "grey_alpha", "cmyk"):
        path = getattr(ctx.files, name)
        want = uint8_to_float(image_to_uint8(open_image(path), 32, 3))[None]
        np.testing.assert_array_equal(ctx.engine.preprocess(path), want)
        assert want.min() >= -1 and want.max() <= 1
    # alpha is composited on black: a fully transparent image is black
    clear = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    assert (ctx.engine.preprocess(clear) == -1).all()
    # premultiplied grey + alpha, a mode Pillow converts only to LA
    assert ctx.engine.preprocess(Image.new("La", (8, 8))).shape == (1, 3, 32, 32)


def test_table_is_documented():
    """docs/errors.md lists every case of this file's tables."""
    with open(os.path.join(ROOT, "docs", "errors.md"), encoding="utf-8") as fh:
        doc = fh.read()
    missing = [c.name for c in CLI_CASES + API_CASES if c.name not in doc]
    assert not missing, missing
