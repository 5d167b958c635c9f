"""Nearest-neighbour search over codes by squared L2 distance: FAISS (CPU or GPU), torch on a GPU,
and the numpy brute force every fast path is tested against.

    method   structure                                   results
    flat     faiss IndexFlatL2 (GPU copy when usable)    exact
    ivf      faiss IndexIVFFlat, nlist ~ sqrt(N)          approximate; nprobe tuned to a target recall
    hnsw     faiss IndexHNSWFlat, M = 32                  approximate; efSearch tuned to a target recall
    ivfpq    IVF + 4-bit fast-scan PQ (m ~ d/4), then     approximate; nprobe tuned to a target recall
             exact re-ranking of its top k * 16 codes     (the re-ranking factor is fixed)
             (faiss IVF{nlist},PQ{m}x4fs,RFlat)

Recall@k is measured against exact search on held-out gallery codes: codes the index did not hold
while it was tuned (build_index adds them afterwards).
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import RuntimeFailure, UsageError, first_line

log = logging.getLogger(__name__)

METHODS = ("flat", "ivf", "hnsw", "ivfpq")
HNSW_M = 32
# ivfpq: 4-bit sub-quantisers of PQ_SUBDIM dims each (1 bit per dim: 64 bytes per 512-dim code), at least
# PQ_MIN_M of them. The first pass only has to put the exact top k among its top k * REFINE_K_FACTOR, which
# the exact re-ranking then orders: fewer, wider sub-quantisers (m = d/8) needed a larger factor for the
# same recall and were then slower; codes of the raw vectors (fs), not of their residuals (fsr): as
# accurate after re-ranking, and faster, with one lookup table per query instead of one per probed list.
# At 64 dims, 16 sub-quantisers (d/4) left the first pass too coarse to re-rank from, whatever nprobe, and
# 32 reach the recall target, hence the floor (benchmarks/RESULTS.md, "Retrieval queries/s, exact and
# approximate at 1M codes").
PQ_SUBDIM = 4
PQ_MIN_M = 32
PQ_KSUB = 16  # centroids per 4-bit sub-quantiser: each needs that many training codes
# Fixed, not tuned, so that nprobe stays the one knob, tuned as for ivf. On the benchmark's 1M codes of
# 512 dims a factor of 32 found nothing more (what is missed, IVF's probing missed) and one of 8 traded a
# little recall for a little speed. Re-ranking 160 codes costs little beside scanning nprobe lists.
REFINE_K_FACTOR = 16
TUNE_Z = 3.0  # standard errors of the mean recall kept above the tuning target
TORCH_BLOCK = 1 << 28  # distance-matrix elements per torch step (1 GiB of float32)


def numpy_topk(gallery: np.ndarray, queries: np.ndarray, k: int, block: int = 256):
    """Exact brute force: (distances (Q, k) squared L2 ascending, ids (Q, k) int64)."""
    g = np.asarray(gallery, np.float32)
    gn = (g.astype(np.float64) ** 2).sum(1)
    dist_out, id_out = [], []
    for i in range(0, len(queries), block):
        q = np.asarray(queries[i:i + block], np.float32)
        d = (q.astype(np.float64) ** 2).sum(1)[:, None] - 2.0 * (q @ g.T) + gn[None]
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(q), 1))
        pd = np.take_along_axis(d, part, 1)
        order = np.argsort(pd, axis=1, kind="stable")
        id_out.append(np.take_along_axis(part, order, 1))
        dist_out.append(np.maximum(np.take_along_axis(pd, order, 1), 0.0))
    return np.concatenate(dist_out).astype(np.float32), np.concatenate(id_out).astype(np.int64)


def torch_topk(gallery, queries, k: int):
    """Exact search with a matmul and top-k on gallery's device; gallery is a float32 torch tensor (N, d).

    Returns numpy (distances (Q, k), ids (Q, k)). Queries are processed in blocks that keep the
    distance matrix under TORCH_BLOCK elements.
    """
    import torch
    q_all = torch.as_tensor(np.asarray(queries, np.float32)).to(gallery.device)
    gn = (gallery * gallery).sum(1)
    step = max(1, TORCH_BLOCK // max(1, gallery.shape[0]))
    dists, ids = [], []
    with torch.inference_mode():
        for i in range(0, len(q_all), step):
            q = q_all[i:i + step]
            d = (q * q).sum(1, keepdim=True) - 2.0 * (q @ gallery.T) + gn[None]
            v, j = torch.topk(d, k, dim=1, largest=False, sorted=True)
            dists.append(v.clamp_min_(0).cpu())
            ids.append(j.cpu())
    return torch.cat(dists).numpy(), torch.cat(ids).numpy().astype(np.int64)


def faiss_gpu_problem() -> str | None:
    """None when faiss-gpu imports and an exact search on GPU 0 agrees with the CPU; else why not."""
    try:
        import faiss
    except ImportError:
        return "faiss is not installed"
    if not hasattr(faiss, "StandardGpuResources"):
        return "faiss is the CPU build"
    try:
        if faiss.get_num_gpus() < 1:
            return "faiss sees no GPU"
        rng = np.random.default_rng(0)
        g = rng.standard_normal((2048, 64), dtype=np.float32)
        q = g[:16] + 0.01
        cpu = faiss.IndexFlatL2(64)
        cpu.add(g)
        gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, cpu)
        _, got = gpu.search(q, 5)
        _, want = cpu.search(q, 5)
    except Exception as exc:  # a wheel without kernels for this card fails here with a CUDA error
        return f"faiss-gpu smoke search failed ({first_line(exc, 120)})"
    if not np.array_equal(got, want):
        return "faiss-gpu smoke search disagrees with the CPU"
    return None


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def new_faiss_index(method: str, dim: int, n_hint: int):
    """An empty faiss index; ivf and ivfpq pick nlist from the expected gallery size and need training."""
    import faiss
    if method == "flat":
        return faiss.IndexFlatL2(dim)
    if method == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M)
        index.hnsw.efConstruction = 80
        return index
    if method == "ivf":
        nlist = ivf_nlist(n_hint)
        return faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
    if method == "ivfpq":
        # IndexRefineFlat over IndexIVFPQFastScan; the refine index keeps every code exactly.
        index = faiss.index_factory(dim, f"IVF{ivf_nlist(n_hint)},PQ{pq_m(dim)}x4fs,RFlat")
        index.k_factor = REFINE_K_FACTOR
        return index
    raise UsageError(f"unknown index method {method!r}: choose one of {', '.join(METHODS)}")


def ivf_nlist(n: int) -> int:
    """Inverted lists for n codes: about sqrt(n), with at least 39 training points per list."""
    return int(max(1, min(round(math.sqrt(n)), n // 39)))


def pq_m(dim: int) -> int:
    """Sub-quantisers for dim: the smallest divisor of dim that is at least max(PQ_MIN_M, dim / PQ_SUBDIM)
    (all of dim when it is smaller): about dim / 4, never fewer than 32 (a coarser code loses too much)."""
    want = max(min(dim, PQ_MIN_M), dim // PQ_SUBDIM)
    return next(m for m in range(want, dim + 1) if dim % m == 0)


def train_if_needed(index, vectors: np.ndarray, seed: int = 0) -> None:
    """Train an untrained ivf / ivfpq index on vectors, or a seeded subsample of 64 codes per list."""
    if index.is_trained:
        return
    import faiss
    ivf = faiss.extract_index_ivf(index)
    quantised = isinstance(index, faiss.IndexRefine)  # ivfpq: IndexRefineFlat over the IVF-PQ
    need = max(ivf.nlist, PQ_KSUB) if quantised else ivf.nlist
    if len(vectors) < need:
        raise UsageError(f"an {'ivfpq' if quantised else 'ivf'} index with {ivf.nlist} lists needs at least "
                         f"{need} codes to train, got {len(vectors)}")
    rng = np.random.default_rng(seed)
    cap = 64 * ivf.nlist
    sample = vectors if len(vectors) <= cap else vectors[np.sort(rng.choice(len(vectors), cap, replace=False))]
    sample = np.ascontiguousarray(sample, np.float32)
    if quantised:
        train_quantised(index, ivf, sample)
    else:
        index.train(sample)


def train_quantised(index, ivf, sample: np.ndarray) -> None:
    """index.train(sample) for ivfpq, the PQ part on this thread alone.

    PQ training is one small k-means per sub-quantiser (16 centroids, at most 4096 codes), each
    iteration an OpenMP region; when other processes hold the cores, threads that wait at those
    barriers for a descheduled sibling made it many times slower. The coarse k-means, one large job,
    keeps every thread. OpenMP's thread count is per calling thread, so other threads' searches are
    unaffected.
    """
    import faiss
    faiss.Clustering(ivf.d, ivf.nlist, ivf.cp).train(sample, ivf.quantizer)  # as IndexIVF.train would
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.train(sample)  # the coarse quantizer is trained: only the PQ is
    finally:
        faiss.omp_set_num_threads(threads)


def set_effort(index, value: int) -> None:
    """nprobe (ivf, ivfpq) or efSearch (hnsw): the knob that trades speed for recall."""
    import faiss
    ivf = faiss.try_extract_index_ivf(index) if not isinstance(index, faiss.IndexHNSW) else None
    if ivf is not None:
        ivf.nprobe = int(value)
    elif isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = int(value)


def recall_per_query(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int,
                     self_ids: np.ndarray | None = None) -> np.ndarray:
    """(Q,) fraction of each query's exact top-k found in its approximate top-k (self matches removed first)."""
    out = np.empty(len(exact_ids))
    for row, (a, e) in enumerate(zip(approx_ids, exact_ids)):
        if self_ids is not None:
            a, e = a[a != self_ids[row]], e[e != self_ids[row]]
        out[row] = len(set(a[:k].tolist()) & set(e[:k].tolist())) / k
    return out


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int, self_ids: np.ndarray | None = None) -> float:
    """Mean fraction of the exact top-k found in the approximate top-k (self matches removed first)."""
    return float(recall_per_query(approx_ids, exact_ids, k, self_ids).mean())


def tune(index, vectors: np.ndarray, queries: np.ndarray, k: int = 10, target: float = 0.95,
         exact: np.ndarray | None = None) -> dict:
    """Smallest nprobe / efSearch whose recall@k on queries reaches target with confidence; sets it on
    index and reports it.

    vectors: the codes index holds (for the exact answers); queries: codes NOT in the index, drawn
    like them. (A code of the index as its own query flatters graph indexes, which start next to it.)
    exact: the exact top-k ids of queries, when the caller has them already.

    The criterion is the lower confidence bound of the mean recall, mean - TUNE_Z * standard error
    over the queries, not the mean itself: the smallest setting whose sample mean just clears the
    target is picked for its luck on these queries, and fresh queries then land under the target.
    """
    import faiss
    k = min(k, len(vectors))
    q = np.ascontiguousarray(queries, np.float32)
    if exact is None:
        flat = faiss.IndexFlatL2(vectors.shape[1])
        flat.add(np.ascontiguousarray(vectors, np.float32))
        _, exact = flat.search(q, k)
    is_hnsw = isinstance(index, faiss.IndexHNSW)
    limit = 4096 if is_hnsw else faiss.extract_index_ivf(index).nlist

    def measure(value):
        set_effort(index, value)
        _, got = index.search(q, k)
        per = recall_per_query(got, exact, k)
        spread = per.std(ddof=1) / math.sqrt(len(per)) if len(per) > 1 else 0.0
        return float(per.mean()), float(per.mean() - TUNE_Z * spread)

    lo, value = (k - 1 if is_hnsw else 0), (max(16, k) if is_hnsw else 1)
    recall, low = measure(value)
    while low < target and value < limit:  # double until the target is met ...
        lo, value = value, min(limit, value * 2)
        recall, low = measure(value)
    while low >= target and value - lo > 1:  # ... then bisect down to the smallest value that meets it
        mid = (lo + value) // 2
        r, r_low = measure(mid)
        if r_low >= target:
            value, recall, low = mid, r, r_low
        else:
            lo = mid
    set_effort(index, value)
    if low < target:
        log.warning("index reaches recall@%d %.3f (lower bound %.3f) at most, under the target %.2f",
                    k, recall, low, target)
    return {"param": "efSearch" if is_hnsw else "nprobe", "value": value, "recall": round(recall, 4),
            "recall_low": round(low, 4), "k": k, "queries": len(q), "target": target}


def require_faiss():
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise RuntimeFailure("faiss is not installed (pip install faiss-cpu)") from None


__all__ = ["METHODS", "numpy_topk", "torch_topk", "faiss_gpu_problem", "torch_cuda_available",
           "new_faiss_index", "ivf_nlist", "pq_m", "train_if_needed", "set_effort", "recall_per_query", "recall_at_k", "tune",
           "require_faiss"]
