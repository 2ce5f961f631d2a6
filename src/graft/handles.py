"""One resolver from a handle to a module directory on this machine.

Accepted: a zoo name ``arch.tag`` (materialised into the cache on first use), a hub handle
``hub://host:port/name@ref``, an ``http(s)://`` archive URL (both downloaded into the cache by
``graft.hub``), an MLflow registry handle ``models:/NAME@alias`` or ``models:/NAME/VERSION``
(``graft.tracking.registry``), a local module directory, and a run folder of ``graft train``
(its ``module/``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from graft.errors import ModelNotFoundError, received
from graft.hub.names import HUB_SCHEMES
from graft.models.registry import HANDLE_FORMS

notices = logging.getLogger("graft.notice")  # the CLI prints these; quiet for library callers
_noticed: set[str] = set()


def notice(message: str) -> None:
    """Tells the user something once per process (the CLI prints it on stderr)."""
    if message not in _noticed:
        _noticed.add(message)
        notices.info(message)


def is_zoo_name(handle: str | os.PathLike) -> bool:
    """Whether a handle is meant as a zoo name rather than a path or URL."""
    text = os.fspath(handle)
    return not (isinstance(handle, os.PathLike) or "/" in text or text.startswith((".", "~")))


def resolve(handle: str | os.PathLike) -> Path:
    """Turns a handle into the path of a module directory.

    Example:
        >>> resolve("efficientnet_lite0.imagenet")  # doctest: +SKIP
        PosixPath('/home/me/.cache/graft/modules/efficientnet_lite0.imagenet/1')

    Raises:
        ModelNotFoundError: the handle is none of the accepted forms; the message lists them
            and close zoo names.
    """
    from graft.models import registry
    from graft.models.zoo import materialize
    from graft.module.io import is_module_dir

    text = os.fspath(handle)
    if not is_zoo_name(handle):
        if text.startswith("models:/"):
            from graft.tracking.registry import resolve as resolve_registered

            return resolve_registered(text)
        if text.startswith(HUB_SCHEMES):
            from graft.hub.client import resolve as resolve_hub

            return resolve_hub(text)
        if text.startswith(("http://", "https://")):
            from graft.hub.client import resolve_url

            return resolve_url(text)
        if "://" in text:
            raise ModelNotFoundError(
                f"Unknown scheme {text.split('://')[0]}://. A handle is {HANDLE_FORMS}. "
                f"{received(handle=text)}"
            )
        path = Path(text).expanduser()
        if is_module_dir(path):
            return path
        if is_module_dir(path / "module"):
            notice(f"{path} is a run folder: using its module, {path / 'module'}.")
            return path / "module"
        reason = "does not exist" if not path.exists() else "has no manifest.json"
        raise ModelNotFoundError(
            f"{path} {reason}, so it is not a module directory. A handle is {HANDLE_FORMS}. "
            f"{received(handle=text)}"
        )
    registry.get(text)  # raises with close matches
    return materialize(text)
