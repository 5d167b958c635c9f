"""Retrieval index over a gallery: one searchable set of s codes ("specified": same identity) and one of
mu codes ("unspecified": same pose, light, style), sharing ids (0..N-1, in the order added) and paths.

An index directory holds::

    index.json          format, the sha256 digest of the bundle that made the codes, method, recall,
                        and the sha256 of each file below (checked before any of them is parsed)
    specified.faiss     faiss index over s   (N, s_dim)
    unspecified.faiss   faiss index over mu  (N, z_dim)
    items.json          {"paths": [...], "labels": [...] or null}: where each id came from, and its
                        identity label (null for an image added without one)

It is written into a temporary sibling folder and renamed into place. Loading it with an engine whose
bundle has another digest is an error: codes from different weights are not comparable.

Search devices: "auto" takes faiss-gpu when it imports and a smoke search succeeds on this GPU, else
an exact torch matmul + top-k on the GPU for flat indexes when PyTorch sees CUDA, else faiss on the CPU.
hnsw and ivfpq indexes are searched by faiss on the CPU whatever the device (faiss-gpu's index_cpu_to_gpu
throws "not implemented on GPU" for IndexRefineFlat and for fast-scan IVF-PQ).
Threading: searches and additions take one lock, so an index may be shared by threads.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, UsageError, first_line
from . import search as S
from ..files import replacing_folder, sha256_file
from .inputs import to_codes

log = logging.getLogger(__name__)

FORMAT = "dvgan-index"
FORMAT_VERSION = 1
BY = {"specified": "s", "unspecified": "mu"}  # the two retrieval questions and the code each searches
SEARCH_DEVICES = ("auto", "cpu", "cuda")
ENCODE_CHUNK = 4096  # images decoded and encoded at a time while building
TUNE_QUERIES = 1000  # held-out gallery codes an approximate index is tuned on
DATA_FILES = ("specified.faiss", "unspecified.faiss", "items.json")  # checksummed in index.json


@dataclass
class Hit:
    id: int
    path: str
    distance: float  # squared L2 between codes
    label: int | None = None


class CodeIndex:
    """Create with CodeIndex.create(engine_or_digest, s_dim, z_dim) or CodeIndex.load(dir, engine)."""

    def __init__(self, meta: dict, faiss_indexes: dict, paths: list, labels: list | None, device: str = "auto"):
        self.meta = meta
        self.faiss = faiss_indexes  # {"specified": faiss index, "unspecified": faiss index}
        self.paths = list(paths)
        self.labels = None if labels is None else list(labels)
        self.lock = threading.RLock()
        self.search_device, self.search_reason = self._pick_device(device)
        self._gpu: dict = {}  # faiss-gpu index or torch tensor per kind, rebuilt after additions

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def create(cls, digest: str, s_dim: int, z_dim: int, *, method: str = "flat", expected: int = 0,
               device: str = "auto", bundle: str | None = None) -> "CodeIndex":
        """An empty index for codes of the bundle with this digest; expected sizes an ivf / ivfpq index."""
        S.require_faiss()
        if method not in S.METHODS:
            raise UsageError(f"unknown index method {method!r}: choose one of {', '.join(S.METHODS)}")
        meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "bundle_digest": digest,
                "bundle": os.path.abspath(bundle) if bundle else None, "metric": "squared_l2",
                "method": method, "dims": {"specified": int(s_dim), "unspecified": int(z_dim)},
                "tuning": {}, "data_spec": None}
        idx = {by: S.new_faiss_index(method, meta["dims"][by], expected) for by in BY}
        return cls(meta, idx, [], None, device)

    @staticmethod
    def _pick_device(device: str):
        if device not in SEARCH_DEVICES:
            raise UsageError(f"unknown search device {device!r}: choose one of {', '.join(SEARCH_DEVICES)}")
        if device == "cpu":
            return "faiss-cpu", "asked for cpu"
        problem = S.faiss_gpu_problem() if device == "cuda" or os.path.exists("/dev/nvidiactl") else "no GPU"
        if problem is None:
            return "faiss-gpu", "faiss-gpu works on this GPU"
        if S.torch_cuda_available():
            return "torch-cuda", f"faiss-gpu unusable ({problem}); exact torch top-k on the GPU"
        if device == "cuda":
            raise UsageError(f"search on cuda asked for, but neither faiss-gpu ({problem}) nor torch CUDA works")
        return "faiss-cpu", problem

    def __len__(self):
        return len(self.paths)

    @property
    def method(self) -> str:
        return self.meta["method"]

    def add_codes(self, s: np.ndarray, mu: np.ndarray, paths, labels=None) -> None:
        """Append codes (N, s_dim) and (N, z_dim) with their paths (and identity labels, if known).

        Labelled and unlabelled additions may be mixed: an image added without a label has label None
        (Hit.label None), and the labels already held are kept."""
        s = to_codes("s", s, self.meta["dims"]["specified"])
        mu = to_codes("mu", mu, self.meta["dims"]["unspecified"])
        paths = [str(p) for p in paths]
        if not (len(s) == len(mu) == len(paths)):
            raise UsageError(f"add_codes needs as many s, mu and paths, got {len(s)}, {len(mu)}, {len(paths)}")
        if labels is not None and len(labels) != len(paths):
            raise UsageError("labels must match paths in length")
        with self.lock:
            if self.labels is None and labels is not None:
                self.labels = [None] * len(self.paths)  # the images added so far came without labels
            for by, codes in (("specified", s), ("unspecified", mu)):
                S.train_if_needed(self.faiss[by], codes)
                self.faiss[by].add(codes)
            self.paths += paths
            if self.labels is not None:
                self.labels += [None] * len(paths) if labels is None else [int(v) for v in labels]
            self._gpu.clear()

    def add_images(self, engine, images, paths, labels=None) -> None:
        """Encode images with engine (in chunks) and add their s and mu codes."""
        self.check_engine(engine)
        for i in range(0, len(paths), ENCODE_CHUNK):
            codes = engine.encode(images[i:i + ENCODE_CHUNK])
            self.add_codes(codes.s, codes.mu, paths[i:i + ENCODE_CHUNK],
                           None if labels is None else labels[i:i + ENCODE_CHUNK])

    def tune(self, queries: dict, k: int = 10, target: float = 0.95) -> dict:
        """For ivf / ivfpq / hnsw: set the smallest nprobe / efSearch whose recall@k on held-out queries
        ({"specified": s codes, "unspecified": mu codes} not in the index) reaches target with a margin
        of search.TUNE_Z standard errors (search.tune); record it."""
        if self.method == "flat":
            return {}
        with self.lock:
            for by in BY:
                self.meta["tuning"][by] = S.tune(self.faiss[by], self._vectors(by), queries[by],
                                                 k=min(k, len(self)), target=target)
                self.meta["tuning"][by]["gallery"] = len(self)
        return self.meta["tuning"]

    def _vectors(self, by: str) -> np.ndarray:
        """The codes held by one faiss index, (N, dim) float32, in id order."""
        import faiss
        index = self.faiss[by]
        if self.method == "ivf":
            faiss.extract_index_ivf(index).make_direct_map()
        elif self.method == "ivfpq":
            index = faiss.downcast_index(index.refine_index)  # the exact codes, not their PQ approximations
        return index.reconstruct_n(0, index.ntotal)

    def check_engine(self, engine) -> None:
        if engine.digest != self.meta["bundle_digest"]:
            raise UsageError(f"this index was built from bundle {self.meta['bundle_digest'][:12]} "
                             f"({self.meta.get('bundle')}), not from {engine.bundle_dir} "
                             f"({engine.digest[:12]}); rebuild it with dvgan index build")

    # -- search --------------------------------------------------------------------------------

    def search(self, by: str, codes: np.ndarray, k: int = 10):
        """codes (Q, dim) -> (distances (Q, k) squared L2 ascending, ids (Q, k) int64)."""
        if by not in BY:
            raise UsageError(f"--by must be one of {', '.join(BY)}, got {by!r}")
        k = int(k)
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        if k > len(self):
            raise UsageError(f"k = {k} is larger than the gallery ({len(self)} images)")
        q = to_codes(f"{BY[by]} query", codes, self.meta["dims"][by])
        with self.lock:
            if self.search_device == "torch-cuda" and self.method == "flat":
                if by not in self._gpu:
                    import torch
                    self._gpu[by] = torch.from_numpy(self._vectors(by)).cuda()
                return S.torch_topk(self._gpu[by], q, k)
            index = self.faiss[by]
            if self.search_device == "faiss-gpu" and self.method in ("flat", "ivf"):
                if by not in self._gpu:
                    import faiss
                    res = faiss.StandardGpuResources()
                    self._gpu[by] = (faiss.index_cpu_to_gpu(res, 0, index), res)
                index = self._gpu[by][0]
            dist, ids = index.search(q, k)
            return dist, ids.astype(np.int64)

    def query(self, engine, images, by: str = "specified", k: int = 10) -> list[list[Hit]]:
        """Encode images with engine and return, per image, its k nearest gallery entries by s or by mu."""
        self.check_engine(engine)
        if by not in BY:
            raise UsageError(f"--by must be one of {', '.join(BY)}, got {by!r}")
        codes = engine.encode(images)
        dist, ids = self.search(by, getattr(codes, BY[by]), k)
        return [[Hit(int(i), self.paths[i], float(d), None if self.labels is None else self.labels[i])
                 for d, i in zip(drow, irow) if i >= 0] for drow, irow in zip(dist, ids)]

    def images(self, ids, image_size: int, channels: int) -> list:
        """The gallery entries ids as uint8 (channels, image_size, image_size), found from where each came
        (its path): an image file is read, an item of the index's data spec ("sprites:i", "mnist:i", a
        file of an identity folder) is drawn or read alone. None for an entry that is no longer there."""
        from ..data import load_items
        from ..data.preprocess import ImageError, image_to_uint8, open_image
        found, items = {}, []
        for i in ids:
            if not os.path.isabs(self.paths[i]):  # image files are indexed by their absolute paths
                items.append(i)
                continue
            try:
                found[i] = image_to_uint8(open_image(self.paths[i]), image_size, channels)
            except ImageError:
                pass
        spec = self.meta.get("data_spec")
        if items and spec:
            found.update(zip(items, load_items(spec, [self.paths[i] for i in items], image_size, channels)))
        missing = [self.paths[i] for i in ids if found.get(i) is None]
        if missing:
            log.warning("%d gallery image(s) not found: %s", len(missing), ", ".join(missing[:3]))
        return [found.get(i) for i in ids]

    # -- files ---------------------------------------------------------------------------------

    def save(self, directory: str) -> None:
        """Write the index folder: into a temporary sibling, then renamed over any old one."""
        import faiss
        if os.path.exists(directory) and not os.path.isfile(os.path.join(directory, "index.json")):
            raise UsageError(f"{os.path.abspath(directory)}: exists and is not a dvgan index; not replacing it")
        with replacing_folder(directory) as tmp:
            with self.lock:
                for by in BY:
                    faiss.write_index(self.faiss[by], os.path.join(tmp, by + ".faiss"))
                meta = dict(self.meta, count=len(self))
                with open(os.path.join(tmp, "items.json"), "w", encoding="utf-8") as f:
                    json.dump({"paths": self.paths, "labels": self.labels}, f)
            meta["files"] = {name: sha256_file(os.path.join(tmp, name)) for name in DATA_FILES}
            with open(os.path.join(tmp, "index.json"), "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, directory: str, engine=None, device: str = "auto") -> "CodeIndex":
        """Read an index folder; with an engine, refuse it unless it was built from the same bundle."""
        S.require_faiss()
        import faiss
        where = os.path.join(directory, "index.json")
        if not os.path.isdir(directory):
            raise UsageError(f"{directory}: no such index folder (build one with dvgan index build)")
        try:
            with open(where, encoding="utf-8") as f:
                meta = json.load(f)
        except FileNotFoundError as exc:
            raise InputError(f"{exc.filename}: missing (not a dvgan index folder)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{directory}: damaged index metadata ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{where}: not a dvgan index of format version {FORMAT_VERSION}")
        _verify_files(directory, meta.pop("files", None))
        try:
            with open(os.path.join(directory, "items.json"), encoding="utf-8") as f:
                items = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{directory}: damaged index metadata ({exc})") from None
        indexes = {}
        for by in BY:
            path = os.path.join(directory, by + ".faiss")
            try:
                indexes[by] = faiss.read_index(path)
            except RuntimeError as exc:
                raise InputError(f"{path}: not a readable faiss index ({first_line(exc, 120)})") from None
            if indexes[by].ntotal != meta.get("count"):
                raise InputError(f"{path}: holds {indexes[by].ntotal} codes, index.json says {meta.get('count')}")
        if len(items.get("paths", [])) != meta["count"]:
            raise InputError(f"{directory}/items.json: {len(items.get('paths', []))} paths for {meta['count']} codes")
        meta.pop("count", None)
        index = cls(meta, indexes, items["paths"], items.get("labels"), device)
        for by, tuning in meta.get("tuning", {}).items():
            S.set_effort(index.faiss[by], tuning["value"])
        if engine is not None:
            index.check_engine(engine)
        return index


def _verify_files(directory: str, recorded) -> None:
    """Check the data files against the sha256s in index.json before any of them is parsed."""
    where = os.path.join(directory, "index.json")
    if not isinstance(recorded, dict) or set(recorded) != set(DATA_FILES):
        raise InputError(f"{where}: no checksums for {', '.join(DATA_FILES)}; rebuild it with dvgan index build")
    for name in DATA_FILES:
        path = os.path.join(directory, name)
        if os.path.islink(path) or not os.path.isfile(path):
            raise InputError(f"{path}: missing from the index folder (or not a regular file)")
        if sha256_file(path) != recorded[name]:
            raise InputError(f"{path}: sha256 does not match index.json; the file was modified")


@dataclass
class Gallery:
    s: np.ndarray                   # (N, s_dim)
    mu: np.ndarray                  # (N, z_dim)
    paths: list                     # (N,) file path, or the data set's source name
    labels: list | None = None      # (N,) identity labels when the data set has them
    data_spec: str | None = None    # the data spec the images came from (None: files)


def encode_folder(engine, folder: str) -> Gallery:
    """Encode every image file under folder, ENCODE_CHUNK at a time; unreadable files are skipped and logged."""
    from ..data.preprocess import ImageError
    from .inputs import list_images
    paths, s, mu, skipped = [], [], [], []
    files = list_images(folder)
    for i in range(0, len(files), ENCODE_CHUNK):
        batch, kept = [], []
        for path in files[i:i + ENCODE_CHUNK]:
            try:
                batch.append(engine.preprocess(path))
            except ImageError as exc:
                skipped.append(str(exc))
                continue
            kept.append(os.path.abspath(path))
        if batch:
            codes = engine.encode(np.concatenate(batch))
            s.append(codes.s)
            mu.append(codes.mu)
            paths += kept
    if skipped:
        log.warning("skipped %d unreadable file(s): %s", len(skipped), "; ".join(skipped[:3]))
    if not paths:
        raise UsageError(f"{folder}: no readable images")
    return Gallery(np.concatenate(s), np.concatenate(mu), paths)


def encode_data(engine, spec: str) -> Gallery:
    """Encode a data spec (dvgan.data.load) at the bundle's size and channels, labels included."""
    from ..data import load
    data = load(spec, engine.image_size, engine.channels)
    s, mu = [], []
    for i in range(0, len(data), ENCODE_CHUNK):
        codes = engine.encode(data.float_images(np.arange(i, min(i + ENCODE_CHUNK, len(data)))))
        s.append(codes.s)
        mu.append(codes.mu)
    return Gallery(np.concatenate(s), np.concatenate(mu), list(data.sources),
                   [int(v) for v in data.labels], spec)


def add_gallery(index: CodeIndex, gallery: Gallery) -> CodeIndex:
    """Add an encoded gallery to an index; an approximate index keeps the search effort of its build."""
    spec, held = gallery.data_spec, index.meta.get("data_spec")
    if spec and held not in (None, spec):
        raise UsageError(f"the index holds images of data spec {held!r}; cannot add {spec!r}")
    index.add_codes(gallery.s, gallery.mu, gallery.paths, gallery.labels)
    index.meta["data_spec"] = held or spec
    if index.method != "flat":
        log.info("search effort kept from the build (recall measured on %d codes)",
                 next(iter(index.meta["tuning"].values()))["gallery"])
    return index


def build_index(engine, gallery: Gallery, *, method: str = "flat", target_recall: float = 0.95,
                device: str = "auto") -> CodeIndex:
    """Index a gallery's s and mu codes; approximate methods are tuned to target_recall@10 (with
    search.tune's confidence margin) against exact search on up to TUNE_QUERIES held-out gallery codes,
    and the measured recall and its lower bound are kept in index.meta["tuning"]."""
    if not len(gallery.paths):
        raise UsageError("the gallery is empty")
    if not 0.0 < target_recall <= 1.0:
        raise UsageError(f"target recall must be in (0, 1], got {target_recall}")
    index = CodeIndex.create(engine.digest, engine.s_dim, engine.z_dim, method=method,
                             expected=len(gallery.paths), device=device, bundle=engine.bundle_dir)
    index.meta["data_spec"] = gallery.data_spec
    n = len(gallery.paths)
    order = np.arange(n)
    held = 0
    if method != "flat":
        # Tune on codes the index does not hold yet, then add them: ids follow this shuffled order.
        held = min(TUNE_QUERIES, n // 10)
        if held < 1:
            raise UsageError(f"an approximate index needs at least 10 images, got {n}")
        order = np.random.default_rng(0).permutation(n)
    keep, tail = order[:n - held], order[n - held:]
    labels = gallery.labels
    pick_labels = (lambda ids: None) if labels is None else (lambda ids: [labels[i] for i in ids])  # noqa: E731
    index.add_codes(gallery.s[keep], gallery.mu[keep], [gallery.paths[i] for i in keep], pick_labels(keep))
    if held:
        index.tune({"specified": gallery.s[tail], "unspecified": gallery.mu[tail]}, 10, target_recall)
        index.add_codes(gallery.s[tail], gallery.mu[tail], [gallery.paths[i] for i in tail], pick_labels(tail))
    log.info("indexed %d images by s and by mu (%s, searched with %s)", len(index), method, index.search_device)
    return index


__all__ = ["CodeIndex", "Hit", "Gallery", "build_index", "encode_folder", "encode_data", "BY", "FORMAT"]
