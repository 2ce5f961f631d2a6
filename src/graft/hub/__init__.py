"""graft hub: publish, version, find and download modules; resolve ``hub://`` handles.

Example:
    >>> import graft
    >>> graft.hub.push("runs/digits/module", "localhost:8080", "digits")  # doctest: +SKIP
    >>> model = graft.load("hub://localhost:8080/digits@stable")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from graft.hub.client import HubClient, resolve, resolve_url


def pull(handle: str, *, refresh: bool = True) -> Path:
    """Downloads a ``hub://`` handle or archive URL into the cache and returns the module
    directory. Unlike ``graft.load``, labels are always re-resolved unless offline."""
    if handle.startswith(("http://", "https://")):
        return resolve_url(handle)
    return resolve(handle, refresh=refresh)


def push(
    module_dir: str | Path,
    url: str,
    name: str,
    *,
    version: int | None = None,
    labels: tuple[str, ...] = (),
    token: str | None = None,
) -> dict:
    """Publishes a module to a hub; returns the version's record. ``module_dir`` is any handle
    ``graft.load`` takes (a module directory, a run folder, another hub's handle, ...)."""
    from graft.handles import resolve as resolve_handle

    module_dir = resolve_handle(module_dir)
    with HubClient(url, token=token) as client:
        return client.publish(module_dir, name, version=version, labels=labels)


__all__ = ["HubClient", "pull", "push", "resolve", "resolve_url"]
