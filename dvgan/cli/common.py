"""Shared CLI plumbing: logging flags, one-line errors with the right exit code."""
from __future__ import annotations

import functools
import logging
import sys

import click

from ..errors import DvganError

log = logging.getLogger("dvgan")

# Libraries whose messages below WARNING the commands leave out of their output, even with -v: faiss
# logs which CPU build it loaded (once per process), the ONNX exporter's libraries every graph pass.
QUIET_LIBRARIES = ("faiss", "onnxscript", "onnx_ir", "torch.onnx")


def _not_library_chatter(record: logging.LogRecord) -> bool:
    quiet = any(record.name == name or record.name.startswith(name + ".") for name in QUIET_LIBRARIES)
    return record.levelno >= logging.WARNING or not quiet


def setup_logging(verbose: int, quiet: int) -> None:
    """Log to stderr at INFO, moved by -v / -q, when a command runs; the loggers of libraries are left
    as they are (QUIET_LIBRARIES are filtered by the command's own handler)."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_not_library_chatter)
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler])


def verbosity(fn):
    """-v/-q options that set the log level, then call the command."""
    @click.option("-v", "--verbose", count=True, help="More log output (repeatable).")
    @click.option("-q", "--quiet", count=True, help="Less log output (repeatable).")
    @functools.wraps(fn)
    def wrapper(*args, verbose=0, quiet=0, **kwargs):
        setup_logging(verbose, quiet)
        return fn(*args, **kwargs)
    return wrapper


def fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def friendly_errors(fn):
    """Turn the package's errors, and the OS's, into one line on stderr and an exit code."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DvganError as exc:
            fail(str(exc), exc.exit_code)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 2)
        except (PermissionError, OSError) as exc:
            fail(f"{getattr(exc, 'filename', '') or ''}: {getattr(exc, 'strerror', None) or exc}".lstrip(": "), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)
    return wrapper
