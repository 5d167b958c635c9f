"""evaluate(): every measurement of one trained run, on the test split that its training recorded.

Sections of the result (all errors are fractions in [0, 1]):
  probes      the paper's Table 1: identity probed from s, z (mu), z (a sample), raw pixels, and a
              CNN trained on the images; train / test / chance error, per probe protocol
  attributes  (data with identity attributes) each attribute probed from s and from z (mu), and the
              mean (attribute_mean); table1: the paper's Table 1 on them, probes fitted on the run's
              training identities and tested on its test identities
  factors     (data that knows each image's pose) each unspecified factor from z (mu) and from s:
              regressed, R^2, where continuous (sprites: x, y, scale, rotation); classified, error and
              chance, where categorical (LPC sheets: action, direction, frame)
  retrieval   precision@10 and mAP of same-identity neighbours by s and by z (mu); with continuous
              factors the factor distance of z- and s-neighbours against random pairs; with categorical
              ones precision@10 of the same pose (LPC: action and direction) by z and by s
  analogies   (data that knows the truth: ImageSet.knows_truth) Dec(s_a, mu_b) against the image of a's
              identity in b's pose, MSE, PSNR and SSIM, with baselines
  samples     (data with a renderer) conditional samples against the nearest render of their identity
  judged      (test identities seen in training: MNIST, ORL) whose identity a CNN trained on real
              images reads in swaps Dec(s_a, mu_b) and conditional samples Dec(s_a, z)
  figures     swap grid, interpolation grid, conditional samples, retrieval strips (PNG names)
"""
from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import torch

from .. import data as data_mod
from ..engine import Engine
from ..errors import InputError, UsageError
from ..figures import headed_grid, save_png, swap_grid
from ..model import reparameterize
from ..files import sha256_file
from ..train.checkpoint import CHECKPOINT, build_models, checkpoint_path, load_checkpoint, saved_prior
from . import analogies, figures, judge, probes, retrieval
from .report import write_comparison, write_report

log = logging.getLogger(__name__)

# Sizes of the full and the quick evaluation. Larger sets are subsampled, stratified and seeded,
# and the sizes used are recorded in the report.
FULL = {"probe_fit": 8000, "probe_eval": 4000, "pixel_fit": 8000, "cnn_epochs": 6, "max_epochs": probes.MAX_EPOCHS,
        "repeats": 3, "retrieval": 3000, "pairs": 300, "sample_ids": 64, "judged": 2000}
# The quick one keeps the identity probes' data and epochs (one seed): with fewer images and epochs it
# read no identity in a z where the full probe found it (benchmarks/RESULTS.md, "Sprites, the default
# recipe"), a leak it must not hide.
QUICK = {"probe_fit": 4000, "probe_eval": 2000, "pixel_fit": 4000, "cnn_epochs": 2, "max_epochs": probes.MAX_EPOCHS,
         "repeats": 1, "retrieval": 800, "pairs": 100, "sample_ids": 16, "judged": 500}
ENCODE_BATCH = 512  # images per encoder call; z_sample draws eps batch by batch, so this fixes its numbers
FIGURE_IDS = 10     # identities in the swap and sample figures
STRIP_QUERIES = 6   # queries in each retrieval strip figure
K = 10              # neighbours for precision@k and the strips
NOTES = [
    "Probes: MLP with one hidden layer of 256 ReLU units (torch, Adam 1e-3, minibatch 64) on standardized "
    "features; early stopping on a stratified 10% validation part of the probe's training data (patience 10 "
    "epochs; the best epoch kept: highest validation accuracy, then lowest validation loss). Factors are "
    "regressed by one MLP per code with one output per factor. "
    "Chance error = 1 - frequency of the majority class in the probe's test set. Identity-probe errors are "
    "means over several probe seeds (3 in the full evaluation, 1 in the quick one), their spread beside.",
    "Probe protocol 'train-test': trained on the codes of the run's training images, tested on the codes "
    "of its test images (the paper's train / test error). 'test-split': the run's test images alone, "
    "split per identity into probe-train (75%) and probe-test (25%); the only possible protocol when the "
    "test identities were never seen in training.",
    "z (mu) probes the posterior mean; z (sample) probes one draw z = mu + sigma * eps per image (seeded).",
    "Image classifier reference: two 3x3 stride-2 convs (16, 32) + FC 128, Adam 1e-3, best epoch on a "
    "10% validation part, trained and tested on the same images as the probes.",
    "Retrieval: Euclidean (L2) distance on the codes; every item queries all other items of the "
    "(subsampled) test split; relevant = same identity. Factor distance = mean |f_i - f_j| / factor range (random pairs ~ 1/3).",
    "Analogies: Dec(s_a, mu_b) against the true image of identity a in b's pose (the renderer's, or the data "
    "set's own image of a in that pose); MSE on [-1, 1] images, PSNR = 10 log10(2^2 / MSE) per pair "
    "(peak-to-peak 2.0), averaged, exact matches capped at 100 dB; SSIM per pair (11x11 Gaussian window, "
    "sigma 1.5, images mapped to [0, 1]), averaged.",
    "Table 1 (attributes): as the paper, probes fitted on the codes of the run's training images and tested "
    "on those of its test images (identities never seen by the model or the probe); the headline attribute "
    "probes use the identity probes' protocol.",
    "Judged drawings (test identities seen in training): the image-classifier reference network, trained "
    "on real training images, names the identity of swaps Dec(s_a, mu_b) for random test pairs of "
    "different identities and of conditional samples Dec(s_a, z) with the same a's.",
]


def load_run(run_dir: str, bundle: str | None = None, backend: str = "auto", precision: str = "auto") -> dict:
    """The run's checkpoint, models (eval mode, CPU), an Engine over it, data set and recorded split.

    The engine is the run's own (torch, CPU), or with bundle an exported bundle of this run opened on
    backend at precision (Engine.load), so that its codes and swaps are the ones measured."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such run folder")
    for name in (CHECKPOINT, "split.json"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise UsageError(f"{run_dir}: not a dvgan run folder (no {name})")
    state = load_checkpoint(run_dir)
    cfg, enc, dec = build_models(state)
    try:
        with open(os.path.join(run_dir, "split.json")) as f:
            split = json.load(f)
        info = state["data"]
        spec = info["spec"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{run_dir}: unreadable split.json or checkpoint data record ({exc})") from None
    data = data_mod.load(spec, cfg.image_size, cfg.channels, seed=info.get("seed") or 0)
    for part in ("train", "test"):
        idx = split.get(part, [])
        if any(not 0 <= i < len(data) for i in idx) or \
                [data.sources[i] for i in idx] != split.get("sources", {}).get(part, [data.sources[i] for i in idx]):
            raise InputError(f"{run_dir}: the data of {spec} no longer matches the split the run recorded")
    if not split.get("test"):
        raise InputError(f"{run_dir}: the run's test split is empty; nothing to evaluate on")
    # The probes read their codes through the engine, the door users serve through, in the batches they
    # always had (ENCODE_BATCH), so the numbers are as before. Swaps, samples and the figures call
    # dvgan.ops on the models in batches of analogies.BATCH: the engine's fused swap decodes
    # torch_backend.SWAP_CHUNK rows per call, and another batch size may change the last bits of a score.
    engine = Engine.from_run(run_dir, "cpu", max_batch=ENCODE_BATCH, state=state) if bundle is None else \
        _bundle_of(run_dir, bundle, backend, precision)
    return {"state": state, "cfg": cfg, "encoder": enc, "decoder": dec, "engine": engine, "data": data,
            "split": split, "prior": saved_prior(state, cfg.z_dim), "bundle": bundle}


def _bundle_of(run_dir: str, bundle: str, backend: str, precision: str) -> Engine:
    """Engine.load(bundle, backend, precision=precision), refused unless the bundle was exported from this
    run's checkpoint as it is now (the manifest records the checkpoint's sha256)."""
    engine = Engine.load(bundle, backend, "auto", precision=precision)
    recorded = (engine.manifest.get("source") or {}).get("checkpoint_sha256")
    if recorded != sha256_file(checkpoint_path(run_dir)):
        raise UsageError(f"{bundle}: not exported from the checkpoint in {run_dir} as it is now; "
                         f"export the run again with dvgan export")
    return engine


def encode(engine, images: np.ndarray, seed: int = 0, batch: int = ENCODE_BATCH) -> dict:
    """Codes of float images (N, C, H, W) through an Engine: {"s", "z_mu", "z_sample"} float32 arrays,
    z_sample one draw mu + sigma * eps per image, seeded."""
    gen = torch.Generator().manual_seed(seed)  # one generator for every batch: its draws go on where they stopped
    parts = {"s": [], "z_mu": [], "z_sample": []}
    for i in range(0, len(images), batch):
        codes = engine.encode(images[i:i + batch])
        parts["s"].append(codes.s)
        parts["z_mu"].append(codes.mu)
        z = reparameterize(torch.from_numpy(codes.mu), torch.from_numpy(codes.logvar), gen)
        parts["z_sample"].append(z.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


class Features:
    """Codes and pixels of dataset items, encoded once for every row any probe needs."""

    def __init__(self, run: dict, items: np.ndarray, seed: int):
        self.data = run["data"]
        self.items = np.unique(items)
        self.codes = encode(run["engine"], self.data.float_images(self.items), seed)

    def __call__(self, name: str, items) -> np.ndarray:
        if name == "pixels":
            return self.data.float_images(np.asarray(items)).reshape(len(items), -1)
        if name == "images":
            return self.data.float_images(np.asarray(items))
        return self.codes[name][np.searchsorted(self.items, items)]


def probe_sets(split: dict, labels: np.ndarray, sizes: dict, seed: int) -> dict:
    """Per protocol: (fit items, eval items, pixel-probe fit items) as dataset indices; the probes of
    `evaluate` and benchmarks that must read the same items (lpc_pose_ceiling.py) draw them here."""
    train, test = np.asarray(split["train"], np.int64), np.asarray(split["test"], np.int64)
    pool = np.concatenate([train, test])
    sets = {}
    for protocol in probes.protocols_for(split.get("kind", "identity")):
        if protocol == "train-test" and not len(train):
            continue
        fit, held = probes.probe_split(protocol, len(train), labels[test], seed)
        if len(held) < 2 or len(np.unique(labels[pool[fit]])) < 2:
            log.warning("probe protocol %s skipped: too few test images per identity", protocol)
            continue
        fit_items, held_items = pool[fit], pool[held]
        sets[protocol] = (probes.subsample(fit_items, labels, sizes["probe_fit"], seed),
                          probes.subsample(held_items, labels, sizes["probe_eval"], seed),
                          probes.subsample(fit_items, labels, sizes["pixel_fit"], seed))
    return sets


def _repeated(runs: list) -> dict:
    """Mean train and test error of one probe's runs over its seeds, with the test errors' spread."""
    out = {k: float(np.mean([r[k] for r in runs])) for k in ("train_error", "test_error")}
    return {**out, "test_error_std": float(np.std([r["test_error"] for r in runs])),
            "chance_error": runs[0]["chance_error"], "repeats": len(runs), "epochs": [r["epochs"] for r in runs]}


def _identity_probes(feat: Features, labels, sets: dict, sizes: dict, seed: int) -> dict:
    """Every protocol's identity probes (s, z_mu, z_sample, pixels, the image classifier), each over
    sizes["repeats"] seeds, fitted side by side (probes.run_jobs)."""
    t = time.perf_counter()
    jobs, keys = [], []
    for protocol, (fit, held, pix_fit) in sets.items():
        # the pixel probe and the image classifier take longest: they go first
        for name, rows in (("pixels", pix_fit), ("images", pix_fit), ("s", fit), ("z_mu", fit), ("z_sample", fit)):
            x_fit, x_eval = feat(name, rows), feat(name, held)
            for sd in range(seed, seed + sizes["repeats"]):
                if name == "images":
                    jobs.append((probes.cnn_classify, (x_fit, labels[rows], x_eval, labels[held]),
                                 {"seed": sd, "epochs": sizes["cnn_epochs"]}))
                else:
                    jobs.append((probes.classify, (x_fit, labels[rows], x_eval, labels[held]),
                                 {"seed": sd, "max_epochs": sizes["max_epochs"]}))
                keys.append((protocol, "cnn" if name == "images" else name))
    runs = {}
    for key, res in zip(keys, probes.run_jobs(jobs)):
        runs.setdefault(key, []).append(res)
    out = {}
    for protocol, (fit, held, pix_fit) in sets.items():
        res = {name: _repeated(runs[(protocol, name)]) for name in ("s", "z_mu", "z_sample", "pixels", "cnn")}
        out[protocol] = {"n_fit": int(len(fit)), "n_fit_images": int(len(pix_fit)), "n_eval": int(len(held)),
                         "chance_error": probes.chance_error(labels[held]), "results": res}
    log.info("identity probes (%s) in %.1f s", "; ".join(
        f"{p}, {len(f)} fit / {len(h)} test" for p, (f, h, _) in sets.items()), time.perf_counter() - t)
    return out


def _known_probes(feat: Features, data, sets: dict, split: dict, sizes: dict, seed: int) -> dict:
    """Probes of what the data set knows beyond the identity, fitted side by side (probes.run_jobs):

    attributes, attribute_mean  (data.attributes) each attribute probed from s and from z (mu) on the
                                headline protocol's items
    table1                      (attributes, and a run with training identities) the paper's Table 1:
                                probes fitted on the codes of the run's training images, tested on its
                                test images, per attribute and their mean
    factors, factor_kind        (data.factors) each unspecified factor from z (mu) and from s: regressed
                                (R^2) where continuous, classified (error, chance) where categorical
    """
    fit, held, _ = sets[next(iter(sets))]
    kw = {"seed": seed, "max_epochs": sizes["max_epochs"]}
    codes = ("s", "z_mu")
    space, jobs, keys = data.factor_space, [], []
    if data.factors is not None and space is not None and not space.categorical:
        # One regressor per code with an output per factor (the longer jobs, first); R^2 reported per factor.
        for code in ("z_mu", "s"):
            jobs.append((probes.regress, (feat(code, fit), data.factors[fit], feat(code, held), data.factors[held]), kw))
            keys.append(("factors", code, None))
    columns = []  # (section, name, labels, fit items, eval items)
    if data.attributes is not None:
        names = data.meta.get("attribute_names", [f"attribute {a}" for a in range(data.attributes.shape[1])])
        columns += [("attributes", name, data.attributes[:, a], fit, held) for a, name in enumerate(names)]
        across = _table1_items(split, data.labels, sizes, seed)
        if across is not None:
            columns += [("table1", name, data.attributes[:, a], *across) for a, name in enumerate(names)]
    if data.factors is not None and space is not None and space.categorical:
        columns += [("factors", name, data.factors[:, f], fit, held) for f, name in enumerate(space.names)]
    for section, name, y, rows_fit, rows_held in columns:
        for code in codes:
            jobs.append((probes.classify, (feat(code, rows_fit), y[rows_fit], feat(code, rows_held), y[rows_held]), kw))
            keys.append((section, code, name))
    out = {}
    for (section, code, name), res in zip(keys, probes.run_jobs(jobs)):
        if name is None:  # a regressor: one R^2 per factor
            for f, factor in enumerate(space.names):
                out.setdefault("factors", {}).setdefault(factor, {})[code] = {
                    "train_r2": res["train_r2"][f], "test_r2": res["test_r2"][f], "epochs": res["epochs"]}
            continue
        entry = out.setdefault(section, {}).setdefault(name, {"chance_error": res["chance_error"]})
        entry[code] = res
    if "factors" in out:
        out["factors"] = {name: out["factors"][name] for name in space.names}  # the factors' order
        out["factor_kind"] = "categorical" if space.categorical else "continuous"
    if "attributes" in out:
        out["attribute_mean"] = _mean_errors(out["attributes"])
    if "table1" in out:
        fit_items, eval_items = _table1_items(split, data.labels, sizes, seed)
        out["table1"] = {"protocol": "train-test", "n_fit": int(len(fit_items)), "n_eval": int(len(eval_items)),
                         "attributes": out["table1"], "mean": _mean_errors(out["table1"])}
    return out


def _table1_items(split: dict, labels, sizes: dict, seed: int):
    """(fit items, eval items) of the paper's Table 1 protocol: the run's training images fit the
    probe, its test images test it (subsampled, stratified by identity); None without training images
    or on a within-identity split (there the headline protocol already is train-test)."""
    train, test = np.asarray(split.get("train", []), np.int64), np.asarray(split["test"], np.int64)
    if split.get("kind") != "identity" or not len(train):
        return None
    return (probes.subsample(train, labels, sizes["probe_fit"], seed),
            probes.subsample(test, labels, sizes["probe_eval"], seed))


def _mean_errors(per_attribute: dict) -> dict:
    """Mean over attributes of the train and test errors of each code, and of the chance error."""
    rows = list(per_attribute.values())
    out = {code: {k: float(np.mean([r[code][k] for r in rows])) for k in ("train_error", "test_error")}
           for code in ("s", "z_mu")}
    return {**out, "chance_error": float(np.mean([r["chance_error"] for r in rows]))}


def _retrieval(feat: Features, data, items, k: int, seed: int) -> dict:
    labels = data.labels[items]
    out = {"n": int(len(items)), "k": k, "metric": "L2",
           "s": retrieval.identity_retrieval(feat("s", items), labels, k),
           "z_mu": retrieval.identity_retrieval(feat("z_mu", items), labels, k)}
    space = data.factor_space
    if data.factors is None or space is None:
        return out
    if not space.categorical:
        out["factors"] = {code: retrieval.factor_retrieval(feat(code, items), data.factors[items],
                                                           np.asarray(space.ranges), k, seed)
                          for code in ("z_mu", "s")}
    elif space.same_pose:
        cols = [space.names.index(name) for name in space.same_pose]
        _, pose = np.unique(data.factors[items][:, cols], axis=0, return_inverse=True)
        out["pose"] = {"factors": list(space.same_pose),
                       **{code: retrieval.identity_retrieval(feat(code, items), pose.reshape(-1), k)
                          for code in ("z_mu", "s")}}
    return out


def _figures(run: dict, feat: Features, items_ret: np.ndarray, out_dir: str, seed: int) -> dict:
    data, enc, dec = run["data"], run["encoder"], run["decoder"]
    test = np.asarray(run["split"]["test"], np.int64)
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.unique(data.labels[test]))[:FIGURE_IDS]
    picks = np.array([rng.choice(test[data.labels[test] == i]) for i in ids])
    x = torch.from_numpy(data.float_images(picks))
    grids = {"swap": swap_grid(enc, dec, x, x)}
    if data.knows_truth:  # what the swap grid should draw; blank where the data set lacks the image
        truth, found = analogies.swap_truth_grid(data, picks)
        cells = [[truth[i, j] if found[i, j] else None for j in range(len(picks))] for i in range(len(picks))]
        grids["swap_truth"] = headed_grid(data.images[picks], data.images[picks], cells)
    grids["samples"] = figures.sample_grid(enc, dec, x[:8], 8, seed, run["prior"])
    if len(x) >= 2:
        grids["interpolation"] = figures.interpolation_grid(enc, dec, x[:1], x[1:2], 8)
    ret_labels = data.labels[items_ret]
    first = {}
    for j in rng.permutation(len(items_ret)):  # one query per identity
        first.setdefault(int(ret_labels[j]), int(j))
        if len(first) == STRIP_QUERIES:
            break
    queries = np.array(sorted(first.values()))
    images = data.images[items_ret]
    for code in ("s", "z_mu"):
        nb = retrieval.neighbours(feat(code, items_ret), K)[queries]
        grids[f"retrieval_{code.split('_')[0]}"] = figures.retrieval_strips(images, queries, nb)
    names = {}
    for name, grid in grids.items():
        names[name] = f"{name}.png"
        save_png(os.path.join(out_dir, names[name]), grid)
    return names


def evaluate(run_dir: str, out_dir: str | None = None, *, seed: int = 0, quick: bool = False,
             bundle: str | None = None, backend: str = "auto", precision: str = "auto") -> dict:
    """Evaluate a trained run and write report.json, report.md and the figures into out_dir
    (default RUN_DIR/eval). Returns the report as a dict (see the module docstring).

    bundle: measure an exported bundle of this run on backend at precision instead of the run's own
    weights: the probes and retrieval read its codes, the analogies and the judge its swaps (samples and
    figures still draw with the run's torch models). The report names the engine in run.through.

    quick: smaller probe, retrieval and analogy sets and fewer probe epochs (the report says so);
    the full evaluation takes minutes on 2 CPU cores, the quick one well under a minute on sprites.
    """
    t0 = time.perf_counter()
    sizes = QUICK if quick else FULL
    run = load_run(run_dir, bundle, backend, precision)
    timings = {"load": time.perf_counter() - t0}
    out_dir = out_dir or os.path.join(run_dir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    data, split, cfg = run["data"], run["split"], run["cfg"]
    test = np.asarray(split["test"], np.int64)
    labels = data.labels

    sets = probe_sets(split, labels, sizes, seed)
    if not sets:
        raise InputError(f"{run_dir}: too few test images per identity for any probe protocol")
    ret_items = probes.subsample(test, labels, sizes["retrieval"], seed)
    needed = np.concatenate([np.concatenate(s[:2]) for s in sets.values()] + [ret_items]
                            + list(_table1_items(split, labels, sizes, seed) or []))
    t = time.perf_counter()
    feat = Features(run, needed, seed)
    timings["encode"] = time.perf_counter() - t

    t = time.perf_counter()
    identity = _identity_probes(feat, labels, sets, sizes, seed)
    timings["identity_probes"] = time.perf_counter() - t
    primary = next(iter(sets))
    result = {
        "run": {"dir": os.path.abspath(run_dir), "step": int(run["state"].get("step", 0)),
                "spec": data.spec, "model": run["state"]["model_config"],
                "w_gan": (run["state"].get("train_config") or {}).get("w_gan"),
                "bundle": os.path.abspath(bundle) if bundle else None,
                "through": run["engine"].backend.describe() if bundle else "the run's checkpoint (torch, CPU)"},
        "quick": quick, "seed": seed,
        "split": {"kind": split.get("kind"), "n_train": len(split.get("train", [])), "n_test": len(test),
                  "n_train_identities": len(split.get("train_identities", [])),
                  "n_test_identities": len(np.unique(labels[test]))},
        "sizes": sizes,
        "probes": {"primary": primary, "protocols": identity},
    }
    if data.factors is not None or data.attributes is not None:
        t = time.perf_counter()
        result.update(_known_probes(feat, data, sets, split, sizes, seed))
        timings["known_probes"] = time.perf_counter() - t
    t = time.perf_counter()
    result["retrieval"] = _retrieval(feat, data, ret_items, K, seed)
    timings["retrieval"] = time.perf_counter() - t
    swap = analogies.model_swap(run["encoder"], run["decoder"])
    sample = analogies.model_sample(run["encoder"], run["decoder"])
    scored = swap if bundle is None else run["engine"].swap  # a bundle is scored on its own swaps
    if data.knows_truth:
        t = time.perf_counter()
        result["analogies"] = analogies.against_truth(scored, data, split, sizes["pairs"], seed)
        timings["analogies"] = time.perf_counter() - t
    if data.renderer is not None:  # scoring samples needs the truth in poses no image shows: fresh renders
        t = time.perf_counter()
        result["samples"] = analogies.sprite_samples(sample, swap, data, split, cfg.image_size, cfg.channels,
                                                     cfg.z_dim, sizes["sample_ids"], seed=seed, prior=run["prior"])
        if result["samples"]:
            result["samples"]["prior"] = "checkpoint"
        timings["samples"] = time.perf_counter() - t
    if judge.applies(split, labels):
        t = time.perf_counter()
        judge_net = judge.fit_judge(data, split, fit_images=sizes["pixel_fit"], epochs=sizes["cnn_epochs"], seed=seed)
        result["judged"] = judge.judged_drawings(scored, sample, data, split, cfg.z_dim, sizes["judged"], judge_net,
                                                 seed=seed, prior=run["prior"])
        result["judged"]["prior"] = "checkpoint"
        timings["judged"] = time.perf_counter() - t
    t = time.perf_counter()
    result["figures"] = _figures(run, feat, ret_items, out_dir, seed)
    timings["figures"] = time.perf_counter() - t
    result["notes"] = NOTES
    result["seconds"] = round(time.perf_counter() - t0, 2)
    result["timings"] = {k: round(v, 2) for k, v in timings.items()}
    write_report(result, out_dir)
    log.info("evaluated %s in %.1f s; report in %s", run_dir, result["seconds"], out_dir)
    return result


def compare(run_dirs, out_dir: str | None = None, *, seed: int = 0, quick: bool = False) -> dict:
    """Evaluate several runs (e.g. the full model and its lambda = 0 ablation) and write one combined
    table, compare.md / compare.json, into out_dir (default: the first run's eval folder).

    Each run's own report goes to OUT_DIR/<run folder name> (numbered if names repeat).
    """
    if len(run_dirs) < 2:
        raise UsageError("comparing needs at least two run folders")
    out_dir = out_dir or os.path.join(run_dirs[0], "eval", "compare")
    names, results = [], []
    for i, run_dir in enumerate(run_dirs):
        name = os.path.basename(os.path.normpath(run_dir)) or f"run{i}"
        if name in names:
            name = f"{name}-{i}"
        names.append(name)
        results.append(evaluate(run_dir, os.path.join(out_dir, name), seed=seed, quick=quick))
    combined = {"runs": dict(zip(names, results))}
    write_comparison(combined, out_dir)
    return combined
