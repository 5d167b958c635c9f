"""Evaluation: every metric on synthetic codes whose answer is known, the figures' grid sizes, and
one quick end-to-end report (and side-by-side table) on two tiny sprites runs."""
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from dvgan import data as data_mod
from dvgan.cli.main import cli
from dvgan.config import ModelConfig, TrainConfig
from dvgan.data import sprites
from dvgan.data.preprocess import float_to_uint8
from dvgan.eval import analogies, figures, judge, probes, retrieval
from dvgan.figures import PAD, swap_grid
from dvgan.model import Decoder, Encoder


def balanced(n_classes, per_class):
    return np.repeat(np.arange(n_classes), per_class)


# -- probes -------------------------------------------------------------------------------------

def test_probe_split_train_test_uses_the_run_split():
    fit, held = probes.probe_split("train-test", 5, np.array([0, 1, 1]))
    assert fit.tolist() == [0, 1, 2, 3, 4] and held.tolist() == [5, 6, 7]


def test_probe_split_test_split_is_stratified_disjoint_and_seeded():
    labels = np.array([0] * 8 + [1] * 4 + [2] * 1 + [3] * 2)
    fit, held = probes.probe_split("test-split", 10, labels, seed=3)
    assert set(fit).isdisjoint(held) and sorted(np.concatenate([fit, held]) - 10) == list(range(len(labels)))
    assert np.bincount(labels[held - 10], minlength=4).tolist() == [2, 1, 0, 1]  # 25% per label, >= 1 if possible
    assert 12 + 10 in fit  # a label with one image only trains the probe
    again = probes.probe_split("test-split", 10, labels, seed=3)
    other = probes.probe_split("test-split", 10, labels, seed=4)
    assert np.array_equal(again[1], held) and not np.array_equal(other[1], held)
    with pytest.raises(ValueError):
        probes.probe_split("other", 0, labels)


def test_protocols_follow_the_split_kind():
    assert probes.protocols_for("identity") == ["test-split"]
    assert probes.protocols_for("fixed") == probes.protocols_for("within") == ["train-test", "test-split"]


def test_chance_error_is_one_minus_majority_frequency():
    assert probes.chance_error([0, 0, 0, 1]) == pytest.approx(0.25)
    assert probes.chance_error(balanced(10, 3)) == pytest.approx(0.9)


def test_subsample_is_stratified_and_deterministic():
    labels = balanced(4, 50)
    rows = np.arange(200)
    pick = probes.subsample(rows, labels, 40, seed=1)
    assert len(pick) == 40 and np.bincount(labels[pick]).tolist() == [10, 10, 10, 10]
    assert np.array_equal(pick, probes.subsample(rows, labels, 40, seed=1))
    assert np.array_equal(probes.subsample(rows, labels, None, seed=1), rows)


def test_one_hot_codes_give_zero_error():
    rng = np.random.default_rng(0)
    y = rng.permutation(balanced(10, 40))
    codes = np.eye(10)[y] + 0.01 * rng.standard_normal((len(y), 10))
    r = probes.classify(codes[:300], y[:300], codes[300:], y[300:], seed=0)
    assert r["train_error"] == 0.0 and r["test_error"] == 0.0
    assert r["chance_error"] == pytest.approx(probes.chance_error(y[300:]))


def test_random_codes_give_chance():
    rng = np.random.default_rng(1)
    y = rng.choice(4, 800, p=[0.55, 0.15, 0.15, 0.15])
    codes = rng.standard_normal((800, 16))
    r = probes.classify(codes[:600], y[:600], codes[600:], y[600:], seed=0)
    assert r["test_error"] >= r["chance_error"] - 0.06
    assert 0.3 < r["chance_error"] < 0.6


def test_probe_on_a_small_set_is_not_kept_underfit():
    """On 8 codes a class for 15 classes the validation part holds a dozen codes, which an underfit probe
    already names without a miss; at equal validation accuracy the lower validation loss decides, so the
    probe trains on and names well-separated test codes on every seed."""
    from dvgan.eval.probes import classify
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(15, 64))
    y_fit, y_eval = np.repeat(np.arange(15), 8), np.repeat(np.arange(15), 3)
    x_fit = centres[y_fit] + rng.normal(size=(120, 64))
    x_eval = centres[y_eval] + rng.normal(size=(45, 64))
    errors = [classify(x_fit, y_fit, x_eval, y_eval, seed=s)["test_error"] for s in range(5)]
    assert errors == [0.0] * 5


def test_early_stopping_keeps_the_lower_loss_at_equal_accuracy():
    """The rule both the MLP probe and the CNN keep epochs by: accuracy decides; within 1e-4 of a tie the
    validation loss does; a worse accuracy never wins on its loss."""
    assert probes.improves((0.5, -2.0), None)
    assert probes.improves((1.0, -0.3), (1.0, -0.9))          # same accuracy, lower loss: keep the later epoch
    assert not probes.improves((1.0, -0.9), (1.0, -0.3))
    assert not probes.improves((0.9, -0.01), (1.0, -0.9))     # lower accuracy loses, whatever its loss
    assert probes.improves((0.8,), (0.7,)) and not probes.improves((0.7,), (0.7,))
    logits, target = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1])
    acc, neg_loss = probes.validation_score(logits, target)
    assert acc == 1.0 and neg_loss == pytest.approx(-torch.nn.functional.cross_entropy(logits, target).item())


def test_nearest_class_mean_names_separated_classes_and_misses_unrelated_codes():
    rng = np.random.default_rng(1)
    centres = 3.0 * rng.normal(size=(6, 16))
    y_fit, y_eval = np.repeat(np.arange(6) * 10, 8), np.repeat(np.arange(6) * 10, 4)  # labels need not be 0..K-1
    x_fit, x_eval = centres[y_fit // 10] + rng.normal(size=(48, 16)), centres[y_eval // 10] + rng.normal(size=(24, 16))
    assert np.array_equal(probes.nearest_class_mean(x_fit, y_fit, x_eval), y_eval)
    noise = rng.normal(size=(600, 16))
    wrong = probes.nearest_class_mean(noise[:480], np.repeat(np.arange(6), 80), noise[480:]) != np.repeat(np.arange(6), 20)
    assert wrong.mean() > 0.5  # chance is 5/6


def test_regression_probe_r2():
    rng = np.random.default_rng(2)
    codes = rng.standard_normal((500, 8))
    target = codes[:, 0] * 2.0 - codes[:, 1] + 3.0
    good = probes.regress(codes[:400], target[:400], codes[400:], target[400:], seed=0)
    noise = rng.standard_normal(500)
    bad = probes.regress(codes[:400], noise[:400], codes[400:], noise[400:], seed=0)
    assert good["test_r2"] > 0.9 and bad["test_r2"] < 0.1
    both = probes.regress(codes[:400], np.stack([target, noise], 1)[:400], codes[400:],
                          np.stack([target, noise], 1)[400:], seed=0)  # one MLP, an R^2 per target
    assert len(both["test_r2"]) == 2 and both["test_r2"][0] > 0.9 and both["test_r2"][1] < 0.1
    assert probes.r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0 and probes.r2([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0


def test_cnn_reads_a_class_visible_in_the_image():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 240)
    img = np.full((240, 1, 16, 16), -1.0, np.float32)
    for i, c in enumerate(y):  # class = the bright quadrant
        img[i, 0, (c // 2) * 8:(c // 2) * 8 + 8, (c % 2) * 8:(c % 2) * 8 + 8] = 1.0
    img += 0.3 * rng.standard_normal(img.shape).astype(np.float32)
    r = probes.cnn_classify(img[:180], y[:180], img[180:], y[180:], seed=0, epochs=3)
    assert r["test_error"] < 0.1


# -- retrieval ----------------------------------------------------------------------------------

def test_one_hot_codes_retrieve_perfectly():
    y = balanced(6, 12)
    r = retrieval.identity_retrieval(np.eye(6)[y] + 1e-3 * np.random.default_rng(0).standard_normal((72, 6)), y, 10)
    assert r["precision_at_k"] == 1.0 and r["map"] == pytest.approx(1.0)
    assert r["chance_precision"] == pytest.approx(11 / 71)
    assert r["best_precision"] == 1.0


def test_best_precision_is_the_ceiling_of_small_identities():
    y = balanced(20, 2)  # two items a label, as ORL's test split: one relevant item per query
    r = retrieval.identity_retrieval(np.eye(20)[y], y, 10)
    assert r["precision_at_k"] == pytest.approx(0.1) and r["best_precision"] == pytest.approx(0.1)
    assert r["map"] == pytest.approx(1.0)


def test_random_codes_retrieve_at_chance():
    rng = np.random.default_rng(4)
    y = balanced(5, 100)
    r = retrieval.identity_retrieval(rng.standard_normal((500, 16)), y, 10)
    assert abs(r["precision_at_k"] - r["chance_precision"]) < 0.03
    assert abs(r["map"] - r["chance_precision"]) < 0.03


def test_retrieval_matches_the_brute_force_reference():
    from sklearn.metrics import average_precision_score
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 70)
    codes = rng.standard_normal((70, 5)) + y[:, None] * 0.5
    precisions, aps, nbs = [], [], []
    for i in range(len(y)):
        others = np.array([j for j in range(len(y)) if j != i])
        sim = -np.linalg.norm(codes[others] - codes[i], axis=1)
        order = others[np.argsort(-sim, kind="stable")]
        nbs.append(order[:5])
        precisions.append(np.mean(y[order[:5]] == y[i]))
        if np.any(y[others] == y[i]):
            aps.append(average_precision_score(y[others] == y[i], sim))
    r = retrieval.identity_retrieval(codes, y, 5)
    assert r["precision_at_k"] == pytest.approx(np.mean(precisions))
    assert r["map"] == pytest.approx(np.mean(aps))
    assert np.array_equal(retrieval.neighbours(codes, 5), np.stack(nbs))


def test_factor_retrieval_sees_codes_that_hold_the_factors():
    rng = np.random.default_rng(6)
    factors = sprites.sample_factors(600, rng)
    held = retrieval.factor_retrieval(factors - sprites.FACTOR_RANGES[:, 0], factors, sprites.FACTOR_RANGES)
    blind = retrieval.factor_retrieval(rng.standard_normal((600, 8)), factors, sprites.FACTOR_RANGES)
    assert held["ratio"] < 0.35 and 0.9 < blind["ratio"] < 1.1
    assert blind["random_distance"] == pytest.approx(1 / 3, abs=0.02)


# -- analogies ----------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [3, 1])
def test_true_images_match_the_data_set_bytes(channels):
    d = data_mod.load("sprites:2", 16, channels, seed=5)
    rows = np.arange(0, len(d), 37)
    truth = analogies.true_images(d.labels[rows], d.factors[rows], 16, channels)
    assert np.array_equal(float_to_uint8(truth), d.images[rows])


def test_image_scores():
    truth = np.random.default_rng(7).uniform(-1, 1, (4, 3, 8, 8))
    exact = analogies.image_scores(truth, truth)
    assert exact == {"mse": 0.0, "psnr": analogies.PSNR_CAP, "ssim": pytest.approx(1.0)}
    off = analogies.image_scores(truth + 0.2, truth)
    assert off["mse"] == pytest.approx(0.04) and off["psnr"] == pytest.approx(20.0)  # 10 log10(2^2 / 0.04)
    assert off["ssim"] < 1.0


def test_analogy_pairs_have_different_identities_and_are_seeded():
    labels = np.array([0, 0, 1, 2, 2, 2])
    a, b = analogies.pairs(labels, 50, seed=1)
    assert len(a) == 50 and np.all(labels[a] != labels[b])
    assert np.array_equal(a, analogies.pairs(labels, 50, seed=1)[0])


def test_baselines_score_what_they_must():
    rng = np.random.default_rng(8)
    ids = np.array([0, 17, 40, 99])
    f_a, f_b = sprites.sample_factors(4, rng), sprites.sample_factors(4, rng)
    x_a = analogies.true_images(ids, f_a, 16, 3)
    x_b = analogies.true_images(ids[::-1], f_b, 16, 3)
    truth = analogies.true_images(ids, f_b, 16, 3)
    mean = np.zeros_like(truth)
    oracle = analogies.score_analogies(lambda xa, xb: truth, x_a, x_b, truth, mean)
    assert oracle["model"]["mse"] == 0.0 and oracle["model"]["psnr"] == analogies.PSNR_CAP
    copy = analogies.score_analogies(lambda xa, xb: xa, x_a, x_b, truth, mean)
    assert copy["model"] == copy["copy_a"]
    assert copy["copy_b"]["mse"] == pytest.approx(np.mean((x_b - truth) ** 2))
    assert copy["identity_mean"]["mse"] == pytest.approx(np.mean(truth ** 2))
    assert copy["z_from_truth"] == copy["copy_a"]  # the copy model ignores b, wherever it comes from
    assert copy["s_from_truth"]["psnr"] == analogies.PSNR_CAP  # ... and copies the truth when it is a
    same_pose = analogies.score_analogies(lambda xa, xb: xa, x_a, x_b, x_a, mean)  # truth == a: copy a exact
    assert same_pose["copy_a"]["mse"] == 0.0


def test_sprite_analogies_on_a_copy_model():
    d = data_mod.load("sprites:3", 16, 3, seed=0)
    split = data_mod.make_split(d, holdout_identities=0.2, seed=0)
    out = analogies.against_truth(lambda xa, xb: xb, d, split, 30, seed=0)
    for part in ("unseen", "seen"):
        assert out[part]["n_pairs"] == 30
        assert out[part]["model"] == out[part]["copy_b"]
        assert out[part]["copy_a"]["mse"] > 0
        assert out[part]["reconstruction"]["psnr"] == analogies.PSNR_CAP  # copy b of (a, a) is a
        assert out[part]["z_from_truth"]["psnr"] == analogies.PSNR_CAP and out[part]["s_from_truth"] == out[part]["copy_b"]


def test_nearest_render_psnr_finds_the_render_among_many():
    rng = np.random.default_rng(5)
    f = sprites.sample_factors(3, rng)
    images = analogies.true_images(np.full(3, 42), f, 16, 3)
    near = analogies.nearest_render_psnr(images, 42, 16, 3, 256, np.random.default_rng(6))
    far = analogies.nearest_render_psnr(images, 43, 16, 3, 256, np.random.default_rng(6))  # another colour
    exact = analogies.nearest_render_psnr(analogies.true_images(np.array([7]), sprites.sample_factors(1, np.random.default_rng(9)), 16, 3),
                                          7, 16, 3, 1, np.random.default_rng(9))  # the same draw: the render itself
    assert exact[0] == analogies.PSNR_CAP
    assert (near > far + 1.0).all()


def test_sprite_samples_score_copies_of_a_like_real_images_of_a():
    """A 'sampler' that returns the image of a scores like fresh renders of a, well above another identity;
    one that returns another identity's image scores like the other-identity reference."""
    d = data_mod.load("sprites:3", 16, 3, seed=0)
    split = data_mod.make_split(d, holdout_identities=0.2, seed=0)
    copy_a = analogies.sprite_samples(lambda xa, z: xa, lambda xa, xb: xb, d, split, 16, 3, 5, 12, per_id=3,
                                      n_renders=128, seed=0)
    assert copy_a["n_identities"] == 12 and copy_a["per_identity"] == 3
    assert abs(copy_a["model"] - copy_a["real"]) < 1.5
    assert copy_a["model"] > copy_a["other_identity"] + 2.0
    assert copy_a["swap"] < copy_a["model"]  # the 'swap' here copies b, another identity
    blank = analogies.sprite_samples(lambda xa, z: np.full_like(xa, 1.0), lambda xa, xb: xa, d, split, 16, 3, 5, 12,
                                     per_id=3, n_renders=128, seed=0)
    assert blank["model"] < blank["other_identity"] < blank["real"]
    assert "standard_normal" not in blank  # no prior: the model's samples are the N(0, I) ones


def test_sprite_samples_draw_z_from_the_prior():
    """With the identity prior (mean 0, scale I) the model's draws are the N(0, I) ones; with a shifted
    prior the sampler sees z moved by the mean."""
    d = data_mod.load("sprites:3", 16, 3, seed=0)
    split = data_mod.make_split(d, holdout_identities=0.2, seed=0)
    z_of = lambda xa, z: np.broadcast_to(z[:, :1, None, None], xa.shape).copy() * 0.1  # noqa: E731
    args = (lambda xa, xb: xb, d, split, 16, 3, 5, 4)
    unit = analogies.sprite_samples(z_of, *args, per_id=2, n_renders=64, seed=0,
                                    prior={"mean": np.zeros(5), "scale": np.eye(5)})
    assert unit["model"] == unit["standard_normal"]
    shifted = analogies.sprite_samples(z_of, *args, per_id=2, n_renders=64, seed=0,
                                       prior={"mean": np.full(5, 9.0), "scale": np.eye(5)})
    assert shifted["standard_normal"] == unit["standard_normal"] and shifted["model"] != unit["model"]


# -- judged drawings ----------------------------------------------------------------------------

def quadrant_set(n=400, seed=3):
    """Images whose label (0-3) is the bright quadrant, in noise: uint8 (N, 1, 16, 16)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    img = np.full((n, 1, 16, 16), -1.0, np.float32)
    for i, c in enumerate(y):
        img[i, 0, (c // 2) * 8:(c // 2) * 8 + 8, (c % 2) * 8:(c % 2) * 8 + 8] = 1.0
    img = np.clip(img + 0.3 * rng.standard_normal(img.shape), -1, 1).astype(np.float32)
    return data_mod.ImageSet(float_to_uint8(img), y.astype(np.int64), [f"q:{i}" for i in range(n)],
                             [str(c) for c in range(4)], spec="quadrants")


def test_judged_drawings_name_copies_of_a_and_of_b():
    d = quadrant_set()
    split = data_mod.make_split(d, test_fraction=0.25, seed=0)
    assert judge.applies(split, d.labels)
    net = judge.fit_judge(d, split, fit_images=1000, epochs=3, seed=0)
    copy_a = judge.judged_drawings(lambda xa, xb: xa, lambda xa, z: xa, d, split, 2, 200, net, seed=0)
    assert copy_a["real"] > 0.9 and copy_a["n_pairs"] == 200
    assert copy_a["n_fit"] == 300 and copy_a["epochs"] == 10  # fewer images than fit_images: more epochs
    assert abs(copy_a["swap_follows_s"] - copy_a["real"]) < 0.1 and copy_a["swap_follows_z"] < 0.1
    assert abs(copy_a["samples"] - copy_a["real"]) < 0.1 and "standard_normal" not in copy_a
    copy_b = judge.judged_drawings(lambda xa, xb: xb, lambda xa, z: np.full_like(xa, -1.0), d, split, 2, 200, net,
                                   seed=0)
    assert copy_b["swap_follows_z"] > 0.9 and copy_b["swap_follows_s"] < 0.1
    assert copy_b["samples"] < 0.5  # a blank image gets one label for every a
    assert 0.2 < copy_b["chance"] < 0.35


def test_judged_drawings_sample_z_from_the_prior():
    """The sampler sees z from the prior (mean 9 here) at the temperature, and the N(0, I) draws beside them."""
    d = quadrant_set(120)
    split = data_mod.make_split(d, test_fraction=0.25, seed=0)
    net = judge.fit_judge(d, split, fit_images=100, epochs=1, seed=0)
    seen = []
    def sample(xa, z):
        seen.append(z.copy())
        return xa
    fitted = {"mean": np.full(3, 9.0), "scale": np.eye(3)}
    out = judge.judged_drawings(lambda xa, xb: xa, sample, d, split, 3, 50, net, seed=0, prior=fitted)
    assert "standard_normal" in out and abs(seen[0].mean() - 9.0) < 1.0 and abs(seen[1].mean()) < 1.0
    judge.judged_drawings(lambda xa, xb: xa, sample, d, split, 3, 50, net, seed=0, prior=fitted, temperature=0.5)
    np.testing.assert_allclose(seen[2] - 9.0, 0.5 * seen[1], atol=1e-5)  # the same draws, half as far out


def test_judging_needs_test_identities_seen_in_training():
    d = quadrant_set(80)
    assert not judge.applies(data_mod.make_split(d, holdout_identities=0.5, seed=0), d.labels)


# -- figures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_models():
    cfg = ModelConfig(image_size=16, channels=3, s_dim=4, z_dim=3, width=4, adv_width=4)
    torch.manual_seed(0)
    return Encoder(cfg).eval(), Decoder(cfg).eval()


def tiles(grid, size=16, pad=PAD):
    return (grid.shape[0] - pad) // (size + pad), (grid.shape[1] - pad) // (size + pad)


def test_figure_grid_sizes(tiny_models):
    enc, dec = tiny_models
    x = torch.rand(5, 3, 16, 16) * 2 - 1
    assert tiles(swap_grid(enc, dec, x[:4], x[:3])) == (4, 5)
    assert tiles(figures.interpolation_grid(enc, dec, x[:1], x[1:2], steps=6)) == (6, 8)
    assert tiles(figures.sample_grid(enc, dec, x, n_samples=7)) == (5, 8)
    images = float_to_uint8(x.numpy())
    strips = figures.retrieval_strips(images, [0, 2], np.array([[1, 2, 3], [4, 0, 1]]))
    assert tiles(strips) == (2, 5)
    assert np.all(strips[PAD:PAD + 16, 2 * PAD + 16:2 * PAD + 32] == 255)  # lane


def test_interpolation_cells_match_direct_decoding(tiny_models):
    enc, dec = tiny_models
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    steps, p, size = 5, PAD, 16
    grid = figures.interpolation_grid(enc, dec, x[:1], x[1:], steps=steps)
    with torch.no_grad():
        s, mu, _ = enc(x)
        for i, j in [(0, 0), (1, 3), (4, 4)]:
            cell = dec(s[:1] + (s[1:] - s[:1]) * j / (steps - 1), mu[:1] + (mu[1:] - mu[:1]) * i / (steps - 1))
            y0, x0 = p + i * (size + p), p + (j + 1) * (size + p)
            want = float_to_uint8(cell.numpy())[0].transpose(1, 2, 0)
            assert np.abs(grid[y0:y0 + size, x0:x0 + size].astype(int) - want).max() <= 1


# -- end to end ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from dvgan.train.loop import train
    root = tmp_path_factory.mktemp("eval")
    runs = []
    # The ablation run also has a within-identity split, so both probe protocols are exercised.
    for name, w_gan, data in (("full", 0.01, {"spec": "sprites:4"}),
                              ("lambda0", 0.0, {"spec": "sprites:8", "test_fraction": 0.25})):
        cfg = ModelConfig(image_size=32, channels=3, s_dim=8, z_dim=8, width=8, adv_width=8)
        train(cfg, TrainConfig(steps=3, batch_size=8, sample_every=0, w_gan=w_gan), data,
              str(root / name), device="cpu", progress=False)
        runs.append(str(root / name))
    return root, runs


def strict_json(path):
    def refuse(name):
        raise ValueError(f"non-finite number {name} in {path}")
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def test_cli_evaluates_two_runs_side_by_side(two_runs):
    root, runs = two_runs
    assert strict_json(os.path.join(runs[0], "split.json"))["kind"] == "identity"
    out = root / "report"
    res = CliRunner().invoke(cli, ["eval", runs[0], "--compare", runs[1], "-o", str(out), "--quick"])
    assert res.exit_code == 0, res.output
    assert "s test error %" in res.output and "lambda0" in res.output
    compare = (out / "compare.md").read_text()
    assert "full" in compare and "lambda0" in compare and "| lambda (w_gan) | 0.01 | 0.0 |" in compare
    judged = strict_json(out / "lambda0" / "report.json")["judged"]  # a within-identity split: judged
    assert judged["n_pairs"] == 500 and judged["real"] > judged["chance"] and "judged" not in strict_json(
        out / "full" / "report.json")  # unseen test identities: no classifier can name them
    assert "## Judged drawings" in (out / "lambda0" / "report.md").read_text()
    within = strict_json(out / "lambda0" / "report.json")["probes"]
    assert within["primary"] == "train-test" and list(within["protocols"]) == ["train-test", "test-split"]
    assert within["protocols"]["train-test"]["n_eval"] == 256 * 2  # every test image (2 per identity)
    for name in ("full", "lambda0"):
        rep = strict_json(out / name / "report.json")
        assert rep["quick"] is True
        p = rep["probes"]["protocols"]["test-split"]
        assert p["n_eval"] == rep["split"]["n_test_identities"]  # one probe-test image per identity
        assert set(p["results"]) == {"s", "z_mu", "z_sample", "pixels", "cnn"}
        assert set(rep["attributes"]) == set(sprites.ATTRIBUTES) and set(rep["factors"]) == set(sprites.FACTORS)
        assert set(rep["analogies"]) == {"unseen", "seen"}
        assert rep["samples"]["n_identities"] == min(rep["sizes"]["sample_ids"], rep["split"]["n_test_identities"])
        assert rep["retrieval"]["n"] == min(rep["split"]["n_test"], rep["sizes"]["retrieval"])
        md = (out / name / "report.md").read_text()
        assert "Quick evaluation" in md
        rec = rep["analogies"]["unseen"]["reconstruction"]
        assert f"| reconstruction of a, Dec(s_a, mu_a) vs a (the ceiling) | {rec['mse']:.4f} | {rec['psnr']:.2f} |" in md
        for fig in rep["figures"].values():
            assert f"]({fig})" in md and os.path.getsize(out / name / fig) > 0
        assert set(rep["figures"]) == {"swap", "swap_truth", "interpolation", "samples", "retrieval_s", "retrieval_z"}
    from PIL import Image
    with Image.open(out / "full" / "swap.png") as im:  # 10 identities: 11 x 11 tiles, saved at 2x
        assert im.size == (2 * (11 * 34 + 2),) * 2
        swap = np.asarray(im)
    with Image.open(out / "full" / "swap_truth.png") as im:
        truth = np.asarray(im)
    tile = lambda g, r, c: g[2 * (2 + 34 * r):2 * (2 + 34 * r + 32), 2 * (2 + 34 * c):2 * (2 + 34 * c + 32)]  # noqa: E731
    assert truth.shape == swap.shape
    assert np.array_equal(truth[:2 * 36], swap[:2 * 36]) and np.array_equal(truth[:, :2 * 36], swap[:, :2 * 36])
    for k in range(1, 11):  # the renderer's image of an identity in its own pose is the image itself
        assert np.array_equal(tile(truth, k, k), tile(truth, 0, k)) and np.array_equal(tile(truth, k, k), tile(truth, k, 0))
    assert not np.array_equal(tile(truth, 1, 2), tile(truth, 0, 2))  # another pose


def test_eval_measures_an_exported_bundle_on_its_backend(two_runs):
    """--bundle: the probes read the bundle's codes and the analogies its swaps; on onnxruntime fp32 they
    match the run's own numbers, fp16 stays close, and a bundle of another run is refused in one line."""
    from dvgan.export import export_bundle
    root, runs = two_runs
    bundle = str(root / "bundle-full")
    export_bundle(runs[0], bundle, fp16=True)
    res = CliRunner().invoke(cli, ["eval", runs[0], "--quick", "-o", str(root / "own")])
    assert res.exit_code == 0, res.output
    own = strict_json(root / "own" / "report.json")
    assert own["run"]["bundle"] is None and "codes and swaps through" not in res.output
    for precision, tol_db in (("fp32", 1e-3), ("fp16", 0.5)):
        out = root / f"bundle-{precision}"
        res = CliRunner().invoke(cli, ["eval", runs[0], "--quick", "-o", str(out), "--bundle", bundle,
                                       "--backend", "onnxruntime", "--precision", precision])
        assert res.exit_code == 0, res.output
        assert f"onnxruntime {precision} on cpu" in res.output          # the summary names the engine
        rep = strict_json(out / "report.json")
        assert rep["run"]["through"].startswith(f"onnxruntime {precision}") and rep["run"]["bundle"] == bundle
        a, b = own["analogies"]["unseen"], rep["analogies"]["unseen"]
        assert abs(a["model"]["psnr"] - b["model"]["psnr"]) < tol_db and a["copy_a"] == b["copy_a"]
        pa, pb = (r["probes"]["protocols"]["test-split"]["results"] for r in (own, rep))
        assert pa["pixels"] == pb["pixels"]                             # the same images and protocol
    res = CliRunner().invoke(cli, ["eval", runs[1], "--bundle", bundle, "--quick", "-o", str(root / "wrong")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "not exported from" in res.output
    res = CliRunner().invoke(cli, ["eval", runs[0], "--backend", "onnxruntime"])
    assert res.exit_code == 2 and "give --bundle" in res.output
    res = CliRunner().invoke(cli, ["eval", runs[0], runs[1], "--bundle", bundle])
    assert res.exit_code == 2 and "one RUN_DIR" in res.output


def test_cli_errors_are_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["eval", str(tmp_path / "missing")])
    assert res.exit_code == 2 and res.output.strip().count("\n") == 0 and "no such run folder" in res.output
    res = CliRunner().invoke(cli, ["eval", str(tmp_path)])
    assert res.exit_code == 2 and "no checkpoint.pt" in res.output


def test_probe_jobs_side_by_side_give_what_they_give_one_after_another():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 300)
    x = rng.normal(size=(300, 6)).astype(np.float32) + y[:, None]  # separable: a probe learns something
    jobs = [(probes.classify, (x[:200], y[:200], x[200:], y[200:]), {"seed": sd, "max_epochs": 5}) for sd in range(3)]
    jobs.append((probes.regress, (x[:200], y[:200].astype(float), x[200:], y[200:].astype(float)), {"seed": 0, "max_epochs": 5}))
    threads = torch.get_num_threads()
    serial = probes.run_jobs(jobs, workers=1)
    assert probes.run_jobs(jobs, workers=2) == serial  # in the order given, to the bit
    assert serial[0]["test_error"] < 0.5 and serial[3]["test_r2"] > 0.5
    assert torch.get_num_threads() == threads  # the workers' one thread each is theirs, not this process's


def test_a_failing_probe_job_raises_its_own_error():
    import math
    with pytest.raises(ValueError, match="math domain error"):
        probes.run_jobs([(math.sqrt, (4.0,), {}), (math.sqrt, (-1.0,), {})], workers=2)


# -- what a data set knows beyond the identity: LPC sheets --------------------------------------------

from conftest import write_lpc_folder  # noqa: E402
from dvgan.eval import suite  # noqa: E402


@pytest.fixture(scope="module")
def sheets(tmp_path_factory):
    """Synthetic LPC sheets of 12 characters at 32 x 32, split 10 / 2 by character: each (sex, hair) pair
    is two characters, so the training characters hold every pair and no attribute tells another."""
    root = tmp_path_factory.mktemp("lpc") / "sheets"
    write_lpc_folder(root, n=12)
    d = data_mod.load(f"lpc:{root}", 32)
    return d, data_mod.make_split(d, holdout_identities=2, seed=0)


def one_hot(columns):
    """Concatenated one-hot codes of integer columns (N, K), with a little noise."""
    columns = np.asarray(columns)
    parts = [np.eye(columns[:, j].max() + 1)[columns[:, j]] for j in range(columns.shape[1])]
    return np.concatenate(parts, 1) + 0.01 * np.random.default_rng(0).standard_normal((len(columns), sum(p.shape[1] for p in parts)))


def test_known_probes_read_labels_from_codes_that_are_the_labels(sheets):
    """s = the attributes, z = the pose: Table 1 reads the attributes of unseen characters from s and not
    from z; the pose classifiers read action, direction and frame from z and not from s."""
    d, split = sheets
    rng = np.random.default_rng(1)
    codes = {"s": one_hot(d.attributes), "z_mu": one_hot(d.factors)}
    codes["s"] = np.concatenate([codes["s"], rng.standard_normal((len(d), 4))], 1)
    feat = lambda name, items: codes[name][np.asarray(items)]  # noqa: E731
    sizes = {"probe_fit": 4000, "probe_eval": 2000, "max_epochs": 60}
    test, train = np.asarray(split["test"]), np.asarray(split["train"])
    # the headline protocol's items: the training characters' images fit the probes (enough of them for
    # early stopping to see the answer), the test characters' images test them
    out = suite._known_probes(feat, d, {"test-split": (train, test, train)}, split, sizes, seed=0)
    t1 = out["table1"]
    assert t1["protocol"] == "train-test" and t1["n_fit"] == len(split["train"]) and t1["n_eval"] == len(test)
    assert set(t1["attributes"]) == {"sex", "hair"}
    for name, a in t1["attributes"].items():
        assert a["s"]["test_error"] == 0.0, name
        assert a["z_mu"]["test_error"] >= a["chance_error"] - 0.1, name  # the pose says nothing of the character
    assert t1["mean"]["s"]["test_error"] == 0.0
    assert t1["mean"]["chance_error"] == pytest.approx(np.mean([a["chance_error"] for a in t1["attributes"].values()]))
    assert out["factor_kind"] == "categorical" and list(out["factors"]) == ["action", "direction", "frame"]
    for name, f in out["factors"].items():
        assert f["z_mu"]["test_error"] == 0.0, name
        assert f["s"]["test_error"] >= f["chance_error"] - 0.15, name
    assert out["attribute_mean"]["s"]["test_error"] == 0.0 and "n_fit" not in out["attributes"]


def test_pose_retrieval_by_codes_that_are_the_pose_and_by_random_codes(sheets):
    d, split = sheets
    items = np.asarray(split["test"])
    rng = np.random.default_rng(2)
    codes = {"z_mu": one_hot(d.factors[:, :2]), "s": rng.standard_normal((len(d), 8))}
    out = suite._retrieval(lambda name, rows: codes[name][np.asarray(rows)], d, items, 10, seed=0)
    pose = out["pose"]
    assert pose["factors"] == ["action", "direction"]
    assert pose["z_mu"]["precision_at_k"] == pytest.approx(pose["z_mu"]["best_precision"])  # poses of few images
    assert pose["z_mu"]["map"] == pytest.approx(1.0)
    assert abs(pose["s"]["precision_at_k"] - pose["s"]["chance_precision"]) < 0.05
    assert "factors" not in out  # no continuous factors to measure distances on


def ssim_by_windows(a, b, win=11, sigma=1.5):
    """The slow obvious SSIM of two (C, H, W) images in [-1, 1]: every window position and channel in
    turn, Gaussian-weighted statistics of the images mapped to [0, 1]."""
    a, b = (np.asarray(a, np.float64) + 1) / 2, (np.asarray(b, np.float64) + 1) / 2
    g = np.exp(-((np.arange(win) - (win - 1) / 2) ** 2) / (2 * sigma ** 2))
    w = np.outer(g, g) / g.sum() ** 2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for ch in range(a.shape[0]):
        for i in range(a.shape[1] - win + 1):
            for j in range(a.shape[2] - win + 1):
                pa, pb = a[ch, i:i + win, j:j + win], b[ch, i:i + win, j:j + win]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_the_window_by_window_reference():
    rng = np.random.default_rng(3)
    truth = rng.uniform(-1, 1, (3, 3, 16, 18))
    pred = np.clip(truth + 0.3 * rng.standard_normal(truth.shape), -1, 1)
    np.testing.assert_allclose(analogies.ssim(pred, truth), [ssim_by_windows(p, t) for p, t in zip(pred, truth)],
                               atol=1e-9)


def test_ssim_known_answers():
    x = np.random.default_rng(4).uniform(-1, 1, (2, 1, 16, 16))
    assert analogies.ssim(x, x) == pytest.approx([1.0, 1.0])
    assert (analogies.ssim(-x, x) < 0).all()  # the negative image: anti-correlated
    assert (np.abs(analogies.ssim(np.zeros_like(x), x)) < 0.05).all()  # a flat image keeps none of the structure
    noise = np.random.default_rng(5).uniform(-1, 1, (2, 3, 64, 64))
    assert (np.abs(analogies.ssim(noise[::-1], noise)) < 0.05).all()  # independent images of noise


def test_analogies_against_looked_up_truth_on_a_copy_model(sheets):
    d, split = sheets
    out = analogies.against_truth(lambda xa, xb: xb, d, split, 40, seed=0)
    for part in ("unseen", "seen"):
        a = out[part]
        assert a["n_pairs"] == 40 and "n_missing" not in a  # every sheet has the same cells
        assert a["model"] == a["copy_b"] and a["copy_a"]["mse"] > 0 and a["copy_b"]["mse"] > 0
        assert a["reconstruction"]["psnr"] == analogies.PSNR_CAP and a["reconstruction"]["ssim"] == pytest.approx(1.0)
        assert a["z_from_truth"]["psnr"] == analogies.PSNR_CAP and a["s_from_truth"] == a["copy_b"]
    grid, found = analogies.swap_truth_grid(d, np.asarray(split["test"][:4]))
    assert grid.shape == (4, 4, 3, 32, 32) and found.all()
    for k in range(4):  # a character in its own pose is its own image
        assert np.array_equal(grid[k, k], d.images[split["test"][k]])


def test_evaluate_an_lpc_run_end_to_end(tmp_path, sheets):
    from dvgan.train.loop import train
    d, _ = sheets
    root = os.path.dirname(d.meta["root"] + "/")
    cfg = ModelConfig(image_size=32, channels=3, s_dim=8, z_dim=8, width=8, adv_width=8)
    run = str(tmp_path / "run")
    train(cfg, TrainConfig(steps=3, batch_size=8, sample_every=0), {"spec": f"lpc:{root}", "holdout_identities": 3},
          run, device="cpu", progress=False)
    assert len(strict_json(os.path.join(run, "split.json"))["test_identities"]) == 3  # a count of characters
    res = CliRunner().invoke(cli, ["eval", run, "--quick"])
    assert res.exit_code == 0, res.output
    assert "Table 1 attributes, mean test error s / z / chance %" in res.output
    rep = strict_json(os.path.join(run, "eval", "report.json"))
    assert set(rep["table1"]["attributes"]) == {"sex", "hair"} and rep["factor_kind"] == "categorical"
    assert set(rep["factors"]) == {"action", "direction", "frame"} and "pose" in rep["retrieval"]
    assert set(rep["analogies"]) == {"unseen", "seen"} and "ssim" in rep["analogies"]["unseen"]["model"]
    assert "samples" not in rep  # scoring samples needs a renderer
    assert set(rep["figures"]) == {"swap", "swap_truth", "interpolation", "samples", "retrieval_s", "retrieval_z"}
    md = open(os.path.join(run, "eval", "report.md")).read()
    for heading in ("## The paper's Table 1", "## The pose: unspecified factors classified", "Same pose (action and direction)"):
        assert heading in md
