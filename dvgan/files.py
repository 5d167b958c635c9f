"""Files and folders written atomically, and their checksums.

A reader (or a process killed half-way) sees the old contents or the new, never a mix: a file is
written to a temporary file beside it and renamed over it; a folder is built in a temporary sibling
folder and renamed into place.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read chunk bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str, write) -> None:
    """Call write(fileobj) on a temporary binary file beside path, fsync, then os.replace it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def replacing_folder(target: str):
    """Yield a new empty folder beside target; when the block ends, it becomes target.

    An earlier folder at target is moved aside, put back if the final rename fails, and removed once
    the new one is in place. If the block raises, the new folder is removed and target is untouched.
    The caller decides beforehand whether target may be replaced.
    """
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(target) + ".tmp-")
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the folder it replaces was not
    try:
        yield tmp
        old = None
        if os.path.isdir(target):
            old = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(target) + ".old-")
            os.rmdir(old)
            os.replace(target, old)
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old, target)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


__all__ = ["sha256_file", "atomic_write", "replacing_folder"]
