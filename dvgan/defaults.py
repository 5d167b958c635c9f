"""Where export, the engine, the demo and their commands write and look when no path is given.

``DVGAN_HOME`` (environment) or ``./dvgan-out``: the demo and a default export write there, so that
``dvgan query --by specified img.png`` works with no other flag.

    $DVGAN_HOME/bundle    the exported bundle       (Engine.load() with no path)
    $DVGAN_HOME/index     the retrieval index       (dvgan index build / dvgan query with no -o / --index)
"""
from __future__ import annotations

import os

HOME_ENV = "DVGAN_HOME"
DEFAULT_HOME = "./dvgan-out"


def home() -> str:
    """The folder named by $DVGAN_HOME, else ./dvgan-out (relative to the working directory)."""
    return os.environ.get(HOME_ENV) or DEFAULT_HOME


def bundle_dir() -> str:
    return os.path.join(home(), "bundle")


def index_dir() -> str:
    return os.path.join(home(), "index")


__all__ = ["HOME_ENV", "DEFAULT_HOME", "home", "bundle_dir", "index_dir"]
