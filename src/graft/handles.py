"""One resolver from a handle to a module directory on this machine.

Accepted now: a zoo name ``arch.tag`` (materialised into the cache on first use) and a local
module directory. The hub adds ``hub://`` and ``http(s)://`` handles here.
"""

from __future__ import annotations

import os
from pathlib import Path

from graft.errors import ModelNotFoundError, received
from graft.models.registry import HANDLE_FORMS

_SCHEMES = ("hub://", "http://", "https://")


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
        if text.startswith(_SCHEMES):
            raise ModelNotFoundError(
                f"{text.split('://')[0]}:// handles need the graft hub, which this version does "
                f"not include yet. A handle is {HANDLE_FORMS}. {received(handle=text)}"
            )
        path = Path(text).expanduser()
        if is_module_dir(path):
            return path
        reason = "does not exist" if not path.exists() else "has no manifest.json"
        raise ModelNotFoundError(
            f"{path} {reason}, so it is not a module directory. A handle is {HANDLE_FORMS}. "
            f"{received(handle=text)}"
        )
    registry.get(text)  # raises with close matches
    return materialize(text)
