"""Retrieval: every fast search path against the numpy brute force, approximate recall, files, additions."""
import json
import os
import types

import numpy as np
import pytest

from dvgan.engine import search as S
from dvgan.engine.index import CodeIndex, Gallery, add_gallery, build_index
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


@pytest.mark.parametrize("method", ["ivf", "hnsw", "ivfpq"])
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


@pytest.mark.parametrize("method", ["ivf", "ivfpq"])
def test_tune_takes_smallest_nprobe_whose_lower_bound_meets_target(method):
    import faiss
    g, q = clustered(5000, 32, 21), clustered(400, 32, 22)
    index = S.new_faiss_index(method, 32, len(g))
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


def test_ivfpq_reranks_exactly_and_reaches_its_tuned_recall():
    import faiss
    g, tune_q, q = clustered(8000, 64, 31), clustered(300, 64, 32), clustered(300, 64, 33)
    index = S.new_faiss_index("ivfpq", 64, len(g))
    assert isinstance(index, faiss.IndexRefineFlat) and index.k_factor == S.REFINE_K_FACTOR
    S.train_if_needed(index, g)
    index.add(g)
    tuning = S.tune(index, g, tune_q, k=10, target=0.95)
    assert tuning["param"] == "nprobe" and tuning["recall_low"] >= 0.95
    d, got = index.search(q, 10)
    want_d, want = S.numpy_topk(g, q, 10)
    measured = S.recall_per_query(got, want, 10)
    assert measured.mean() >= 0.95 - 3 * measured.std(ddof=1) / np.sqrt(len(q)), measured.mean()
    # re-ranked: the distances are exact ones, not PQ estimates, and ascending
    exact = ((q[:, None, :] - g[got]) ** 2).sum(-1)
    np.testing.assert_allclose(d, exact, rtol=1e-4, atol=1e-3)
    assert (np.diff(d, axis=1) >= 0).all()
    # where both found the same id, the same distance as the brute force
    same = got == want
    np.testing.assert_allclose(d[same], want_d[same], rtol=1e-4, atol=1e-3)
    # the quantised pass alone (no re-ranking) is measurably worse: the refinement does the work
    base = faiss.downcast_index(index.base_index)
    assert S.recall_at_k(base.search(q, 10)[1], want, 10) < measured.mean() - 0.05


def test_ivfpq_training_equals_faiss_own_and_needs_enough_codes():
    import faiss
    g, q = clustered(3000, 32, 34), clustered(50, 32, 35)
    ours, theirs = S.new_faiss_index("ivfpq", 32, len(g)), S.new_faiss_index("ivfpq", 32, len(g))
    S.train_if_needed(ours, g)  # coarse k-means on all threads, the PQ on one
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # all on one (on busy cores faiss's PQ training takes seconds otherwise)
    try:
        theirs.train(g)  # 3000 <= 64 * nlist: train_if_needed trains on all of g too
    finally:
        faiss.omp_set_num_threads(threads)
    for index in (ours, theirs):
        index.add(g)
        S.set_effort(index, 5)
    for a, b in zip(ours.search(q, 10), theirs.search(q, 10)):
        np.testing.assert_array_equal(a, b)
    assert S.pq_m(32) == 32 and faiss.downcast_index(ours.base_index).pq.M == 32
    with pytest.raises(UsageError, match="at least 16 codes"):
        S.train_if_needed(S.new_faiss_index("ivfpq", 32, 100), g[:15])


@pytest.mark.parametrize("dim, m", [(512, 128), (256, 64), (64, 32), (32, 32), (8, 8), (12, 12), (13, 13), (100, 50), (3, 3)])
def test_pq_m_divides_dim(dim, m):
    assert S.pq_m(dim) == m and dim % m == 0


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


def test_ivfpq_save_load_round_trip(tmp_path):
    import faiss
    s, mu = clustered(3000, 16, 36), clustered(3000, 64, 37)
    idx = CodeIndex.create("digest", 16, 64, method="ivfpq", expected=3000, device="cpu")
    idx.add_codes(s, mu, [f"p{i}" for i in range(3000)])
    tuning = idx.tune({"specified": clustered(200, 16, 38), "unspecified": clustered(200, 64, 39)}, 10, 0.9)
    idx.save(str(tmp_path / "idx"))
    assert json.load(open(tmp_path / "idx" / "index.json"))["method"] == "ivfpq"
    back = CodeIndex.load(str(tmp_path / "idx"), device="cpu")
    assert back.method == "ivfpq" and back.meta["tuning"] == tuning
    for by, codes in (("specified", clustered(40, 16, 40)), ("unspecified", clustered(40, 64, 41))):
        loaded = back.faiss[by]
        assert isinstance(loaded, faiss.IndexRefineFlat) and loaded.k_factor == S.REFINE_K_FACTOR
        assert faiss.extract_index_ivf(loaded).nprobe == tuning[by]["value"] > 1
        for a, b in zip(idx.search(by, codes, 10), back.search(by, codes, 10)):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back._vectors("unspecified"), mu)  # the exact codes, in id order


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


def test_add_gallery_keeps_the_data_spec_and_refuses_another():
    s, mu = clustered(40, 8, 11), clustered(40, 12, 12)
    index = CodeIndex.create("d", 8, 12, device="cpu")
    add_gallery(index, Gallery(s[:20], mu[:20], [f"sprites#{i}" for i in range(20)], list(range(20)), "sprites"))
    add_gallery(index, Gallery(s[20:30], mu[20:30], [f"f{i}.png" for i in range(10)], None))  # files: no spec
    assert len(index) == 30 and index.meta["data_spec"] == "sprites"
    assert index.labels[:20] == list(range(20)) and index.labels[20:] == [None] * 10
    with pytest.raises(UsageError, match="holds images of data spec 'sprites'; cannot add 'mnist:d'"):
        add_gallery(index, Gallery(s[30:], mu[30:], [f"m{i}" for i in range(10)], None, "mnist:d"))
    assert len(index) == 30                                              # nothing added on refusal


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


def test_cli_builds_ivfpq_index(bundle, tmp_path):  # noqa: F811
    from click.testing import CliRunner
    from dvgan.cli.main import cli
    out = tmp_path / "idx"
    res = CliRunner().invoke(cli, ["index", "build", "--bundle", bundle, "--data", "sprites:2", "-o", str(out),
                                   "--method", "ivfpq", "--recall", "0.9"])
    assert res.exit_code == 0, res.output
    assert "(ivfpq; specified nprobe" in res.output
    back = CodeIndex.load(str(out), device="cpu")
    assert back.method == "ivfpq" and len(back) == 512
    assert all(t["recall"] >= 0.9 for t in back.meta["tuning"].values())
    res = CliRunner().invoke(cli, ["index", "build", "--bundle", bundle, "--data", "sprites:2", "-o", str(out),
                                   "--method", "ivfpqx"])
    assert res.exit_code == 2 and "ivfpq" in res.output


def test_gallery_query_finds_itself_and_same_identity(engines, image_files):  # noqa: F811
    from dvgan.engine.index import encode_folder
    eng = engines["onnxruntime"]
    idx = build_index(eng, encode_folder(eng, os.path.dirname(image_files[0])))
    assert len(idx) == len(image_files)
    for by in ("specified", "unspecified"):
        hits = idx.query(eng, image_files[5], by, 3)[0]
        assert hits[0].path == os.path.abspath(image_files[5]) and hits[0].distance < 1e-6


def test_gallery_images_are_found_from_where_each_entry_came(engines, image_files, tmp_path):  # noqa: F811
    """Files are read, data-spec entries drawn alone, and an entry no longer there is None."""
    import shutil
    from dvgan.data import load
    from dvgan.data.preprocess import image_to_uint8, open_image
    from dvgan.engine.index import encode_data, encode_folder
    eng = engines["onnxruntime"]
    folder = shutil.copytree(os.path.dirname(image_files[0]), tmp_path / "gallery")
    idx = build_index(eng, encode_data(eng, "sprites:2"), method="hnsw")
    files = encode_folder(eng, str(folder))
    idx.add_codes(files.s, files.mu, files.paths)
    os.unlink(files.paths[1])
    data = load("sprites:2", 32, 3)
    first_file = len(idx) - len(files.paths)
    ids = [first_file, 7, first_file + 1, 0]
    got = idx.images(ids, 32, 3)
    assert np.array_equal(got[0], image_to_uint8(open_image(files.paths[0]), 32, 3))
    for g, i in ((got[1], 7), (got[3], 0)):
        assert np.array_equal(g, data.images[int(idx.paths[i].split(":")[1])])
    assert got[2] is None


def test_mixing_labelled_and_unlabelled_images_keeps_the_labels(tmp_path):
    """Images added without labels get label None; the labels already held survive, and a save and load."""
    rng = np.random.default_rng(0)
    s, mu = rng.standard_normal((6, 8), dtype=np.float32), rng.standard_normal((6, 4), dtype=np.float32)
    index = CodeIndex.create("d" * 64, 8, 4, method="flat", device="cpu")
    index.add_codes(s[:2], mu[:2], ["a", "b"], [3, 4])
    index.add_codes(s[2:4], mu[2:4], ["c", "d"])
    index.add_codes(s[4:], mu[4:], ["e", "f"], [5, 5])
    assert index.labels == [3, 4, None, None, 5, 5]
    unlabelled_first = CodeIndex.create("d" * 64, 8, 4, method="flat", device="cpu")
    unlabelled_first.add_codes(s[:2], mu[:2], ["a", "b"])
    unlabelled_first.add_codes(s[2:3], mu[2:3], ["c"], [7])
    assert unlabelled_first.labels == [None, None, 7]
    index.save(str(tmp_path / "idx"))
    loaded = CodeIndex.load(str(tmp_path / "idx"), device="cpu")
    assert loaded.labels == [3, 4, None, None, 5, 5]
    engine = types.SimpleNamespace(digest="d" * 64, encode=lambda images: types.SimpleNamespace(s=s, mu=mu))
    hits = loaded.query(engine, None, "specified", 1)
    assert [h[0].label for h in hits] == [3, 4, None, None, 5, 5]
