"""A small reference HTTP service around one Engine (and optionally one CodeIndex): JSON in, JSON out.

    GET  /health                                      -> {"bundle", "digest", "backend", "index_size"}
    POST /encode     {"images": [PNG/JPEG base64]}    -> {"s": [[...]], "mu": [[...]], "logvar": [[...]]}
    POST /swap       {"specified": [...], "unspecified": [...], "grid": false}  -> {"images": [PNG base64]}
    POST /sample     {"specified": [...], "n": 4, "seed": 0, "prior": "auto", "temperature": 1.0}   -> {"images": [[PNG base64]]}
    POST /query      {"images": [...], "by": "specified", "k": 10}              -> {"results": [[hit...]]}

Bodies over max_bytes get 413; bad requests get 400 with {"error": one line}. One thread per request
(ThreadingHTTPServer); the engine and index are shared, which their threading notes allow.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import logging
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from ..errors import DvganError, UsageError
from .engine import to_uint8

log = logging.getLogger(__name__)

MAX_BYTES = 8 * 1024 * 1024   # default request size limit
MAX_OUTPUT_IMAGES = 4096      # a swap grid or sample request may not ask for more images than this
ROUTES = ("/encode", "/swap", "/sample", "/query")


def _images(body: dict, key: str) -> list[bytes]:
    items = body.get(key)
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise UsageError(f"{key!r} must be a non-empty list of base64-encoded images")
    try:
        return [base64.b64decode(v, validate=True) for v in items]
    except (binascii.Error, ValueError):
        raise UsageError(f"{key!r} holds a string that is not valid base64") from None


def _png(image_chw: np.ndarray) -> str:
    from PIL import Image
    a = to_uint8(image_chw).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _int(body: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = body.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise UsageError(f"{key!r} must be an integer in [{lo}, {hi}]")
    return value


def handle(engine, index, route: str, body: dict) -> dict:
    """The service's logic without HTTP: one route and its JSON body -> the JSON answer."""
    if route == "/encode":
        codes = engine.encode(_images(body, "images"))
        return {k: v.tolist() for k, v in codes._asdict().items()}
    if route == "/swap":
        spec, unspec = _images(body, "specified"), _images(body, "unspecified")
        grid = bool(body.get("grid", False))
        if grid and len(spec) * len(unspec) > MAX_OUTPUT_IMAGES:
            raise UsageError(f"a swap grid may hold at most {MAX_OUTPUT_IMAGES} images")
        out = engine.swap(spec, unspec, grid=grid)
        return {"images": [[_png(im) for im in row] for row in out] if grid else [_png(im) for im in out]}
    if route == "/sample":
        spec = _images(body, "specified")
        n = _int(body, "n", 4, 1, MAX_OUTPUT_IMAGES)
        if len(spec) * n > MAX_OUTPUT_IMAGES:
            raise UsageError(f"a sample request may ask for at most {MAX_OUTPUT_IMAGES} images")
        out = engine.sample(spec, n, seed=_int(body, "seed", 0, 0, 2**63 - 1), prior=str(body.get("prior", "auto")),
                            temperature=body.get("temperature", 1.0))
        return {"images": [[_png(im) for im in row] for row in out]}
    if route == "/query":
        if index is None:
            raise UsageError("this service was started without an index")
        hits = index.query(engine, _images(body, "images"), body.get("by", "specified"),
                           _int(body, "k", 10, 1, max(1, len(index))))
        return {"results": [[asdict(h) for h in row] for row in hits]}
    raise UsageError(f"no such route {route}")


def make_server(engine, index=None, host: str = "127.0.0.1", port: int = 8750,
                max_bytes: int = MAX_BYTES) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer bound to host:port (port 0: any free port); call serve_forever() on it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *args):
            log.debug("%s %s", self.address_string(), fmt % args)

        def do_GET(self):
            if self.path != "/health":
                return self._reply(404, {"error": f"no such route {self.path}"})
            self._reply(200, {"bundle": engine.bundle_dir, "digest": engine.digest,
                              "backend": engine.backend.describe(),
                              "index_size": None if index is None else len(index)})

        def do_POST(self):
            if self.path not in ROUTES:
                self.close_connection = True
                return self._reply(404, {"error": f"no such route {self.path}"})
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                return self._reply(411, {"error": "a Content-Length header is required"})
            if length > max_bytes:
                self.close_connection = True
                return self._reply(413, {"error": f"request body of {length} bytes is over the {max_bytes} byte limit"})
            try:
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                if not isinstance(body, dict):
                    raise UsageError("the request body must be a JSON object")
                return self._reply(200, handle(engine, index, self.path, body))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self._reply(400, {"error": "the request body is not valid JSON"})
            except DvganError as exc:
                return self._reply(400, {"error": str(exc)})
            except Exception:  # keep serving; the log has the traceback
                log.exception("request to %s failed", self.path)
                return self._reply(500, {"error": "internal error (see the service log)"})

    return ThreadingHTTPServer((host, port), Handler)


__all__ = ["make_server", "handle", "MAX_BYTES"]
