"""Retrieval queries/s: exact FAISS search against numpy brute force over 100k and 1M codes of 64 and
512 dims, and the approximate indexes at 1M (ivf: IVFFlat; ivfpq: IVF + 4-bit fast-scan PQ re-ranked
exactly): their recall@10 against exact and their speed-ups.

    python benchmarks/bench_retrieval.py [--sizes 100000,1000000] [--dims 64,512] [--queries 256] [--reps 5]
                                         [--methods ivf,ivfpq] [--pq-min-m 32]

Codes are synthetic and seeded: points on a 16-dimensional subspace plus 5% isotropic noise, the
shape trained s and mu codes take (a few informative directions; the KL term flattens the rest).
Queries are fresh draws, not gallery points. Every speed is the median of --reps searches of one
batch of --queries queries; ratios come from the same run. Each approximate index's nprobe is tuned
(dvgan.engine.search.tune) on --tune-queries fresh queries, and its recall@10 is reported on
--recall-queries others, the timed batch among them. Build seconds: training and adding, not tuning.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from bench_engine import median_time

RANK = 16


def codes(n: int, dim: int, seed: int) -> np.ndarray:
    basis = np.random.default_rng(1234 + dim).standard_normal((RANK, dim), dtype=np.float32) / np.sqrt(RANK)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for i in range(0, n, 100_000):  # in blocks, to keep the temporaries small
        m = min(100_000, n - i)
        out[i:i + m] = rng.standard_normal((m, RANK), dtype=np.float32) @ basis
        out[i:i + m] += 0.05 * rng.standard_normal((m, dim), dtype=np.float32)
    return out


def approximate(method: str, g: np.ndarray, q: np.ndarray, tune_q: np.ndarray, eval_q: np.ndarray,
                exact: np.ndarray, args) -> dict:
    """Build, tune and time one approximate index; exact: the exact top-10 ids of tune_q then eval_q."""
    import faiss

    from dvgan.engine import search as S
    t0 = time.perf_counter()
    index = S.new_faiss_index(method, g.shape[1], len(g))
    S.train_if_needed(index, g)
    index.add(g)
    build = time.perf_counter() - t0
    tuning = S.tune(index, g, tune_q, k=10, target=args.target, exact=exact[:len(tune_q)])
    t = median_time(lambda: index.search(q, 10), args.reps)
    per = S.recall_per_query(index.search(eval_q, 10)[1], exact[len(tune_q):], 10)
    return {"qps": len(q) / t, "recall": float(per.mean()), "recall_se": float(per.std(ddof=1) / np.sqrt(len(per))),
            "recall_timed": float(per[:len(q)].mean()), "nprobe": tuning["value"],
            "nlist": faiss.extract_index_ivf(index).nlist, "build": build, "tune_recall": tuning["recall"],
            "tune_low": tuning["recall_low"]}


def main():
    import faiss

    from dvgan.engine import search as S
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--dims", default="64,512")
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--approx-size", type=int, default=1_000_000)
    p.add_argument("--methods", default="ivf,ivfpq", help="approximate methods measured at --approx-size")
    p.add_argument("--pq-min-m", type=int, default=S.PQ_MIN_M,
                   help="floor of ivfpq sub-quantisers (dvgan.engine.search.PQ_MIN_M), to measure other settings")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--tune-queries", type=int, default=2000, help="fresh queries nprobe is tuned on")
    p.add_argument("--recall-queries", type=int, default=2000,
                   help="fresh queries recall@10 is reported on (the timed batch and more)")
    args = p.parse_args()
    S.PQ_MIN_M = args.pq_min_m
    sizes = [int(v) for v in args.sizes.split(",")]
    dims = [int(v) for v in args.dims.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    lines = []
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; {args.queries} queries per batch; "
          f"median of {args.reps}", flush=True)
    for dim in dims:
        q = codes(args.queries, dim, seed=7)
        for n in sizes:
            g = codes(n, dim, seed=1)
            flat = faiss.IndexFlatL2(dim)
            flat.add(g)
            t_np = median_time(lambda: S.numpy_topk(g, q, 10), args.reps)
            t_flat = median_time(lambda: flat.search(q, 10), args.reps)
            exact_ids = flat.search(q, 10)[1]
            agree = float((S.numpy_topk(g, q, 10)[1] == exact_ids).mean())
            line = {"n": n, "dim": dim, "numpy": args.queries / t_np, "flat": args.queries / t_flat, "agree": agree}
            if n == args.approx_size and methods:
                # Tuning and recall queries are separate fresh draws; one exact search answers both.
                tune_q = codes(args.tune_queries, dim, seed=11)
                eval_q = np.concatenate([q, codes(max(0, args.recall_queries - len(q)), dim, seed=13)])
                both = flat.search(np.concatenate([tune_q, eval_q]), 10)[1]
                for method in methods:  # one at a time: each holds its own copy of the codes
                    line[method] = approximate(method, g, q, tune_q, eval_q, both, args)
                    print(method, line[method], flush=True)
            lines.append(line)
            print(line, flush=True)
            del flat, g
    print()
    head = f"{'codes':>9} {'dim':>4} {'numpy q/s':>10} {'faiss flat q/s':>15} {'flat/numpy':>10}"
    for m in methods:
        head += (f" {m + ' q/s':>9} {m + '/flat':>10} {'recall@10':>15} {'timed':>6} {'nprobe/nlist':>12}"
                 f" {m + ' build s':>13}")
    print(head)
    for r in lines:
        tail = ""
        for m in methods:
            if m in r:
                a = r[m]
                tail += (f" {a['qps']:9.0f} {a['qps'] / r['flat']:9.1f}x {a['recall']:7.3f} +-{a['recall_se']:.3f} "
                         f"{a['recall_timed']:6.3f} {a['nprobe']:>5}/{a['nlist']:<6} {a['build']:13.0f}")
        print(f"{r['n']:9d} {r['dim']:4d} {r['numpy']:10.0f} {r['flat']:15.0f} {r['flat'] / r['numpy']:9.1f}x{tail}")
    for r in lines:
        for m in methods:
            if m in r:
                a = r[m]
                print(f"dim {r['dim']} {m}: nprobe tuned on {args.tune_queries} fresh queries to recall@10 lower "
                      f"bound >= {args.target} (mean {a['tune_recall']:.3f}, bound {a['tune_low']:.3f}); recall@10 "
                      f"above on {max(args.recall_queries, args.queries)} other fresh queries (+- one standard "
                      f"error), 'timed' on the {args.queries} timed ones")
    if "ivfpq" in methods:
        print(f"ivfpq: IVF{{nlist}},PQ{{m}}x4fs,RFlat with m sub-quantisers ({', '.join(f'{d}: {S.pq_m(d)}' for d in dims)}), "
              f"re-ranking the top 10 x {S.REFINE_K_FACTOR} exactly")
    print("exact faiss ids equal numpy's on", ", ".join(f"{r['agree']:.4f}" for r in lines), "of entries")


if __name__ == "__main__":
    main()
