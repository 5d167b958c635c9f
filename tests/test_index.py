"""Retrieval: every fast search path against the numpy brute force, approximate recall, files, additions."""
import json
import os

import numpy as np
import pytest

from dvgan.engine import search as S
from dvgan.engine.index import CodeIndex, Gallery, build_index
from dvgan.errors import InputError, UsageError

from test_engine import bundle, engines, image_files, images  # noqa: F401  (shared session fixtures)


def clustered(n, dim, seed, rank=8):
    """Codes on a low-dimensional subspace plus noise, as trained codes are; continuous, so no distance ties."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(99).standard_normal((rank, dim)).astype(np.float32)
    return (rng.standard_normal((n, rank), dtype=np.float32) @ basis
            + 0.05 * rng.standard_normal((n, dim), dtype=np.float32))


@pytest.mark.parametrize("dim", [8, 64])
def test_exact_paths_match_numpy(dim):
    import faiss
    import torch
    g, q = clustered(3000, dim, 0), clustered(40, dim, 1)
    want_d, want_i = S.numpy_topk(g, q, 10)
    flat = faiss.IndexFlatL2(dim)
    flat.add(g)
    d, i = flat.search(q, 10)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-3)
    d, i = S.torch_topk(torch.from_numpy(g), q, 10)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-3)
    # the numpy reference against the obvious loop
    for row in (0, 17):
        full = ((g - q[row]) ** 2).sum(1)
        np.testing.assert_array_equal(want_i[row], np.argsort(full, kind="stable")[:10])


def test_index_search_matches_numpy_and_checks_k():
    s, mu = clustered(2000, 16, 2), clustered(2000, 32, 3)
    idx = CodeIndex.create("digest", 16, 32, device="cpu")
    idx.add_codes(s, mu, [f"p{i}" for i in range(2000)])
    q = clustered(25, 32, 4)
    d, i = idx.search("unspecified", q, 7)
    np.testing.assert_array_equal(i, S.numpy_topk(mu, q, 7)[1])
    for k in (0, -1, 2001):
        with pytest.raises(UsageError):
            idx.search("specified", s[:2], k)
    with pytest.raises(UsageError, match="by"):
        idx.search("pose", s[:2], 3)
    with pytest.raises(UsageError):
        idx.search("specified", mu[:2], 3)


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_approximate_reaches_target_recall(method):
    s, mu = clustered(6000, 16, 5), clustered(6000, 64, 6)
    idx = CodeIndex.create("digest", 16, 64, method=method, expected=6000, device="cpu")
    idx.add_codes(s, mu, [str(i) for i in range(6000)])
    tuning = idx.tune({"specified": clustered(300, 16, 11), "unspecified": clustered(300, 64, 12)}, 10, 0.9)
    q = clustered(300, 64, 7)  # other held-out queries than the tuning ones
    _, got = idx.search("unspecified", q, 10)
    measured = S.recall_at_k(got, S.numpy_topk(mu, q, 10)[1], 10)
    assert tuning["unspecified"]["recall"] >= 0.9
    assert measured >= 0.85, measured


def test_tune_takes_smallest_nprobe_whose_lower_bound_meets_target():
    import faiss
    g, q = clustered(5000, 32, 21), clustered(400, 32, 22)
    index = S.new_faiss_index("ivf", 32, len(g))
    S.train_if_needed(index, g)
    index.add(g)
    exact = S.numpy_topk(g, q, 10)[1]

    def bounds(nprobe):  # the obvious version: per-query recall, its mean and mean - TUNE_Z standard errors
        faiss.extract_index_ivf(index).nprobe = nprobe
        per = np.array([len(set(a) & set(e)) / 10 for a, e in zip(index.search(q, 10)[1], exact)])
        return per.mean(), per.mean() - S.TUNE_Z * per.std(ddof=1) / np.sqrt(len(per))

    got = S.tune(index, g, q, k=10, target=0.9)
    assert faiss.extract_index_ivf(index).nprobe == got["value"]  # left set on the index
    mean, low = bounds(got["value"])
    assert got["recall"] == pytest.approx(mean, abs=1e-4) and got["recall_low"] == pytest.approx(low, abs=1e-4)
    assert low >= 0.9 and mean - low > 0.005  # the margin is real, not zero
    assert got["value"] == 1 or bounds(got["value"] - 1)[1] < 0.9  # and no smaller nprobe meets it


def test_recall_at_k_reference():
    exact = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    approx = np.array([[0, 1, 9, 3], [4, 8, 9, 7]])
    assert S.recall_at_k(approx, exact, 3) == pytest.approx((2 + 1) / 6)
    assert S.recall_at_k(approx, exact, 3, self_ids=np.array([0, 4])) == pytest.approx((2 + 1) / 6)
    np.testing.assert_allclose(S.recall_per_query(approx, exact, 3), [2 / 3, 1 / 3])


def test_build_index_tunes_on_held_out_codes(engines):  # noqa: F811
    eng = engines["onnxruntime"]
    s, mu = clustered(3000, eng.s_dim, 13), clustered(3000, eng.z_dim, 14)
    paths = [f"c{i}" for i in range(3000)]
    idx = build_index(eng, Gallery(s, mu, paths, list(range(3000))), method="ivf", target_recall=0.9)
    assert len(idx) == 3000 and sorted(idx.paths) == sorted(paths)
    assert all(idx.labels[i] == int(idx.paths[i][1:]) for i in range(0, 3000, 97))  # labels follow their paths
    t = idx.meta["tuning"]["unspecified"]
    assert t["recall"] >= 0.9 and t["queries"] == 300 and t["gallery"] == 2700
    row = idx.paths.index("c42")
    assert idx.search("unspecified", mu[42:43], 1)[1][0, 0] == row


def test_incremental_add_equals_one_build():
    s, mu = clustered(500, 8, 8), clustered(500, 12, 9)
    paths = [f"img{i}" for i in range(500)]
    one = CodeIndex.create("d", 8, 12, device="cpu")
    one.add_codes(s, mu, paths)
    two = CodeIndex.create("d", 8, 12, device="cpu")
    two.add_codes(s[:300], mu[:300], paths[:300])
    two.add_codes(s[300:], mu[300:], paths[300:])
    q = clustered(10, 8, 10)
    assert np.array_equal(one.search("specified", q, 5)[1], two.search("specified", q, 5)[1])
    assert two.paths == paths


def test_save_load_and_refusals(engines, images, tmp_path):  # noqa: F811
    eng = engines["onnxruntime"]
    codes = eng.encode(images)
    paths = [f"/g/{i}.png" for i in range(len(images))]
    idx = build_index(eng, Gallery(codes.s, codes.mu, paths, list(range(len(paths)))))
    out = str(tmp_path / "idx")
    idx.save(out)
    idx.save(out)  # replacing an index folder works, and leaves no temporary folders
    assert sorted(os.listdir(tmp_path)) == ["idx"]
    back = CodeIndex.load(out, eng)
    hits = back.query(eng, images[:3], "specified", 4)
    assert [h[0].id for h in hits] == [0, 1, 2] and hits[1][0].path == "/g/1.png" and hits[2][0].label == 2
    np.testing.assert_array_equal(back.search("unspecified", codes.mu, 3)[1], idx.search("unspecified", codes.mu, 3)[1])

    class Other:
        digest, bundle_dir = "0" * 64, "/elsewhere"
    with pytest.raises(UsageError, match="built from bundle"):
        CodeIndex.load(out, Other())
    with pytest.raises(UsageError, match="rebuild"):
        back.query(Other(), images[:1])
    meta = json.load(open(os.path.join(out, "index.json")))
    meta["count"] = 3
    json.dump(meta, open(os.path.join(out, "index.json"), "w"))
    with pytest.raises(InputError, match="holds 20 codes"):
        CodeIndex.load(out)
    open(os.path.join(out, "specified.faiss"), "wb").write(b"garbage")
    with pytest.raises(InputError):
        CodeIndex.load(out)
    other = tmp_path / "notindex"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not a dvgan index"):
        idx.save(str(other))
    assert (other / "keep.txt").exists()


def test_gallery_query_finds_itself_and_same_identity(engines, image_files):  # noqa: F811
    from dvgan.engine.index import encode_folder
    eng = engines["onnxruntime"]
    idx = build_index(eng, encode_folder(eng, os.path.dirname(image_files[0])))
    assert len(idx) == len(image_files)
    for by in ("specified", "unspecified"):
        hits = idx.query(eng, image_files[5], by, 3)[0]
        assert hits[0].path == os.path.abspath(image_files[5]) and hits[0].distance < 1e-6
