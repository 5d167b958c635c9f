"""Error classes that carry their command-line exit code: 2 for usage, 1 for runtime problems.

The CLI prints any DvganError as one line and exits with its code; no traceback for a user's mistake.
"""


class DvganError(Exception):
    exit_code = 1


class UsageError(DvganError, ValueError):
    """The request itself is wrong: unknown spec, missing path, option out of range. Exit code 2."""
    exit_code = 2


class InputError(DvganError, ValueError):
    """A file's contents are unusable: unreadable image, tampered bundle, bad checkpoint. Exit code 1."""
    exit_code = 1


class RuntimeFailure(DvganError, RuntimeError):
    """Work that started could not finish: non-finite loss, failed verification, missing backend. Exit code 1."""
    exit_code = 1


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, at most limit characters, for a one-line report;
    the exception's class name when the message is empty (KeyError(), a bare RuntimeError)."""
    lines = str(exc).strip().splitlines()
    return (lines[0].strip() if lines else type(exc).__name__)[:limit]
