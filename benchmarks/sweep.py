"""Recipe sweep: train several configurations at once and probe each one's codes.

Each job trains a recipe (a config file plus --set style overrides), then fits the identity probe
(dvgan.eval.probes.classify) on mu and on s. Writes one JSON line per job. Used to choose the
recipes in configs/; the numbers that count are those of `dvgan eval` on the final runs.

  python benchmarks/sweep.py --grid benchmarks/grids/recipes.json --out /tmp/sweep --device cuda --jobs 8
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np


def _codes(enc, images, device, batch=1024):
    import torch
    out_s, out_mu = [], []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).to(device).float() / 127.5 - 1.0
            s, mu, _ = enc(x)
            out_s.append(s.float().cpu().numpy())
            out_mu.append(mu.float().cpu().numpy())
    return np.concatenate(out_s), np.concatenate(out_mu)


def run_job(job: dict, out_root: str, device: str, data_root: str) -> dict:
    import torch
    torch.set_num_threads(int(os.environ.get("SWEEP_THREADS", "2")))
    from dvgan.train.recipe import build_configs
    from dvgan.eval.probes import classify
    from dvgan.train.checkpoint import build_models, load_checkpoint
    from dvgan.train.loop import Trainer, train

    spec = job["data"].replace("DATA", data_root)
    overrides = [f"{k}={json.dumps(v)}" for k, v in job.get("set", {}).items()]
    model, tcfg, data = build_configs(spec, job["config"], overrides, {})
    run_dir = os.path.join(out_root, job["name"])
    t0 = time.time()
    summary = train(model, tcfg, data, run_dir, device=device, progress=False)
    seconds = time.time() - t0
    state = load_checkpoint(run_dir)
    _, enc, _ = build_models(state, device)
    split = json.load(open(os.path.join(run_dir, "split.json")))
    from dvgan import data as D
    ds = D.load(spec, model.image_size, model.channels, seed=data.get("seed", 0))
    tr, te = np.array(split["train"]), np.array(split["test"])
    rng = np.random.default_rng(0)
    if split["kind"] == "identity":  # unseen identities: probe within the test identities
        perm = rng.permutation(te)
        fit, ev = perm[: len(perm) * 3 // 4], perm[len(perm) * 3 // 4:]
    else:
        fit, ev = rng.permutation(tr)[:4000], te
    s_fit, mu_fit = _codes(enc, ds.images[fit], device)
    s_ev, mu_ev = _codes(enc, ds.images[ev], device)
    y_fit, y_ev = ds.labels[fit], ds.labels[ev]
    res = {"name": job["name"], "set": job.get("set", {}), "train_s": round(seconds, 1),
           "images_per_s": summary["images_per_s"], "last": summary["losses"]}
    for name, a, b in (("mu", mu_fit, mu_ev), ("s", s_fit, s_ev)):
        r = classify(a, y_fit, b, y_ev, seed=0)
        res[name] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
    if ds.attributes is not None:
        for i, attr in enumerate(ds.meta["attribute_names"]):
            r = classify(mu_fit, ds.attributes[fit, i], mu_ev, ds.attributes[ev, i], seed=0)
            res[f"mu_{attr}"] = round(r["test_error"], 4)
            res[f"chance_{attr}"] = round(r["chance_error"], 4)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--data-root", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--only", default="", help="comma-separated job-name prefixes")
    ap.add_argument("--budget", type=float, default=0, help="seconds; jobs not started by then are skipped")
    args = ap.parse_args()
    jobs = json.load(open(args.grid))
    if args.only:
        jobs = [j for j in jobs if any(j["name"].startswith(p) for p in args.only.split(","))]
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "sweep.jsonl")
    t0 = time.time()
    with ProcessPoolExecutor(args.jobs) as pool, open(results_path, "a") as log:
        futures = {pool.submit(run_job, j, args.out, args.device, os.path.abspath(args.data_root)): j for j in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # report and go on: one bad recipe must not sink the sweep
                res = {"name": job["name"], "error": f"{type(exc).__name__}: {exc}"}
            res["elapsed"] = round(time.time() - t0, 1)
            log.write(json.dumps(res) + "\n")
            log.flush()
            print(json.dumps(res), flush=True)
            if args.budget and time.time() - t0 > args.budget:
                for f in futures:
                    f.cancel()
    print(f"sweep done in {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
