"""dvgan index build / query / swap / sample / interpolate / serve: thin commands over dvgan.engine.

With no --bundle / --index, commands use $DVGAN_HOME/bundle and $DVGAN_HOME/index, where DVGAN_HOME
defaults to ./dvgan-out (dvgan.defaults): after `dvgan demo`, or an export to ./dvgan-out/bundle
and `dvgan index build`, `dvgan query --by specified img.png` needs no other flag.
"""
from __future__ import annotations

import json
import os

import click
import numpy as np

from .. import defaults
from ..engine.backends import BACKENDS, DEVICES, PRECISIONS
from ..errors import UsageError
from ..prior import PRIORS
from .common import friendly_errors, verbosity


DEFAULTS_HELP = (f"Defaults: --bundle ${defaults.HOME_ENV}/bundle, --index ${defaults.HOME_ENV}/index, "
                 f"with {defaults.HOME_ENV} unset meaning {defaults.DEFAULT_HOME}.")


def _help(*examples: str) -> str:
    """An epilog: the examples, kept on their own lines, then where the command looks by default."""
    return "\b\nExamples:\n" + "\n".join(f"  {e}" for e in examples) + "\n\n" + DEFAULTS_HELP


def engine_options(fn):
    fn = click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
                      help="Graph precision (fp16: the bundle's fp16 graphs; bf16: torch only).")(fn)
    fn = click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True)(fn)
    fn = click.option("--backend", type=click.Choice(BACKENDS), default="auto", show_default=True,
                      help="auto: TensorRT plans, then ONNX Runtime, then PyTorch; the choice is logged.")(fn)
    fn = click.option("--bundle", "bundle", default=None, help="Exported bundle folder.")(fn)
    return fn


def open_engine(bundle, backend, device, precision, fallback=None):
    from ..engine import Engine
    return Engine.load(bundle or fallback or defaults.bundle_dir(), backend, device, precision=precision)


def expand(items) -> list[str]:
    """Image arguments: files as given, folders replaced by the image files they hold."""
    from ..engine.inputs import list_images
    out = []
    for item in items:
        out += list_images(item) if os.path.isdir(item) else [item]
    return out


def write_grid(path: str, rows) -> None:
    from ..figures import save_png, tile
    save_png(path, tile(rows))
    click.echo(f"wrote {path}")


def u8(images: np.ndarray) -> list:
    from ..engine import to_uint8
    return list(to_uint8(images))


@click.group(name="index", epilog=_help("dvgan index build --data sprites", "dvgan index build --images photos/ -o my-index --method hnsw"))
def index_group():
    """Retrieval indexes over s (identity) and mu (everything else)."""


@index_group.command(name="build", epilog=_help(
    "dvgan index build --data sprites                # every sprite, into ./dvgan-out/index",
    "dvgan index build --bundle b/ --images photos/ -o idx/ --method ivf --recall 0.95",
    "dvgan index build --images photos/ -o idx/ --method ivfpq   # large galleries",
    "dvgan index build --images more_photos/ -o idx/ --add"))
@engine_options
@click.option("--images", "folder", default=None, help="Folder of image files (searched recursively).")
@click.option("--data", "spec", default=None, help="Data spec: sprites, sprites:N, mnist:DIR or an identity folder.")
@click.option("-o", "--out", default=None, help="Index folder to write.")
@click.option("--method", type=click.Choice(["flat", "ivf", "ivfpq", "hnsw"]), default="flat", show_default=True,
              help="flat: exact. ivf / ivfpq / hnsw: approximate, tuned to --recall against exact and reported "
                   "(ivfpq: a 4-bit product-quantised pass re-ranked exactly, for large galleries).")
@click.option("--recall", "target_recall", type=float, default=0.95, show_default=True,
              help="Target recall@10 for approximate methods.")
@click.option("--add", is_flag=True, help="Add the images to the existing index at -o instead of replacing it.")
@verbosity
@friendly_errors
def build_cmd(bundle, backend, device, precision, folder, spec, out, method, target_recall, add):
    """Encode a gallery and index it by s and by mu."""
    from ..engine.index import CodeIndex, add_gallery, build_index, encode_data, encode_folder
    if (folder is None) == (spec is None):
        raise UsageError("give exactly one of --images DIR and --data SPEC")
    out = out or defaults.index_dir()
    engine = open_engine(bundle, backend, device, precision)
    gallery = encode_folder(engine, folder) if folder else encode_data(engine, spec)
    if add:
        index = add_gallery(CodeIndex.load(out, engine), gallery)
    else:
        index = build_index(engine, gallery, method=method, target_recall=target_recall)
    index.save(out)
    tuning = "".join(f"; {by} {t['param']} {t['value']} recall@{t['k']} {t['recall']:.3f}"
                     for by, t in index.meta["tuning"].items())
    click.echo(f"indexed {len(index)} images ({index.method}{tuning}) into {out}")


def _index_bundle_data(engine, out: str):
    """Build and save a flat index over the data the bundle's model was trained on (its manifest's spec)."""
    from ..engine.index import build_index, encode_data
    spec = (engine.manifest.get("source", {}).get("data") or {}).get("spec")
    if not spec:
        raise UsageError(f"no index at {out} and the bundle records no data to build one from: "
                         "run dvgan index build first")
    click.echo(f"no index at {out}: indexing the bundle's training data ({spec}) there first", err=True)
    index = build_index(engine, encode_data(engine, spec))
    index.save(out)
    return index


@click.command(name="query", epilog=_help(
    "dvgan query --by specified img.png              # same identity",
    "dvgan query --by unspecified img.png -k 5 --json # same pose / style",
    "dvgan query --by specified a.png b.png --strip hits.png"))
@click.argument("images", nargs=-1, required=True)
@click.option("--by", type=click.Choice(["specified", "unspecified"]), default="specified", show_default=True,
              help="specified: same identity (s). unspecified: same pose / style (mu).")
@click.option("-k", "k", type=int, default=10, show_default=True)
@click.option("--index", "index_dir", default=None, help="Index folder.")
@engine_options
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--strip", default=None, help="Also write a PNG: each query followed by its k results.")
@verbosity
@friendly_errors
def query_cmd(images, by, k, index_dir, bundle, backend, device, precision, as_json, strip):
    """Find the gallery images nearest to each IMAGE by s or by mu."""
    from ..engine.index import CodeIndex
    if index_dir is None and not os.path.exists(defaults.index_dir()):
        # After a train and an export there is a bundle but no index yet: index the bundle's own data.
        engine = open_engine(bundle, backend, device, precision)
        index = _index_bundle_data(engine, defaults.index_dir())
    else:
        index = CodeIndex.load(index_dir or defaults.index_dir())
        recorded = index.meta.get("bundle")
        fallback = recorded if recorded and os.path.isdir(recorded) else None
        engine = open_engine(bundle, backend, device, precision, fallback)
    paths = expand(images)
    queries = engine.preprocess(paths)  # decoded once: searched with, and shown in the strip
    results = index.query(engine, queries, by, k)
    if as_json:
        click.echo(json.dumps([{"query": p, "by": by, "hits": [dict(rank=r + 1, **vars(h)) for r, h in enumerate(hits)]}
                               for p, hits in zip(paths, results)], indent=2))
    else:
        for p, hits in zip(paths, results):
            click.echo(f"{p} (by {by}):")
            for r, h in enumerate(hits, 1):
                label = "" if h.label is None else f"  label {h.label}"
                click.echo(f"  {r:3d}  {h.distance:10.4f}  {h.path}{label}")
    if strip:
        rows = [[query, None] + index.images([h.id for h in hits], engine.image_size, engine.channels)
                for query, hits in zip(u8(queries), results)]
        write_grid(strip, rows)


@click.command(name="swap", epilog=_help(
    "dvgan swap -s alice.png -u bob.png -o alice_as_bob.png",
    "dvgan swap -s ids/ -u poses/ -o grid.png        # every pair: the paper's Fig. 2a"))
@click.option("-s", "--specified", multiple=True, required=True, help="Image (or folder) giving s; repeatable.")
@click.option("-u", "--unspecified", multiple=True, required=True, help="Image (or folder) giving z; repeatable.")
@click.option("-o", "--out", default="swap.png", show_default=True)
@engine_options
@verbosity
@friendly_errors
def swap_cmd(specified, unspecified, out, bundle, backend, device, precision):
    """Swap grid (the paper's Fig. 2a): top row gives s, left column gives z, cell = Dec(s, mu)."""
    engine = open_engine(bundle, backend, device, precision)
    spec, unspec = expand(specified), expand(unspecified)
    grid = engine.swap(spec, unspec, grid=True)  # (N, M, C, H, W)
    top, left = u8(engine.preprocess(spec)), u8(engine.preprocess(unspec))
    write_grid(out, [[None] + top] + [[left[i]] + u8(grid[i]) for i in range(len(unspec))])


@click.command(name="sample", epilog=_help(
    "dvgan sample img.png -n 8 -o samples.png", "dvgan sample img.png -n 8 --temperature 0.6 -o samples.png"))
@click.argument("images", nargs=-1, required=True)
@click.option("-n", "n", type=int, default=8, show_default=True, help="Samples per image.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--prior", default="auto", show_default=True, metavar="|".join(PRIORS),
              help="z from the Gaussian fitted to the training codes (fitted), from N(0, I) as in the paper "
                   "(standard), or fitted when the bundle has it (auto).")
@click.option("--temperature", type=float, default=1.0, show_default=True,
              help="Scale of the draws around the prior's mean: below 1, fewer samples lose the identity "
                   "and less varies; 0 draws the mean.")
@click.option("-o", "--out", default="sample.png", show_default=True)
@engine_options
@verbosity
@friendly_errors
def sample_cmd(images, n, seed, prior, temperature, out, bundle, backend, device, precision):
    """Conditional samples (the paper's Fig. 5): each row keeps an image's s, a column shares one draw of z."""
    engine = open_engine(bundle, backend, device, precision)
    paths = expand(images)
    samples = engine.sample(paths, n, seed, prior=prior, temperature=temperature)
    originals = u8(engine.preprocess(paths))
    write_grid(out, [[originals[i], None] + u8(samples[i]) for i in range(len(paths))])


@click.command(name="interpolate", epilog=_help(
    "dvgan interpolate a.png b.png --steps 8 -o interp.png"))
@click.argument("a")
@click.argument("b")
@click.option("--steps", type=int, default=8, show_default=True)
@click.option("-o", "--out", default="interpolate.png", show_default=True)
@engine_options
@verbosity
@friendly_errors
def interpolate_cmd(a, b, steps, out, bundle, backend, device, precision):
    """Interpolation grid (the paper's Fig. 2b): s changes along rows, z down columns; A and B at the corners."""
    engine = open_engine(bundle, backend, device, precision)
    grid = engine.interpolate(a, b, steps)
    ia, ib = u8(engine.preprocess(a))[0], u8(engine.preprocess(b))[0]
    rows = [[ia if i == 0 else None] + u8(grid[i]) + [ib if i == steps - 1 else None] for i in range(steps)]
    write_grid(out, rows)


@click.command(name="serve", epilog=_help(
    "dvgan serve                                     # http://127.0.0.1:8750",
    "curl -s localhost:8750/health"))
@engine_options
@click.option("--index", "index_dir", default=None, help="Index folder for /query (default: the default index, if present).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (localhost only by default).")
@click.option("--port", type=int, default=8750, show_default=True)
@click.option("--max-bytes", type=int, default=8 * 1024 * 1024, show_default=True, help="Request size limit.")
@verbosity
@friendly_errors
def serve_cmd(bundle, backend, device, precision, index_dir, host, port, max_bytes):
    """A small JSON HTTP service: /health, /encode, /swap, /sample, /query."""
    from ..engine.index import CodeIndex
    from ..engine.service import make_server
    engine = open_engine(bundle, backend, device, precision)
    index = None
    if index_dir or os.path.isdir(defaults.index_dir()):
        index = CodeIndex.load(index_dir or defaults.index_dir(), engine)
    server = make_server(engine, index, host, port, max_bytes)
    click.echo(f"serving {engine.bundle_dir} ({engine.backend.describe()}) on http://{host}:{server.server_port}")
    try:
        server.serve_forever()
    finally:
        server.server_close()


COMMANDS = {"index": index_group, "query": query_cmd, "swap": swap_cmd, "sample": sample_cmd,
            "interpolate": interpolate_cmd, "serve": serve_cmd}


def register(group) -> None:
    for name, command in COMMANDS.items():
        group.add_command(command, name=name)
