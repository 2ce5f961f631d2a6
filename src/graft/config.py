"""Settings read from the environment at call time (so tests and users can change them).

- ``GRAFT_HOME``: cache root. Default ``$XDG_CACHE_HOME/graft`` (``~/.cache/graft``).
- ``GRAFT_OFFLINE``: ``1``/``true`` forbids every network access.
- ``GRAFT_WEIGHTS_BASE_URL``: mirror of ``https://storage.googleapis.com/`` for
  keras.applications weights (the path after the host is kept).
- ``GRAFT_WEIGHTS_DIR``: a folder of already-downloaded keras.applications ``.h5`` files.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def graft_home() -> Path:
    """Returns the cache root, creating nothing.

    Example:
        >>> isinstance(graft_home(), Path)
        True
    """
    env = os.environ.get("GRAFT_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "graft"


def offline() -> bool:
    """Whether ``GRAFT_OFFLINE`` forbids network access."""
    return os.environ.get("GRAFT_OFFLINE", "").strip().lower() in _TRUE


def weights_base_url() -> str:
    """Base URL that keras.applications weight paths are appended to."""
    return (
        os.environ.get("GRAFT_WEIGHTS_BASE_URL", "https://storage.googleapis.com/").rstrip("/")
        + "/"
    )


def weights_dir() -> Path | None:
    """A user folder of pre-downloaded weight files, if ``GRAFT_WEIGHTS_DIR`` is set."""
    env = os.environ.get("GRAFT_WEIGHTS_DIR")
    return Path(env).expanduser() if env else None
