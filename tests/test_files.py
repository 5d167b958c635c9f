"""The low-level helpers every module shares: one-line error messages, atomic files and folders."""
import errno
import os

import pytest

from dvgan.errors import first_line
from dvgan.files import atomic_write, replacing_folder, sha256_file


@pytest.mark.parametrize("exc, want", [
    (RuntimeError("first\nsecond"), "first"),
    (RuntimeError("  \n  padded line  \nmore"), "padded line"),
    (RuntimeError(""), "RuntimeError"),
    (KeyError(), "KeyError"),
    (ValueError("x" * 500), "x" * 200),
])
def test_first_line_never_fails_on_an_empty_message(exc, want):
    assert first_line(exc) == want


def test_first_line_limit():
    assert first_line(OSError("abcdef"), 3) == "abc"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "f.txt")
    atomic_write(path, lambda f: f.write(b"old"))

    def half(f):
        f.write(b"ne")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError):
        atomic_write(path, half)
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["f.txt"]
    import hashlib
    assert sha256_file(path) == hashlib.sha256(b"old").hexdigest()


def test_replacing_folder_swaps_in_the_new_folder_or_keeps_the_old(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "a").write_text("old")
    with pytest.raises(RuntimeError):
        with replacing_folder(str(target)) as tmp:
            open(os.path.join(tmp, "a"), "w").write("half")
            raise RuntimeError("failed half-way")
    assert (target / "a").read_text() == "old" and os.listdir(tmp_path) == ["out"]
    with replacing_folder(str(target)) as tmp:
        open(os.path.join(tmp, "b"), "w").write("new")
    assert os.listdir(target) == ["b"] and os.listdir(tmp_path) == ["out"]
    with replacing_folder(str(tmp_path / "fresh" / "idx")) as tmp:
        open(os.path.join(tmp, "c"), "w").write("new")
    assert os.listdir(tmp_path / "fresh" / "idx") == ["c"]
