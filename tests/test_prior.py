"""The sampling prior: a Gaussian fitted to the posterior means of training images (dvgan/prior.py)."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from dvgan import prior
from dvgan.errors import UsageError


def test_gaussian_recovers_mean_and_covariance_and_draws_follow_it():
    rng = np.random.default_rng(0)
    mean = np.array([1.0, -2.0, 0.5, 3.0])
    a = rng.normal(size=(4, 4)) * np.array([1.0, 0.5, 0.1, 0.0])  # one direction unused: a singular covariance
    codes = mean + rng.standard_normal((40000, 4)) @ a.T
    fitted = prior.gaussian(torch.from_numpy(codes))
    assert fitted["n_images"] == 40000
    np.testing.assert_allclose(fitted["mean"].numpy(), mean, atol=0.03)
    cov = (fitted["scale"] @ fitted["scale"].T).numpy()
    np.testing.assert_allclose(cov, a @ a.T, atol=0.05)
    z = prior.draw(fitted, rng.standard_normal((40000, 4)).astype(np.float32))
    assert z.dtype == np.float32
    np.testing.assert_allclose(z.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(z, rowvar=False), a @ a.T, atol=0.08)


def test_draw_without_a_prior_is_the_standard_normal_itself():
    eps = np.random.default_rng(1).standard_normal((3, 5))
    np.testing.assert_array_equal(prior.draw(None, eps), eps.astype(np.float32))
    np.testing.assert_allclose(prior.draw(None, eps, 0.5), 0.5 * eps, rtol=1e-6)  # a temperature scales eps
    np.testing.assert_array_equal(prior.draw({"mean": np.ones(5), "scale": np.eye(5)}, eps, 0.0), np.ones((3, 5)))


@pytest.mark.parametrize("bad, message", [
    ({"mean": np.zeros(4)}, "lacks"),
    ({"mean": np.zeros(3), "scale": np.eye(3)}, "4 dimensions"),
    ({"mean": np.zeros(4), "scale": np.full((4, 4), np.nan)}, "non-finite"),
])
def test_check_prior_names_the_problem(bad, message):
    assert message in prior.check_prior(bad, 4, "here")
    assert prior.check_prior({"mean": np.zeros(4), "scale": np.eye(4)}, 4, "here") is None


def test_fit_items_are_a_seeded_subset():
    assert list(prior.fit_items(5)) == [0, 1, 2, 3, 4]
    a = prior.fit_items(10_000, seed=3)
    assert len(a) == prior.FIT_IMAGES and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, prior.fit_items(10_000, seed=3))
    assert not np.array_equal(a, prior.fit_items(10_000, seed=4))


def _train_mu(run_dir, state):
    """mu of the images the run's prior was fitted to, recomputed from the checkpoint's encoder."""
    from dvgan import data as data_mod
    from dvgan.train.checkpoint import build_models
    cfg, enc, _ = build_models(state)
    train = np.asarray(json.load(open(os.path.join(run_dir, "split.json")))["train"])
    rows = train[prior.fit_items(len(train), state["train_config"]["seed"])]
    data = data_mod.load(state["data"]["spec"], cfg.image_size, cfg.channels, seed=state["data"].get("seed") or 0)
    with torch.no_grad():
        return enc(torch.from_numpy(data.float_images(rows)))[1].double()


def test_training_checkpoint_holds_the_prior_of_its_own_weights(tiny_run):
    from dvgan.train.checkpoint import load_checkpoint, saved_prior
    state = load_checkpoint(tiny_run)
    fitted = saved_prior(state, state["model_config"]["z_dim"])
    mu = _train_mu(tiny_run, state)
    assert fitted["n_images"] == len(mu)
    np.testing.assert_allclose(fitted["mean"].numpy(), mu.mean(0).numpy(), atol=1e-5)
    np.testing.assert_allclose((fitted["scale"] @ fitted["scale"].T).numpy(), np.cov(mu.numpy(), rowvar=False),
                               atol=1e-4)


def test_evaluation_and_export_read_the_prior_of_a_format_1_checkpoint(tiny_run, tmp_path):
    """A dvgan 0.1.0 run (checkpoint format 1) that carries the prior is evaluated and exported with it."""
    from conftest import as_format_1
    from dvgan.eval.suite import load_run
    from dvgan.export import export_bundle
    from dvgan.train.checkpoint import load_checkpoint
    old = str(tmp_path / "old")
    shutil.copytree(tiny_run, old)
    path = os.path.join(old, "checkpoint.pt")
    want = torch.load(path, weights_only=True)["z_prior"]
    torch.save(as_format_1(load_checkpoint(old)), path)
    assert torch.load(path, weights_only=True)["format_version"] == 1
    run = load_run(old)
    np.testing.assert_array_equal(run["prior"]["mean"].numpy(), want["mean"].numpy())
    np.testing.assert_array_equal(run["prior"]["scale"].numpy(), want["scale"].numpy())
    bundle = export_bundle(old, str(tmp_path / "bundle"))
    with np.load(os.path.join(bundle, "z_prior.npz")) as f:
        np.testing.assert_array_equal(f["mean"], want["mean"].numpy())


def _as_a_0_1_bundle(bundle: str) -> None:
    """Make bundle one that dvgan 0.1.0 exported from a checkpoint without the prior: no z_prior.npz, and
    model.pt in checkpoint format 1, without a prior; checksums updated (bundle format 1 is unchanged)."""
    from conftest import as_format_1
    from dvgan.files import sha256_file
    os.remove(os.path.join(bundle, "z_prior.npz"))
    weights = os.path.join(bundle, "model.pt")
    torch.save(as_format_1(torch.load(weights, weights_only=True)), weights)
    manifest_path = os.path.join(bundle, "manifest.json")
    m = json.load(open(manifest_path))
    m["z_prior"] = None
    del m["files"]["z_prior.npz"]
    m["files"]["model.pt"].update(sha256=sha256_file(weights), bytes=os.path.getsize(weights))
    with open(manifest_path, "w") as fh:
        json.dump(m, fh)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_bundle_without_a_prior_samples_the_standard_normal(tmp_path, backend):
    """A bundle that dvgan 0.1.0 exported from a checkpoint written before the prior still loads, on every
    backend: auto means N(0, I); fitted is refused."""
    from dvgan.engine import Engine
    from dvgan.export import export_bundle
    from test_export import make_checkpoint
    out = export_bundle(make_checkpoint(tmp_path / "checkpoint.pt"), str(tmp_path / "bundle"))
    _as_a_0_1_bundle(out)
    eng = Engine.load(out, backend, "cpu")
    assert eng.z_prior is None and eng.manifest["z_prior"] is None
    x = np.zeros((1, 3, 32, 32), np.float32)
    np.testing.assert_array_equal(eng.sample(x, 3, seed=1), eng.sample(x, 3, seed=1, prior="standard"))
    with pytest.raises(UsageError, match="no fitted prior"):
        eng.sample(x, 3, prior="fitted")
    with pytest.raises(UsageError, match="prior must be one of"):
        eng.sample(x, 3, prior="gaussian")
