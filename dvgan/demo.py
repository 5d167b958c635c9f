"""`dvgan demo`: the whole pipeline on the built-in sprites, end to end, on a CPU in minutes.

train -> export -> index the test identities -> query, swap, sample, interpolate -> quick evaluation
-> OUT/report.md. Test identities are never seen in training, so every picture shows the model
generalising to new identities. ``data`` runs the same demo on another data set (``lpc:DIR``: real
LPC character sheets); the swap grid's truth and the analogy scores come wherever the data set knows
its images' poses.
"""
from __future__ import annotations

import logging
import os
import shutil
import time

import numpy as np

from .config import ModelConfig, TrainConfig, to_dict
from .data.preprocess import image_to_uint8, open_image
from . import defaults
from .errors import UsageError
from .train.recipe import read_config_file

log = logging.getLogger(__name__)

# The demo trains the warping-decoder recipe (dvgan/recipes/sprites-warp.toml, read here): s alone draws a template of
# the identity and z only moves it (shift, scale, turn), the way the renderer makes the pose. With the
# plain decoder the swap grid took the turn from s, so "A in the pose of B" held for size and position
# only; with warp z carries the whole pose, and at 5,500 steps all four sprites targets of `dvgan eval`
# hold on three seeds (benchmarks/RESULTS.md, "Built-in sprites"). Its model is narrow (width 16, image
# adversary 8) and each template is drawn once however many poses it is moved to, which makes a step
# about half as long as one of the recipe before (width 32, adversary 16), so the time budget below holds
# more steps.
# The default run has a training time budget (train_seconds) that keeps the whole demo within 10 minutes
# of a fresh install on a 2-core machine: a slow one trains fewer steps, and the report says so
# (benchmarks/RESULTS.md, "README commands"). The long run is the recipe as it is, with the full
# evaluation, and takes the time it needs.
RECIPE = {table: read_config_file("sprites-warp")[table] for table in ("model", "train")}
PRESETS = {
    "smoke": {"steps": 200, "per_identity": 20, "eval_quick": True, "train_seconds": None},
    "default": {"steps": RECIPE["train"]["steps"], "per_identity": 100, "eval_quick": True, "train_seconds": 360},
    "long": {"steps": RECIPE["train"]["steps"], "per_identity": 100, "eval_quick": False,  # the targets' run
             "train_seconds": None},
}
# Other data (--data) trains the plain decoder: the warp draws only what a shift, scale and turn of one
# template can, and the moving arms, legs and weapons of real sprites are not that. It keeps the widths it
# had before the warp recipe narrowed (model 32, image adversary 16): the narrow model was measured on the
# built-in sprites only.
PLAIN_MODEL = {**RECIPE["model"], "warp": False, "width": 32, "adv_width": 16}
STAGES = ("train", "export", "index", "query", "swap", "sample", "interpolate", "evaluate", "report")
N_SWAP = 6      # identities in the swap grid
N_SAMPLES = 8   # samples per identity


def _u8(images) -> list:
    from .engine import to_uint8
    return list(to_uint8(images))


def _save(path: str, rows) -> str:
    from .figures import save_png, tile
    save_png(path, tile(rows), scale=3)
    return path


def _save_headed(path: str, heads: list, cells) -> str:
    """heads across the top and down the left, cells[i][j] inside (figures.headed_grid), saved as _save does."""
    from .figures import headed_grid, save_png
    save_png(path, headed_grid(heads, heads, cells), scale=3)
    return path


def _write_gallery(run_dir: str, gallery_dir: str, spec: str, seed: int, image_size: int, channels: int):
    """Write the test split's images at the model's size and channels as PNG files, one folder per
    identity, each named by its dataset index. Returns (the files of each identity, the dataset)."""
    import json

    from PIL import Image

    from . import data as data_mod
    with open(os.path.join(run_dir, "split.json")) as f:
        split = json.load(f)
    ds = data_mod.load(spec, image_size, channels, seed=seed)
    if os.path.isdir(gallery_dir):
        shutil.rmtree(gallery_dir)
    firsts = {}
    for i in split["test"]:
        label = int(ds.labels[i])
        folder = os.path.join(gallery_dir, ds.identity_names[label])
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:06d}.png")
        pixels = ds.images[i].transpose(1, 2, 0)  # (H, W, C)
        Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
        firsts.setdefault(label, []).append(path)
    return [paths for _, paths in sorted(firsts.items())], ds


def _true_swaps(ds, picks: list) -> list:
    """The truth of the swap grid: row i, column j = the image of picks[j]'s identity in picks[i]'s pose
    (None where the data set has none); picks are gallery files (named by dataset index)."""
    from .eval.analogies import swap_truth_grid
    index = [int(os.path.splitext(os.path.basename(p))[0]) for p in picks]
    truth, found = swap_truth_grid(ds, index)
    return [[truth[i, j] if found[i, j] else None for j in range(len(index))] for i in range(len(index))]


def _cpu_times() -> tuple:
    """(busy, total) CPU ticks since boot over all cores, from /proc/stat (Linux; OSError elsewhere)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def _busy_cores(window: float = 0.5) -> float | None:
    """How many cores other processes keep busy now: CPU time over a short window where the system
    reports it, else the 1-minute load average (which lags: a job that ended seconds ago still counts
    almost fully). None when neither is available."""
    try:
        busy0, total0 = _cpu_times()
        time.sleep(window)
        busy1, total1 = _cpu_times()
        if total1 > total0:
            return (busy1 - busy0) / (total1 - total0) * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        return None


def _threads_for_free_cores() -> int | None:
    """Torch threads that fit the cores other processes leave free, if fewer than torch would use.

    On 2 cores beside one busy process, training ran slower on 2 threads than on 1 (benchmarks/bench_busy.py;
    RESULTS.md, "README commands from a fresh clone"): the threads wait on each other.
    """
    import torch
    busy = _busy_cores()  # none of it this process's yet
    if busy is None:
        return None
    cores = os.cpu_count() or 1
    free = max(1, cores - round(busy))  # whole cores: a process on one core adds about 1.0
    if free >= torch.get_num_threads():
        return None
    log.warning("the machine is busy (other processes use %.1f of %d cores): training on %d thread(s); the demo's "
                "time in the README is for an idle machine", busy, cores, free)
    return free


def _existing_run(run_dir: str) -> tuple:
    """(the steps a finished run in run_dir was asked for, before any time budget cut them, else 0;
    its model config as a dict, None where the checkpoint cannot be read)."""
    import json

    from .errors import DvganError
    from .train.checkpoint import load_checkpoint
    try:
        state = load_checkpoint(run_dir)
        model = dict(state["model_config"])
        if state["step"] < state["train_config"]["steps"]:
            return 0, model  # interrupted: train on
        with open(os.path.join(run_dir, "config.json")) as f:
            config = json.load(f)
    except (DvganError, OSError, KeyError, ValueError, TypeError):
        return 0, None  # train() itself says what is wrong with the run
    return int(config.get("time_budget", {}).get("planned_steps", state["step"])), model


def _model_differences(found: dict, wanted) -> list:
    """[(field, found, wanted)] where a run's model config differs from the ModelConfig wanted, leaving
    out num_ids, which training sets from the data."""
    from .config import from_dict
    found = to_dict(from_dict(ModelConfig, found, strict=False))  # fields it lacks take their defaults
    return [(k, found[k], v) for k, v in to_dict(wanted).items() if k != "num_ids" and found[k] != v]


def run_demo(out_dir: str | None = None, preset: str = "default", device: str = "auto",
             progress: bool = True, seed: int = 0, data: str | None = None) -> dict:
    """Run every stage into out_dir (default: $DVGAN_HOME or ./dvgan-out); returns the key numbers and paths.

    data: a data spec to run on instead of the built-in sprites (e.g. ``lpc:DIR``), with its default
    split; it trains the plain decoder (PLAIN_MODEL) at 32 x 32. A run already in out_dir/run is resumed
    (a finished one is reused), so the demo can be re-run.
    """
    from tqdm import tqdm

    from .engine import Engine
    from .engine.index import build_index, encode_folder
    from .eval import evaluate
    from .export import export_bundle
    from .train.checkpoint import CHECKPOINT
    from .train.loop import train

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}")
    p = PRESETS[preset]
    out = os.path.abspath(out_dir or defaults.home())
    run_dir, bundle_dir, index_dir = (os.path.join(out, x) for x in ("run", "bundle", "index"))
    resume = os.path.exists(os.path.join(run_dir, CHECKPOINT))
    model_cfg = ModelConfig(**(PLAIN_MODEL if data else RECIPE["model"]))
    if data:
        from .data import default_channels
        model_cfg.channels = default_channels(data)
    planned, found = _existing_run(run_dir) if resume else (0, None)
    differences = _model_differences(found, model_cfg) if found is not None else []
    if differences:
        has = ", ".join(f"{k} {a}" for k, a, _ in differences)
        trains = ", ".join(f"{k} {b}" for k, _, b in differences)
        raise UsageError(f"{run_dir} holds a run of another model ({has}; this demo trains {trains}): "
                         "choose another folder with -o")
    figs = os.path.join(out, "figures")
    os.makedirs(figs, exist_ok=True)
    spec = data or f"sprites:{p['per_identity']}"
    t0, started, timings = time.perf_counter(), {}, {}  # timings: seconds of the stages finished so far
    result = {"out": out, "preset": preset, "timings": timings, "data": spec, "builtin": not data}
    bar = tqdm(total=len(STAGES), desc="demo", unit="stage", disable=not progress, position=0,
               bar_format="{desc}: {n}/{total} stages |{bar}| {elapsed} [{postfix}]")

    def stage(name):
        bar.set_postfix_str(name)
        started[name] = time.perf_counter()

    def done(name):
        timings[name] = round(time.perf_counter() - started[name], 1)
        bar.update(1)

    stage("train")
    steps = p["steps"]
    if resume and planned >= steps:
        steps = 0  # reuse the finished run as it is, budget-cut or not: train() keeps its step count
    import torch
    threads_before, threads = torch.get_num_threads(), _threads_for_free_cores()
    torch.set_num_threads(threads or threads_before)
    try:
        summary = train(model_cfg, TrainConfig(**{**RECIPE["train"], "steps": steps, "seed": seed}),
                        {"spec": spec, "seed": seed}, run_dir, device=device, resume=resume, progress=progress,
                        time_budget=p["train_seconds"] if steps else None)
    finally:
        torch.set_num_threads(threads_before)
    result["train"] = {"steps": summary["steps"], "resumed": resume, "asked_steps": p["steps"],
                       "time_budget": p["train_seconds"]}
    done("train")

    stage("export")
    export_bundle(run_dir, bundle_dir)
    done("export")

    stage("index")
    engine = Engine.load(bundle_dir)
    per_identity, dataset = _write_gallery(run_dir, os.path.join(out, "gallery"), spec, seed,
                                           engine.image_size, engine.channels)
    result["backend"] = engine.choice.report()
    index = build_index(engine, encode_folder(engine, os.path.join(out, "gallery")))
    index.save(index_dir)
    result["index"] = {"images": len(index), "identities": len(per_identity)}
    done("index")

    stage("query")
    query = os.path.join(out, "query.png")
    shutil.copyfile(per_identity[0][0], query)
    size, ch = engine.image_size, engine.channels
    shown = engine.preprocess(query)  # decoded once: searched with, and shown in the strips
    result["query"] = {"image": query}
    for by in ("specified", "unspecified"):
        hits = index.query(engine, shown, by=by, k=10)[0]
        row = _u8(shown) + [None] + index.images([h.id for h in hits], size, ch)
        result["query"][by] = {
            "strip": _save(os.path.join(figs, f"query_{by}.png"), [row]),
            "same_identity_in_top10": sum(os.path.dirname(h.path) == os.path.dirname(per_identity[0][0]) for h in hits),
        }
    done("query")

    stage("swap")
    picks = [paths[0] for paths in per_identity[:: max(1, len(per_identity) // N_SWAP)][:N_SWAP]]
    grid = engine.swap(picks, picks, grid=True)  # (N, M, C, H, W): rows keep z, columns keep s
    heads = [image_to_uint8(open_image(x), size, ch) for x in picks]
    result["swap"] = _save_headed(os.path.join(figs, "swap.png"), heads, _u8(grid))
    if dataset.knows_truth:
        result["swap_truth"] = _save_headed(os.path.join(figs, "swap_truth.png"), heads, _true_swaps(dataset, picks))
    done("swap")

    stage("sample")
    samples = engine.sample(picks[:4], N_SAMPLES, seed=seed)
    rows = [[heads[i], None] + _u8(samples[i]) for i in range(len(samples))]
    result["sample"] = _save(os.path.join(figs, "sample.png"), rows)
    done("sample")

    stage("interpolate")
    inter = engine.interpolate(picks[0], picks[1], steps=8)
    result["interpolate"] = _save(os.path.join(figs, "interpolate.png"), [_u8(r) for r in inter])
    done("interpolate")

    stage("evaluate")
    report = evaluate(run_dir, os.path.join(out, "eval"), seed=seed, quick=p["eval_quick"])
    result["eval"] = key_numbers(report)
    done("evaluate")

    stage("report")
    result["seconds"] = round(time.perf_counter() - t0, 1)
    result["report"] = write_demo_report(result, out)
    done("report")
    bar.close()
    return result


def key_numbers(report: dict) -> dict:
    """The headline numbers of an evaluation report, flattened for the demo's summary."""
    from .eval.report import COPY_BASELINES, best_psnr
    primary = report["probes"]["primary"]
    protocol = report["probes"]["protocols"][primary]
    out = {"quick": report.get("quick"), "protocol": primary, "chance_error": protocol["chance_error"]}
    for name, res in protocol["results"].items():
        out[f"{name}_test_error"] = res["test_error"]
    out["s_precision_at_10"] = report.get("retrieval", {}).get("s", {}).get("precision_at_k")
    unseen = report.get("analogies", {}).get("unseen")
    if unseen:
        out["analogy_psnr"] = unseen["model"]["psnr"]
        out["best_copy_psnr"] = best_psnr(unseen, COPY_BASELINES)
        out["identity_mean_psnr"] = unseen["identity_mean"]["psnr"]
    out["factor_kind"], out["factor_names"] = report.get("factor_kind"), list(report.get("factors", {}))
    for name, f in report.get("factors", {}).items():  # how well each code tells the pose
        if report.get("factor_kind") == "categorical":
            out[f"{name}_error_z"], out[f"{name}_error_s"] = f["z_mu"]["test_error"], f["s"]["test_error"]
            out[f"{name}_chance"] = f["chance_error"]
        else:
            out[f"{name}_r2_z"], out[f"{name}_r2_s"] = f["z_mu"]["test_r2"], f["s"]["test_r2"]
    table1 = report.get("table1")
    if table1:
        mean = table1["mean"]
        out["table1_s_error"], out["table1_z_error"] = mean["s"]["test_error"], mean["z_mu"]["test_error"]
        out["table1_chance"] = mean["chance_error"]
    pose = report.get("retrieval", {}).get("pose")
    if pose:
        out["pose_precision_z"], out["pose_precision_s"] = pose["z_mu"]["precision_at_k"], pose["s"]["precision_at_k"]
    if unseen:
        out["analogy_ssim"] = unseen["model"]["ssim"]
    samples = report.get("samples")
    if samples:
        out["sample_psnr"], out["sample_swap_psnr"] = samples["model"], samples["swap"]
        out["sample_other_identity_psnr"] = samples["other_identity"]
        out["sample_standard_normal_psnr"] = samples.get("standard_normal")
    return out


def _cut_note(train: dict) -> str:
    """What the report says when the time budget stopped training before the steps asked for."""
    if train["steps"] >= train["asked_steps"]:
        return ""
    return (f" (of the {train['asked_steps']} asked: training stops after {train['time_budget']} s so the demo "
            "stays within 10 minutes on a slow machine, and fewer steps mean blurrier swaps and more identity "
            "in z; `dvgan demo --long` trains without a budget)")


def pose_r2(e: dict, code: str) -> str:
    """'0.98 / 0.86 / 0.91 / 0.91': the R^2 of each sprite factor regressed from one code."""
    values = [e.get(f"{name}_r2_{code}") for name in ("x", "y", "scale", "rotation")]
    return " / ".join("n/a" if v is None else f"{v:.2f}" for v in values)


def pose_errors(e: dict, code: str) -> str:
    """'3.1% / 0.4% / 40.2%': the test error of each categorical factor (action, direction, frame)
    classified from one code, or from chance (code "chance")."""
    values = [e.get(name + ("_chance" if code == "chance" else f"_error_{code}")) for name in e.get("factor_names", [])]
    return " / ".join("n/a" if v is None else f"{100 * v:.1f}%" for v in values)


def _pose_rows(e: dict, pct, num) -> list:
    """The key-number rows of what the data set knows of the pose and the attributes."""
    if e.get("factor_kind") == "categorical":
        names = " / ".join(e.get("factor_names", []))
        rows = [f"| the pose read from z (mu), test error of {names} | {pose_errors(e, 'z')} | from s "
                f"{pose_errors(e, 's')}; chance {pose_errors(e, 'chance')} (z should read them, s should not) |"]
    elif e.get("factor_kind") == "continuous":
        rows = [f"| the pose read from z (mu), test R^2 of x / y / scale / turn | {pose_r2(e, 'z')} | from s "
                f"{pose_r2(e, 's')} (z should hold them, s should not; 1 is perfect, 0 the mean) |"]
    else:
        rows = []
    if e.get("pose_precision_z") is not None:
        rows.append(f"| same-pose retrieval precision@10 by z (mu) | {num(e['pose_precision_z'])} | by s "
                    f"{num(e.get('pose_precision_s'))} (near chance when s holds no pose) |")
    if e.get("table1_s_error") is not None:
        rows.append(f"| the paper's Table 1: attribute error of unseen identities, mean, from s | {pct(e['table1_s_error'])} "
                    f"| from z (mu) {pct(e.get('table1_z_error'))}; chance {pct(e.get('table1_chance'))} "
                    "(the paper on Sprites: s 5.2%, z 59.8%, chance 60.7%) |")
    return rows


def write_demo_report(result: dict, out: str) -> str:
    from .files import atomic_write
    e = result["eval"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    num = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    rel = lambda p: os.path.relpath(p, out)  # noqa: E731
    data = "Procedural sprites" if result.get("builtin", True) else f"Data `{result['data']}`"
    truth = ["The model's swaps, then the true images of the same identities and poses (the truth the "
             "analogy PSNR compares with):", "", f"![swap]({rel(result['swap'])}) ![truth]({rel(result['swap_truth'])})"] \
        if result.get("swap_truth") else ["The model's swaps:", "", f"![swap]({rel(result['swap'])})"]
    lines = [
        "# dvgan demo",
        "",
        f"{data}, {result['train']['steps']} training steps{_cut_note(result['train'])}; "
        f"engine {result['backend']}.",
        f"Total time {result['seconds']:.0f} s. Every image below comes from identities never seen in training.",
        "",
        f"## Key numbers ({'quick ' if e.get('quick') else ''}evaluation on unseen identities; full report: eval/report.md)",
        "",
        "| measure | value | reference |",
        "|---|---|---|",
        f"| identity probe error from s | {pct(e.get('s_test_error'))} | chance {pct(e.get('chance_error'))}; raw pixels {pct(e.get('pixels_test_error'))} |",
        f"| identity probe error from z (mu) | {pct(e.get('z_mu_test_error'))} | chance {pct(e.get('chance_error'))} (higher is better) |",
        f"| identity probe error from z (sample) | {pct(e.get('z_sample_test_error'))} | chance {pct(e.get('chance_error'))} |",
        f"| s retrieval precision@10 | {num(e.get('s_precision_at_10'))} | 1.0 is perfect |",
        f"| analogy PSNR, Dec(s_a, mu_b) vs the true render | {num(e.get('analogy_psnr'))} dB | best copy baseline {num(e.get('best_copy_psnr'))} dB; "
        f"mean image of the identity {num(e.get('identity_mean_psnr'))} dB |",
        *_pose_rows(e, pct, num),
        f"| conditional samples Dec(s_a, z), z from the fitted prior, PSNR to the nearest true render of a | "
        f"{num(e.get('sample_psnr'))} dB | z ~ N(0, I) {num(e.get('sample_standard_normal_psnr'))} dB; "
        f"swaps {num(e.get('sample_swap_psnr'))} dB; another identity {num(e.get('sample_other_identity_psnr'))} dB |",
        "",
        "## Swap (top row gives s, left column gives z; the diagonal reconstructs)",
        *truth,
        "",
        "## Query by s (identity) and by z (pose): the query, then its 10 nearest gallery images",
        f"![by s]({rel(result['query']['specified']['strip'])})",
        "",
        f"![by z]({rel(result['query']['unspecified']['strip'])})",
        "",
        "## Conditional samples: each row keeps one identity, z from the prior fitted to the training codes",
        f"![samples]({rel(result['sample'])})",
        "",
        "## Interpolation: rows move z, columns move s",
        f"![interpolation]({rel(result['interpolate'])})",
        "",
        "## Stage times (s)",
        "",
        " | ".join(f"{k} {v}" for k, v in result["timings"].items()),
        "",
    ]
    path = os.path.join(out, "report.md")
    atomic_write(path, lambda f: f.write("\n".join(lines).encode()))
    return path
