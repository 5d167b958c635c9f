"""Faults and untrusted files: malicious pickles do not run, kills and full disks lose nothing, threads agree.

- A checkpoint whose pickle would run code is refused (weights_only loading) and the code never runs.
- SIGKILL at seeded random moments during training always leaves a loadable checkpoint; --resume loses at
  most the steps since it and ends on exactly the weights of an uninterrupted run.
- A full disk or a failed step during export, index save or checkpoint save leaves the previous file intact.
- Many threads calling one Engine get the serial results; 10,000 calls do not grow memory.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dvgan.errors import InputError, RuntimeFailure
from conftest import Evil

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILLS = 5                 # SIGKILLs in the kill test
CKPT_EVERY = 2
KILL_STEPS = 200
LOAD_CALLS = 10_000       # engine calls in the load test, per backend
THREADS = 8
RSS_GROWTH_LIMIT = 32 << 20  # bytes of resident memory 10,000 calls may add after warm-up


@pytest.fixture(scope="module")
def bundle(tiny_run, tmp_path_factory):
    from dvgan.export import export_bundle
    return export_bundle(tiny_run, str(tmp_path_factory.mktemp("faults") / "bundle"))


# -- untrusted checkpoints ---------------------------------------------------------------------------------

def test_malicious_pickle_in_a_checkpoint_does_not_run(tmp_path):
    from dvgan.train.checkpoint import load_checkpoint
    marker = tmp_path / "PWNED"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": "dvgan-checkpoint", "format_version": 1, "model_config": {}, "encoder": {},
                "decoder": {}, "payload": Evil(str(marker))}, path)
    with pytest.raises(InputError, match="not a loadable dvgan checkpoint"):
        load_checkpoint(str(path))
    assert not marker.exists()
    # The same file as a run folder, through the exporter and --resume: refused, nothing runs.
    from dvgan.cli.export import main as export_main
    from dvgan.cli.train import main as train_main
    assert CliRunner().invoke(export_main, [str(tmp_path), "-o", str(tmp_path / "b")]).exit_code == 1
    assert CliRunner().invoke(train_main, ["--out", str(tmp_path), "--resume"]).exit_code == 1
    assert not marker.exists()
    # The payload is real: full unpickling would have run it.
    torch.load(path, weights_only=False)
    assert marker.exists()


# -- SIGKILL during training -------------------------------------------------------------------------------

TRAIN_ARGS = ["--data", "sprites:2", "--steps", str(KILL_STEPS), "--batch-size", "4", "--s-dim", "8", "--z-dim", "8",
              "--set", "model.width=8", "--set", "model.adv_width=8", "--set", f"train.ckpt_every={CKPT_EVERY}",
              "--set", "train.log_every=1", "--set", "train.sample_every=0", "--device", "cpu", "--no-progress",
              "--seed", "3"]


def logged_step(run: str) -> int:
    """The last step in metrics.jsonl (0 if none); written after each step, before that step's checkpoint."""
    try:
        with open(os.path.join(run, "metrics.jsonl")) as f:
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
    except FileNotFoundError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError):
            continue  # a line cut by the kill
    return 0


def test_sigkill_during_training_loses_at_most_the_steps_since_the_checkpoint(tmp_path):
    from dvgan.train.checkpoint import load_checkpoint
    rng = np.random.default_rng(20261127)
    run = str(tmp_path / "run")
    env = dict(os.environ, OMP_NUM_THREADS="2")
    base = [sys.executable, "-m", "dvgan.cli.train", "--out", run]
    survived, lost = 0, []
    ckpt_step = 0
    for attempt in range(KILLS):
        argv = base + (["--resume", "--no-progress", "--device", "cpu"] if attempt else TRAIN_ARGS)
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill at a random step a few past the checkpoint, at a random moment inside it: counted in steps,
        # not seconds, so the run never ends first however fast the machine is.
        target = ckpt_step + int(rng.integers(2, 4 * CKPT_EVERY + 2))
        deadline = time.monotonic() + 120
        while logged_step(run) < target:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0.0, 0.02)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL, "the run ended before the kill; lengthen KILL_STEPS"
        done = logged_step(run)
        state = load_checkpoint(run)  # every kill leaves a loadable checkpoint
        ckpt_step = int(state["step"])
        assert ckpt_step <= done and done - ckpt_step <= CKPT_EVERY, (done, ckpt_step)
        lost.append(done - ckpt_step)
        survived += 1
        stale = [f for f in os.listdir(run) if f.endswith(".tmp")]
        log.info("kill %d: logged step %d, checkpoint step %d, temporary files left %s", attempt + 1, done,
                 ckpt_step, stale)
    final = subprocess.run(base + ["--resume", "--no-progress", "--device", "cpu"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr
    resumed = load_checkpoint(run)
    assert resumed["step"] == KILL_STEPS
    steps = [json.loads(ln)["step"] for ln in open(os.path.join(run, "metrics.jsonl"))]
    assert steps == list(range(1, KILL_STEPS + 1))  # the log has no gaps and no repeats
    # Nothing lost: the killed and resumed run ends on the weights of an uninterrupted one.
    from dvgan.cli.train import main as train_main
    ref = str(tmp_path / "ref")
    result = CliRunner().invoke(train_main, TRAIN_ARGS + ["--out", ref])
    assert result.exit_code == 0, result.output
    reference = load_checkpoint(ref)
    for part in ("encoder", "decoder", "adversary"):
        for key, value in reference[part].items():
            assert torch.equal(value, resumed[part][key]), (part, key)
    log.info("kills survived %d/%d; steps lost per kill %s (ckpt_every %d)", survived, KILLS, lost, CKPT_EVERY)


# -- a failed write keeps what was there -------------------------------------------------------------------

def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _tree(folder: str) -> dict:
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out[name] = f.read()
    return out


def test_export_on_a_full_disk_keeps_the_previous_bundle(bundle, tiny_run, tmp_path, monkeypatch):
    from dvgan.cli.export import main as export_main
    from dvgan.export import bundle as bundle_mod
    out = shutil.copytree(bundle, tmp_path / "bundle")
    before = _tree(out)
    monkeypatch.setattr(bundle_mod.torch, "save", _disk_full)  # model.pt is the last large file written
    result = CliRunner().invoke(export_main, [tiny_run, "-o", str(out)])
    assert result.exit_code == 1 and "No space left on device" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert _tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["bundle"]  # no temporary folders left behind


def test_export_failing_at_the_final_rename_restores_the_previous_bundle(bundle, tiny_run, tmp_path, monkeypatch):
    from dvgan import files as files_mod
    from dvgan.export import export_bundle
    from dvgan.export.manifest import load_manifest
    out = str(shutil.copytree(bundle, tmp_path / "bundle"))
    before = _tree(out)
    real_replace = os.replace

    def replace(src, dst):
        if dst == out and ".tmp-" in src:  # the new bundle moving into place
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real_replace(src, dst)

    monkeypatch.setattr(files_mod.os, "replace", replace)
    with pytest.raises(OSError):
        export_bundle(tiny_run, out)
    assert _tree(out) == before and load_manifest(out)
    assert sorted(os.listdir(tmp_path)) == ["bundle"]


def test_failed_export_verification_keeps_the_previous_bundle(bundle, tiny_run, tmp_path, monkeypatch):
    from dvgan.export import bundle as bundle_mod
    from dvgan.export import export_bundle

    def fail(*args, **kwargs):
        raise RuntimeFailure("verification failed: decoder output 'image' differs")

    out = str(shutil.copytree(bundle, tmp_path / "bundle"))
    before = _tree(out)
    monkeypatch.setattr(bundle_mod.onnx_mod, "verify_fp32", fail)
    with pytest.raises(RuntimeFailure, match="verification failed"):
        export_bundle(tiny_run, out)
    assert _tree(out) == before and sorted(os.listdir(tmp_path)) == ["bundle"]


def test_index_save_on_a_full_disk_keeps_the_previous_index(bundle, tmp_path, monkeypatch):
    import faiss
    from dvgan.engine import Engine
    from dvgan.engine.index import CodeIndex, Gallery, build_index
    eng = Engine.load(bundle, "onnxruntime", "cpu")
    rng = np.random.default_rng(0)
    index = build_index(eng, Gallery(rng.standard_normal((20, eng.s_dim)), rng.standard_normal((20, eng.z_dim)),
                                     [f"{i}.png" for i in range(20)]))
    out = str(tmp_path / "index")
    index.save(out)
    before = _tree(out)
    index.add_codes(rng.standard_normal((5, eng.s_dim)), rng.standard_normal((5, eng.z_dim)), ["a"] * 5)
    monkeypatch.setattr(faiss, "write_index", _disk_full)
    with pytest.raises(OSError):
        index.save(out)
    assert _tree(out) == before and len(CodeIndex.load(out, eng)) == 20
    assert sorted(os.listdir(tmp_path)) == ["index"]


def test_checkpoint_save_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from dvgan.train import checkpoint as ckpt_mod
    path = str(tmp_path / "checkpoint.pt")
    state = {"model_config": {}, "encoder": {"w": torch.ones(3)}, "decoder": {}, "z_prior": {}, "step": 4}
    ckpt_mod.save_checkpoint(path, state)
    before = open(path, "rb").read()
    real_save = torch.save

    def half_then_full(obj, f):
        real_save(obj, f)
        f.truncate(100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(ckpt_mod.torch, "save", half_then_full)
    with pytest.raises(OSError):
        ckpt_mod.save_checkpoint(path, dict(state, step=6))
    assert open(path, "rb").read() == before and ckpt_mod.load_checkpoint(path)["step"] == 4
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


# -- under load --------------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _calls(n_calls: int, n_inputs: int):
    """A fixed list of (kind, argument index) engine calls over seeded inputs."""
    kinds = ("encode", "decode", "swap", "query")
    return [(kinds[i % len(kinds)], (i * 7) % n_inputs) for i in range(n_calls)]


def _run_call(eng, index, inputs, codes, kind, i):
    if kind == "encode":
        return eng.encode(inputs[i]).mu
    if kind == "decode":
        return eng.decode(codes.s[i:i + 1], codes.mu[i:i + 1])
    if kind == "swap":
        return eng.swap(inputs[i], inputs[-1 - i])
    return index.search("specified", codes.s[i:i + 1], 3)[1]


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_threads_match_serial_and_memory_stays_flat(bundle, backend):
    """LOAD_CALLS calls from THREADS threads on one Engine: no errors, the serial results, bounded memory."""
    from dvgan.engine import Engine
    from dvgan.engine.index import Gallery, build_index
    eng = Engine.load(bundle, backend, "cpu")
    rng = np.random.default_rng(1)
    inputs = rng.uniform(-1, 1, (16, 1, eng.channels, eng.image_size, eng.image_size)).astype(np.float32)
    codes = eng.encode(inputs[:, 0])
    index = build_index(eng, Gallery(codes.s, codes.mu, [f"{i}.png" for i in range(16)]))
    calls = _calls(LOAD_CALLS, len(inputs))
    serial = {}
    for kind, i in sorted(set(calls)):  # every distinct call, once, serially
        serial[kind, i] = _run_call(eng, index, inputs, codes, kind, i)
    for _ in range(2):  # warm-up: allocator pools and thread pools reach their steady size
        for kind, i in calls[:500]:
            _run_call(eng, index, inputs, codes, kind, i)
    rss0 = _rss_bytes()
    errors, mismatches = [], []

    def worker(t):
        try:
            for kind, i in calls[t::THREADS]:
                got = _run_call(eng, index, inputs, codes, kind, i)
                if not np.allclose(got, serial[kind, i], atol=1e-5):
                    mismatches.append((kind, i))
        except Exception as exc:  # any failure counts; the test reports them
            errors.append(repr(exc))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    seconds = time.perf_counter() - started
    growth = _rss_bytes() - rss0
    assert not errors, errors[:3]
    assert not mismatches, mismatches[:5]
    assert growth < RSS_GROWTH_LIMIT, f"resident memory grew {growth / 2**20:.1f} MiB over {len(calls)} calls"
    log.info("%s: %d calls from %d threads in %.1f s, RSS growth %.1f MiB", backend, len(calls), THREADS,
             seconds, growth / 2**20)
