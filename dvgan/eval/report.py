"""report.json and report.md of an evaluation, and the side-by-side table of several runs."""
from __future__ import annotations

import json
import os

from ..files import atomic_write

CODE_NAMES = {"z_mu": "z (mu)", "z_sample": "z (sample)", "s": "s", "pixels": "raw pixels",
              "cnn": "CNN on the images"}


COPY_BASELINES = ("copy_a", "copy_b")  # the analogy target counts from the better of these


def best_psnr(scores: dict, baselines) -> float:
    """The best analogy PSNR among the named baselines, in dB."""
    return max(scores[k]["psnr"] for k in baselines)


def _margin(scores: dict, baselines) -> str:
    """The model's analogy PSNR minus the best of the named baselines', signed, in dB."""
    return f"{scores['model']['psnr'] - best_psnr(scores, baselines):+.2f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _num(v, digits=3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(header, rows) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
        ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def markdown(result: dict) -> str:
    """The report as Markdown: tables of every number, the figures inline, the protocol notes."""
    run, split = result["run"], result["split"]
    lines = [f"# Evaluation of `{run['dir']}`", "",
             f"Step {run['step']}, data `{run['spec']}`, lambda (w_gan) = {run.get('w_gan')}; "
             f"split `{split['kind']}`: {split['n_train']} training images "
             f"({split['n_train_identities']} identities), {split['n_test']} test images "
             f"({split['n_test_identities']} identities). Seed {result['seed']}; {result['seconds']:.0f} s.", ""]
    if result["quick"]:
        lines += ["**Quick evaluation**: reduced probe, retrieval and analogy sets and probe epochs; "
                  "use the full evaluation for reported numbers.", ""]
    lines += ["## Identity probes (the paper's Table 1)", "",
              "Error rates in %, train / test, chance = 1 - majority-class frequency in the probe's test set. "
              "A disentangled model has s near the pixel and CNN references (or better) and z near chance.", ""]
    for protocol, p in result["probes"]["protocols"].items():
        head = " (headline)" if protocol == result["probes"]["primary"] else ""
        lines += [f"### Protocol `{protocol}`{head}: {p['n_fit']} codes / {p['n_fit_images']} images to fit, "
                  f"{p['n_eval']} to test", ""]
        repeats = next(iter(p["results"].values())).get("repeats", 1)
        spread = [f"test std ({repeats} probe seeds)"] if repeats > 1 else []
        rows = [[CODE_NAMES[k], _pct(r["train_error"]), _pct(r["test_error"])]
                + ([_pct(r["test_error_std"])] if spread else []) + [_pct(r["chance_error"])]
                for k, r in p["results"].items()]
        lines += _table(["probe input", "train error", "test error"] + spread + ["chance error"], rows) + [""]
    if "table1" in result:
        t1 = result["table1"]
        lines += ["## The paper's Table 1: identity attributes of unseen identities", "",
                  f"Error in %, train / test: probes fitted on {t1['n_fit']} codes of the run's training images, "
                  f"tested on {t1['n_eval']} of its test images (identities never seen in training). s should "
                  "read the attributes, z (mu) should sit at chance (the paper on Sprites: s 5.5 / 5.2, z 58.6 / "
                  "59.8, chance 60.7, over its attributes).", ""]
        rows = [[name, f"{_pct(a['s']['train_error'])} / {_pct(a['s']['test_error'])}",
                 f"{_pct(a['z_mu']['train_error'])} / {_pct(a['z_mu']['test_error'])}", _pct(a["chance_error"])]
                for name, a in list(t1["attributes"].items()) + [("**mean**", t1["mean"])]]
        lines += _table(["attribute", "from s", "from z (mu)", "chance"], rows) + [""]
    if "attributes" in result:
        lines += ["## Identity attributes", "",
                  "Test error in %, each attribute probed from s and from z (mu) with the identity probes' "
                  "protocol; z should be at chance.", ""]
        rows = [[name, _pct(a["s"]["test_error"]), _pct(a["z_mu"]["test_error"]), _pct(a["chance_error"])]
                for name, a in result["attributes"].items()]
        mean = result.get("attribute_mean")
        if mean:
            rows.append(["**mean**", _pct(mean["s"]["test_error"]), _pct(mean["z_mu"]["test_error"]),
                         _pct(mean["chance_error"])])
        lines += _table(["attribute", "from s", "from z (mu)", "chance"], rows) + [""]
    if result.get("factor_kind") == "categorical":
        lines += ["## The pose: unspecified factors classified", "",
                  "Test error in %; z should read them (low error), s should not (near chance).", ""]
        rows = [[name, _pct(f["z_mu"]["test_error"]), _pct(f["s"]["test_error"]), _pct(f["chance_error"])]
                for name, f in result["factors"].items()]
        lines += _table(["factor", "from z (mu)", "from s", "chance"], rows) + [""]
    elif "factors" in result:
        lines += ["## Unspecified factors regressed", "",
                  "Test R^2 (1 = perfect, 0 = predicting the mean); z should hold the factors, s should not.", ""]
        rows = [[name, _num(f["z_mu"]["test_r2"]), _num(f["s"]["test_r2"])] for name, f in result["factors"].items()]
        lines += _table(["factor", "from z (mu)", "from s"], rows) + [""]
    ret = result["retrieval"]
    lines += ["## Retrieval", "", f"{ret['n']} test images, {ret['metric']} distance, k = {ret['k']}; "
              "relevant = same identity. By s it should be high; by z near chance.", ""]
    rows = [[CODE_NAMES[c], _pct(ret[c]["precision_at_k"]), _pct(ret[c]["map"]), _pct(ret[c]["chance_precision"]),
             _pct(ret[c].get("best_precision"))] for c in ("s", "z_mu")]
    lines += _table(["code", f"precision@{ret['k']} %", "mAP %", "chance precision %", "best possible %"], rows) + [""]
    if "factors" in ret:
        rows = [[CODE_NAMES[c], _num(f["neighbour_distance"]), _num(f["random_distance"]), _num(f["ratio"])]
                for c, f in ret["factors"].items()]
        lines += ["Unspecified-factor distance of the neighbours (normalized by each factor's range; "
                  "ratio < 1: the code knows the factors).", ""]
        lines += _table(["code", "neighbour distance", "random pairs", "ratio"], rows) + [""]
    if "pose" in ret:
        pose = ret["pose"]
        lines += [f"Same pose ({' and '.join(pose['factors'])}) among the neighbours: by z it should be high, "
                  "by s near chance.", ""]
        rows = [[CODE_NAMES[c], _pct(pose[c]["precision_at_k"]), _pct(pose[c]["map"]), _pct(pose[c]["chance_precision"])]
                for c in ("z_mu", "s")]
        lines += _table(["code", f"same-pose precision@{ret['k']} %", "mAP %", "chance precision %"], rows) + [""]
    if result.get("analogies"):
        lines += ["## Analogies against the truth", "",
                  "Dec(s_a, mu_b) against the true image of a's identity in b's pose; MSE on [-1, 1] images, "
                  "PSNR in dB with peak-to-peak 2.0, SSIM. The model should beat every baseline.", ""]
        names = {"model": "model", "copy_a": "copy a", "copy_b": "copy b", "identity_mean": "identity mean",
                 "reconstruction": "reconstruction of a, Dec(s_a, mu_a) vs a (the ceiling)",
                 "z_from_truth": "model, z from the truth: Dec(s_a, mu_truth)",
                 "s_from_truth": "model, s from the truth: Dec(s_truth, mu_b)"}
        for part, a in result["analogies"].items():
            label = "unseen (test) identities" if part == "unseen" else "seen (training) identities"
            missing = f" ({a['n_missing']} pairs left out: the data set lacks their truth)" if a.get("n_missing") else ""
            rows = [[name, _num(a[k]["mse"], 4), _num(a[k]["psnr"], 2), _num(a[k].get("ssim"), 3)]
                    for k, name in names.items()]
            lines += [f"### {label}: {a['n_pairs']} pairs{missing}", ""] + _table(["", "MSE", "PSNR", "SSIM"], rows) + [""]
            lines += [f"Model minus the best copy baseline: {_margin(a, COPY_BASELINES)} dB; minus the identity mean: "
                      f"{_margin(a, ('identity_mean',))} dB. The gap from the swap to \"z from the truth\" is "
                      "what z loses by reading b's pose differently from how it reads it on a's identity.", ""]
    smp = result.get("samples")
    if smp:
        drawn = ("z from the Gaussian fitted to the training codes (" + smp["prior"] + ")"
                 if "standard_normal" in smp else "z ~ N(0, I)")
        lines += ["## Conditional samples against the truth", "",
                  f"Dec(s_a, z), {drawn}, for {smp['n_identities']} unseen identities, {smp['per_identity']} draws "
                  f"each: PSNR (dB) against the nearest of {smp['n_renders']} renders of a's identity at random "
                  "factors. Scored the same way: the same draws mapped back to the paper's N(0, I), swaps "
                  "Dec(s_a, mu_b), fresh renders of a (what a perfect sampler gets), renders of another identity "
                  "(a sampler that loses the identity). Samples should score near the swaps and well above "
                  "another identity.", ""]
        names = {"model": "model", "standard_normal": "model, z ~ N(0, I)", "swap": "swap",
                 "real": "real", "other_identity": "other identity"}
        rows = [[name, _num(smp[k], 2)] for k, name in names.items() if k in smp]
        lines += _table(["", "nearest-render PSNR"], rows) + [""]
    jd = result.get("judged")
    if jd:
        lines += ["## Judged drawings: whose identity a classifier sees", "",
                  f"A CNN trained on {jd['n_fit']} real training images ({jd['epochs']} epochs) names the identity "
                  f"of {jd['n_pairs']} swaps Dec(s_a, mu_b) (a, b test images of different identities) and of "
                  "conditional samples Dec(s_a, z) with the same a's. Accuracy in %: a swap should show a's "
                  "identity (follows s) and not b's (follows z); samples should score near the real images.", ""]
        rows = [["real test images (the ceiling)", _pct(jd["real"])],
                ["swap shows a's identity (follows s)", _pct(jd["swap_follows_s"])],
                ["swap shows b's identity (follows z)", _pct(jd["swap_follows_z"])],
                [f"samples, z from the sampling prior ({jd['prior']})", _pct(jd["samples"])]]
        if "standard_normal" in jd:
            rows.append(["samples, z ~ N(0, I)", _pct(jd["standard_normal"])])
        rows.append(["chance (majority class)", _pct(jd["chance"])])
        lines += _table(["drawing", "%"], rows) + [""]
    captions = {"swap": "Swap grid (Fig. 2a): top row gives s, left column gives z (mu); diagonal = reconstructions.",
                "swap_truth": "What the swap grid should draw: the true image of the top row's identity in the "
                              "left column's pose (blank where the data set has none).",
                "interpolation": "Interpolation (Fig. 2b): s moves from a to b along columns, z along rows; "
                                 "a real at top left, b real at bottom right.",
                "samples": "Conditional samples (Fig. 5): s of the left image, z drawn from the sampling prior; "
                           "a column shares its z.",
                "retrieval_s": "Retrieval by s (Fig. 4a): query, lane, nearest neighbours.",
                "retrieval_z": "Retrieval by z (mu) (Fig. 4b): query, lane, nearest neighbours."}
    lines += ["## Figures", ""]
    for name, path in result["figures"].items():
        lines += [f"{captions.get(name, name)}", "", f"![{name}]({path})", ""]
    lines += ["## Protocol", ""] + [f"- {n}" for n in result.get("notes", [])]
    lines += ["", "Timings (s): " + ", ".join(f"{k} {v}" for k, v in result.get("timings", {}).items()), ""]
    return "\n".join(lines)


def _write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def write_report(result: dict, out_dir: str) -> None:
    """Write report.json (every number) and report.md (tables and figures) into out_dir, atomically."""
    _write_text(os.path.join(out_dir, "report.json"), json.dumps(result, indent=1))
    _write_text(os.path.join(out_dir, "report.md"), markdown(result))


def summary_rows(result: dict) -> list:
    """(name, value) rows of the headline numbers of one run, for tables across runs."""
    p = result["probes"]["protocols"][result["probes"]["primary"]]
    r = p["results"]
    by_s = result["retrieval"]["s"]
    rows = [("lambda (w_gan)", str(result["run"].get("w_gan"))), ("step", str(result["run"]["step"])),
            ("probe protocol", result["probes"]["primary"]),
            *([("codes and swaps through", result["run"]["through"])] if result["run"].get("bundle") else []),
            ("s test error %", _pct(r["s"]["test_error"])), ("z (mu) test error %", _pct(r["z_mu"]["test_error"])),
            ("z (sample) test error %", _pct(r["z_sample"]["test_error"])),
            ("raw pixels test error %", _pct(r["pixels"]["test_error"])),
            ("CNN test error %", _pct(r["cnn"]["test_error"])), ("chance error %", _pct(p["chance_error"])),
            ("precision@10 by s % (best possible)", f"{_pct(by_s['precision_at_k'])} ({_pct(by_s.get('best_precision'))})"),
            ("mAP by s %", _pct(by_s["map"])),
            ("precision@10 by z %", _pct(result["retrieval"]["z_mu"]["precision_at_k"]))]
    if "factors" in result["retrieval"]:
        rows.append(("z-neighbour factor distance ratio", _num(result["retrieval"]["factors"]["z_mu"]["ratio"])))
    if "pose" in result["retrieval"]:
        pose = result["retrieval"]["pose"]
        rows.append(("same-pose precision@10 by z / s %", f"{_pct(pose['z_mu']['precision_at_k'])} / "
                     f"{_pct(pose['s']['precision_at_k'])}"))
    if "table1" in result:
        mean = result["table1"]["mean"]
        rows.append(("Table 1 attributes, mean test error s / z / chance %", f"{_pct(mean['s']['test_error'])} / "
                     f"{_pct(mean['z_mu']['test_error'])} / {_pct(mean['chance_error'])}"))
    for part, a in (result.get("analogies") or {}).items():
        rows.append((f"analogy PSNR, {part} (model / best copy / identity mean)",
                     f"{a['model']['psnr']:.2f} / {best_psnr(a, COPY_BASELINES):.2f} / "
                     f"{a['identity_mean']['psnr']:.2f}"))
        rows.append((f"reconstruction PSNR, {part}", f"{a['reconstruction']['psnr']:.2f}"))
        rows.append((f"analogy SSIM, {part} (model / best copy)", f"{a['model']['ssim']:.3f} / "
                     f"{max(a[k]['ssim'] for k in COPY_BASELINES):.3f}"))
    if result.get("samples"):
        smp = result["samples"]
        if "standard_normal" in smp:
            rows.append(("samples PSNR (fitted prior / N(0, I) / swaps / real)",
                         f"{smp['model']:.2f} / {smp['standard_normal']:.2f} / {smp['swap']:.2f} / {smp['real']:.2f}"))
        else:
            rows.append(("samples PSNR (N(0, I) / swaps / real)",
                         f"{smp['model']:.2f} / {smp['swap']:.2f} / {smp['real']:.2f}"))
    if result.get("judged"):
        jd = result["judged"]
        rows.append(("judged: swap follows s / z, samples, real %",
                     f"{_pct(jd['swap_follows_s'])} / {_pct(jd['swap_follows_z'])} / {_pct(jd['samples'])} / "
                     f"{_pct(jd['real'])}"))
    return rows


def write_comparison(combined: dict, out_dir: str) -> None:
    """compare.json and compare.md: the headline numbers of several runs side by side."""
    runs = combined["runs"]
    per_run = {name: dict(summary_rows(res)) for name, res in runs.items()}
    keys = list(dict.fromkeys(k for rows in per_run.values() for k in rows))
    lines = ["# Runs side by side", "", "Each run's full report: " +
             ", ".join(f"[{n}]({n}/report.md)" for n in runs), ""]
    if any(res["quick"] for res in runs.values()):
        lines += ["**Quick evaluation** (reduced sets).", ""]
    lines += _table([""] + list(runs), [[k] + [per_run[n].get(k, "-") for n in runs] for k in keys]) + [""]
    os.makedirs(out_dir, exist_ok=True)
    _write_text(os.path.join(out_dir, "compare.json"), json.dumps(combined, indent=1))
    _write_text(os.path.join(out_dir, "compare.md"), "\n".join(lines))
