import gzip
import logging
import os
import re
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from dvgan import data as D
from dvgan.data import sprites
from dvgan.train.sampler import TripletSampler


def test_sprites_has_enough_identities_and_attributes():
    assert sprites.NUM_IDENTITIES >= 200
    attrs = sprites.attributes_of(np.arange(sprites.NUM_IDENTITIES))
    assert np.array_equal(sprites.identity_of(attrs), np.arange(sprites.NUM_IDENTITIES))  # its inverse
    assert attrs.shape == (sprites.NUM_IDENTITIES, 3)
    assert len({tuple(a) for a in attrs}) == sprites.NUM_IDENTITIES  # each identity is its own combination
    assert set(sprites.FACTORS) >= {"x", "y", "scale", "rotation"}


def test_render_is_deterministic_and_rgb():
    f = sprites.sample_factors(5, np.random.default_rng(1))
    a, b = sprites.render(np.arange(5) * 37, f, 32), sprites.render(np.arange(5) * 37, f, 32)
    assert a.dtype == np.uint8 and a.shape == (5, 32, 32, 3)
    assert np.array_equal(a, b)
    x1, *_ = sprites.generate(2, 32, seed=3)
    x2, *_ = sprites.generate(2, 32, seed=3)
    assert np.array_equal(x1, x2)


def test_each_factor_changes_the_image_on_its_own():
    base = np.array([[0.5, 0.5, 0.8, 0.3]], dtype=np.float32)
    ident = [8 * 4 * 3 + 4 + 1]  # a striped square: rotation is visible
    ref = sprites.render(ident, base, 32)
    for i in range(4):
        f = base.copy()
        f[0, i] += 0.15
        assert not np.array_equal(sprites.render(ident, f, 32), ref), sprites.FACTORS[i]
    # moving x shifts the sprite right: its centre of mass follows
    f = base.copy()
    f[0, 0] += 0.15
    mass = lambda im: (im.sum(-1).sum(0) * np.arange(32)).sum() / im.sum()  # noqa: E731
    assert mass(sprites.render(ident, f, 32)[0]) - mass(ref[0]) == pytest.approx(0.15 * 32, abs=1.0)


def test_factors_are_independent_of_each_other_and_of_identity():
    _, identity, factors = sprites.generate(20, 8, seed=0)
    corr = np.corrcoef(np.column_stack([factors, sprites.attributes_of(identity)]).T)
    off = corr[~np.eye(len(corr), dtype=bool)]
    assert np.abs(off[np.isfinite(off)]).max() < 0.05


def _folder(tmp_path, people):
    root = tmp_path / "faces"
    for person, items in people.items():
        (root / person).mkdir(parents=True)
        for name, content in items.items():
            if isinstance(content, Image.Image):
                content.save(root / person / name)
            else:
                (root / person / name).write_bytes(content)
    return str(root)


def test_folder_mixed_sizes_modes_and_junk(tmp_path, caplog):
    rng = np.random.default_rng(0)
    rgb = lambda w, h: Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))  # noqa: E731
    grey = lambda w, h: Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8))  # noqa: E731
    root = _folder(tmp_path, {
        "ann": {"a.png": rgb(40, 30), "b.jpg": grey(17, 50), "notes.txt": b"hello", "c.png": rgb(8, 8)},
        "bob": {"a.bmp": grey(64, 64), "broken.png": b"\x89PNG\r\n\x1a\n\0\0"},
        "cy": {"only.png": rgb(20, 20)},
    })
    with caplog.at_level(logging.WARNING):
        ds = D.load(root, image_size=32)
    assert ds.images.shape == (5, 3, 32, 32)  # colour present -> 3 channels
    assert D.default_channels(root) == 3      # decided from the headers alone, junk files ignored
    assert list(ds.labels) == [0, 0, 0, 1, 2]
    assert ds.identity_names == ["ann", "bob", "cy"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "notes.txt" in warnings[0] and "broken.png" in warnings[0]
    # one-image identities ("bob" and "cy") never give x1, but can give x2
    sampler = TripletSampler(torch.as_tensor(ds.labels))
    i1, i1p, i2 = sampler.sample(200)
    assert set(ds.labels[i1.numpy()]) == {0}
    assert set(ds.labels[i2.numpy()]) == {1, 2}
    split = D.make_split(ds, test_fraction=0.5)
    assert split["kind"] == "within" and set(split["train_identities"]) == {0, 1, 2}


def test_grey_folder_gives_one_channel(tmp_path):
    g = Image.fromarray(np.full((10, 12), 200, np.uint8))
    root = _folder(tmp_path, {"a": {"1.png": g, "2.png": g, "x.txt": b"no"}, "b": {"1.png": g}})
    ds = D.load(root, image_size=16)
    assert ds.images.shape == (3, 1, 16, 16) and D.default_channels(root) == 1
    x = ds.float_images()
    assert x.dtype == np.float32 and x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("people,match", [
    ({}, "no identity sub-folders"),
    ({"a": {"x.txt": b"no"}}, "no readable images"),
])
def test_unusable_folders(tmp_path, people, match):
    root = _folder(tmp_path, people) if people else str(tmp_path)
    with pytest.raises(D.DataError, match=match):
        D.load(root)


def test_sampler_rules():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3])
    s = TripletSampler(labels, seed=0)
    i1, i1p, i2 = s.sample(4000)
    assert torch.equal(labels[i1], labels[i1p]) and not (i1 == i1p).any()
    assert (labels[i1] != labels[i2]).all()
    assert set(labels[i1].tolist()) == {0, 1, 3}  # identity 2 has a single image
    with pytest.raises(ValueError, match="two identities"):
        TripletSampler(torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="single image"):
        TripletSampler(torch.tensor([0, 1, 2]))


def _idx(path, arr, gz):
    header = b"\0\0\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    (gzip.open if gz else open)(path, "wb").write(header + arr.astype(np.uint8).tobytes())


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_and_fixed_split(tmp_path, gz):
    rng = np.random.default_rng(0)
    sfx = ".gz" if gz else ""
    _idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", rng.integers(0, 255, (50, 28, 28)), gz)
    _idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", np.arange(50) % 10, gz)
    ds = D.load(f"mnist:{tmp_path}", image_size=32)
    assert ds.images.shape == (50, 1, 32, 32) and list(ds.labels[:12]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    split = D.make_split(ds)
    assert split["kind"] == "fixed" and split["test"] == list(range(40, 50))


def test_mnist_shared_split_is_first_8000_last_2000():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")
    if not os.path.isdir(root):
        pytest.skip(f"the real MNIST files are not at {root}")
    ds = D.load(f"mnist:{root}")
    split = D.make_split(ds)
    assert split["train"] == list(range(8000)) and split["test"] == list(range(8000, 10000))


@pytest.mark.parametrize("spec,match", [
    ("imagenet:foo", "unknown data spec"), ("mnist:", "needs a folder"), ("mnist:/nonexistent", "no such directory"),
    ("sprites:x", "integer"), ("sprites:1", "at least 2"), ("", "empty"),
])
def test_bad_specs(spec, match):
    with pytest.raises(D.DataError, match=match):
        D.load(spec)


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("seed", [0, 5])
def test_load_items_draws_the_sprites_load_holds(channels, seed):
    """Rendering a few sprites alone gives the bytes of the whole set's; unknown sources give None."""
    ds = D.load("sprites:3", 32, channels, seed=seed)
    pick = [767, 0, 5, 300, 5]
    got = D.load_items("sprites:3", [ds.sources[i] for i in pick] + ["sprites:768", "mnist:1", "x"], 32, channels,
                       seed=seed)
    assert all(np.array_equal(g, ds.images[i]) for g, i in zip(got, pick))
    assert got[len(pick):] == [None, None, None]


def test_load_items_reads_mnist_and_folder_items(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (20, 28, 28)), False)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(20) % 10, False)
    spec = f"mnist:{tmp_path}"
    ds = D.load(spec, 16, 1)
    got = D.load_items(spec, ["mnist:19", "mnist:3", "mnist:20"], 16, 1)
    assert np.array_equal(got[0], ds.images[19]) and np.array_equal(got[1], ds.images[3]) and got[2] is None
    root = _folder(tmp_path, {"ann": {f"{i}.png": Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
                                      for i in range(3)}})
    ds = D.load(root, 16, 3)
    got = D.load_items(root, [ds.sources[2], ds.sources[0], "ann/gone.png"], 16, 3)
    assert np.array_equal(got[0], ds.images[2]) and np.array_equal(got[1], ds.images[0]) and got[2] is None


# -- LPC character sheets --------------------------------------------------------------------------

from conftest import LPC_BG, lpc_cell_mark, lpc_frames, write_lpc_folder, write_lpc_sheet  # noqa: E402


def _expected_cells(n_chars, rows):
    return [(k, r, c) for k in range(n_chars) for r in rows for c in range(lpc_frames(r))]


def test_lpc_slices_each_sheet_into_its_nonempty_cells_with_their_labels(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=3)
    d = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=64)
    cells = _expected_cells(3, range(20))  # the hurt row is left out by default
    assert d.images.shape == (len(cells), 3, 64, 64) and d.images.dtype == np.uint8
    assert d.identity_names == ["c0", "c1", "c2"]
    for i, (k, r, c) in enumerate(cells):
        ident, place = lpc_cell_mark(k, r, c)
        assert d.labels[i] == k and d.sources[i] == f"char_{k}.png:r{r}c{c}"
        assert tuple(d.images[i, :, 20, 30]) == ident and tuple(d.images[i, :, 50, 50]) == place
        assert tuple(d.images[i, :, 0, 0]) == LPC_BG  # RGB on the sheet's background
        assert d.factors[i].tolist() == [r // 4, r % 4, c]  # action, direction, frame
    space = d.factor_space
    assert space.names == ("action", "direction", "frame") and space.same_pose == ("action", "direction")
    assert space.values[0] == D.lpc.ACTIONS and space.values[1] == ("up", "left", "down", "right")
    assert d.meta["attribute_names"] == ["sex", "hair"]
    assert d.attributes.tolist() == [[k % 2, k % 3] for k, _, _ in cells]
    assert d.meta["attribute_values"] == [["male", "female"], ["blonde", "black", "red"]]
    small = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=32)
    assert small.images.shape == (len(cells), 3, 32, 32) and np.array_equal(small.factors, d.factors)
    assert D.default_image_size(f"lpc:{tmp_path}") == 64 and D.default_channels(f"lpc:{tmp_path}") == 3


def test_lpc_truth_is_a_sheet_at_another_cells_pose(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=3)
    d = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=64)
    assert d.knows_truth and d.renderer is None
    a = d.sources.index("char_0.png:r5c1")
    b = d.sources.index("char_2.png:r9c0")
    truth, found = d.swap_truth([a, b], [b, a])
    assert found.tolist() == [True, True]
    assert np.array_equal(truth[0], d.images[d.sources.index("char_0.png:r9c0")])
    assert np.array_equal(truth[1], d.images[d.sources.index("char_2.png:r5c1")])
    c = d.sources.index("char_1.png:r1c3")  # row 1 has 4 frames, row 0 only 1: no sheet has (r0, c3)
    _, found = d.true_images([0], [d.factors[c] * [1, 0, 1]])  # (spellcast, up, frame 3)
    assert found.tolist() == [False]


def test_lpc_hurt_row_by_option_and_names_without_attributes(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=2, attributes=False)
    d = D.load(f"lpc+hurt:{tmp_path / 'lpc'}", image_size=32)
    assert len(d) == len(_expected_cells(2, range(21)))
    assert d.identity_names == ["char_0", "char_1"] and d.attributes is None
    hurt = d.factors[:, 0] == len(D.lpc.ACTIONS)
    assert hurt.sum() == 2 * lpc_frames(20) and set(d.factors[hurt, 1]) == {2}  # facing down
    assert d.factor_space.values[0][-1] == "hurt"


def test_lpc_sheets_with_alpha_use_transparency_as_the_background(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=2, attributes=False, alpha=True)
    d = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=64)
    assert len(d) == len(_expected_cells(2, range(20)))
    assert tuple(d.images[0, :, 0, 0]) == (0, 0, 0)  # composited on black, as every image the package reads


def test_lpc_splits_by_character(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=7)
    d = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=32)
    split = D.make_split(d, seed=0)  # the default: 100 of 672 characters, at least... of 7: 1
    assert split["kind"] == "identity" and len(split["test_identities"]) == round(7 * 100 / 672)
    counted = D.make_split(d, holdout_identities=3, seed=1)  # a whole number: that many characters
    assert len(counted["test_identities"]) == 3 and not set(counted["test_identities"]) & set(counted["train_identities"])
    assert sorted(counted["train"] + counted["test"]) == list(range(len(d)))
    assert {s.split(":")[0] for s in counted["sources"]["test"]} == {f"char_{k}.png" for k in counted["test_identities"]}
    assert len(D.make_split(d, holdout_identities=0.5, seed=1)["test_identities"]) == 4  # a fraction, as before
    for bad, match in ((2.5, "whole number"), (6, "at least two"), (-1, "whole number")):
        with pytest.raises(D.DataError, match=match):
            D.make_split(d, holdout_identities=bad)


def _spoil(root, how):
    import json
    sheet = os.path.join(root, "char_1.png")
    meta = os.path.join(root, "attributes.json")
    if how == "size":
        write_lpc_sheet(sheet, 1, size=(4 * 64 + 10, 21 * 64))
    elif how == "rows":
        write_lpc_sheet(sheet, 1, rows=12)
    elif how == "unreadable":
        with open(sheet, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n broken")
    elif how == "empty":
        Image.new("RGB", (256, 21 * 64), LPC_BG).save(sheet)
    else:
        doc = json.load(open(meta))
        if how == "missing":
            doc["characters"][1]["file"] = "gone.png"
        elif how == "keys":
            del doc["characters"][1]["attributes"]["hair"]
        elif how == "value":
            doc["characters"][1]["attributes"]["hair"] = "green"
        with open(meta, "w") as f:
            f.write("{not json" if how == "json" else json.dumps(doc))
    return "attributes.json" if how in ("missing", "keys", "value", "json") else "char_1.png"


@pytest.mark.parametrize("how,match", [
    ("size", "266x1344 pixels is not a whole number of 64x64 cells"), ("rows", "12 rows of cells"),
    ("unreadable", "not a readable PNG"), ("empty", "every cell is empty"),
    ("missing", "names gone.png, which is not in"), ("keys", "c1 has attributes ['sex']"),
    ("value", "c1 has hair 'green', not among the values listed for hair"), ("json", "not valid JSON"),
])
def test_lpc_bad_input_is_one_line_naming_the_file(tmp_path, how, match):
    root = str(tmp_path / "lpc")
    write_lpc_folder(root, n=3)
    culprit = _spoil(root, how)
    with pytest.raises(D.DataError, match=re.escape(match)) as info:
        D.load(f"lpc:{root}", image_size=32)
    message = str(info.value)
    assert os.path.join(root, culprit) in message and "\n" not in message


@pytest.mark.parametrize("spec,match", [("lpc:", "needs a folder"), ("lpc:/nonexistent", "no such folder")])
def test_lpc_bad_specs(spec, match):
    with pytest.raises(D.DataError, match=match):
        D.load(spec)


def test_lpc_loads_once_per_process_until_a_sheet_changes(tmp_path):
    paths = write_lpc_folder(tmp_path / "lpc", n=2, attributes=False)
    first = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=32)
    again = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=32)
    assert again.images is first.images and not first.images.flags.writeable
    write_lpc_sheet(paths[1], 5)  # another character in the same file
    os.utime(paths[1], ns=(1, 1))
    changed = D.load(f"lpc:{tmp_path / 'lpc'}", image_size=32)
    assert changed.images is not first.images


def test_load_items_finds_lpc_cells_by_source(tmp_path):
    write_lpc_folder(tmp_path / "lpc", n=2)
    spec = f"lpc:{tmp_path / 'lpc'}"
    ds = D.load(spec, 32, 3)
    got = D.load_items(spec, [ds.sources[7], ds.sources[0], "nope.png:r0c0"], 32, 3)
    assert np.array_equal(got[0], ds.images[7]) and np.array_equal(got[1], ds.images[0]) and got[2] is None
