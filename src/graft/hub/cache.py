"""The hub cache under ``$GRAFT_HOME/hub``: content-addressed, locked, never half-written.

::

    hub/snapshots/<sha256>/                 an extracted, verified module (sha256 of its archive)
    hub/refs/<host>/<name>/<ref>.json       what a version or label resolved to, and when
    hub/downloads/<sha256>.incomplete       a download in progress (resumed with Range)
    hub/locks/<sha256>.lock                 held while one process fetches an entry; removed after

A snapshot appears only by ``os.replace`` of a fully extracted and verified temporary
directory, so a reader sees a whole module or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from graft import config
from graft._atomic import write_bytes

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by graft.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def root() -> Path:
    """``$GRAFT_HOME/hub``, created with a CACHEDIR.TAG in ``$GRAFT_HOME``."""
    home = config.graft_home()
    hub = home / "hub"
    if not hub.is_dir():
        hub.mkdir(parents=True, exist_ok=True)
        tag = home / "CACHEDIR.TAG"
        if not tag.exists():
            with contextlib.suppress(OSError):
                write_bytes(tag, CACHEDIR_TAG.encode())
    return hub


def snapshot_dir(sha256: str) -> Path:
    return root() / "snapshots" / sha256


def download_path(sha256: str) -> Path:
    return root() / "downloads" / f"{sha256}.incomplete"


def ref_path(hub_key: str, name: str, ref: str) -> Path:
    return root() / "refs" / hub_key / name / f"{ref}.json"


@dataclass(frozen=True)
class Ref:
    """What a handle's version or label resolved to."""

    sha256: str
    version: int
    size: int
    resolved_at: float
    yanked: bool = False

    def save(self, path: Path) -> None:
        write_bytes(path, json.dumps(self.__dict__).encode())

    @classmethod
    def read(cls, path: Path) -> Ref | None:
        """The stored ref, or None if absent or unreadable (it is then simply re-resolved)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@contextlib.contextmanager
def entry_lock(sha256: str, timeout: float = 3600) -> Iterator[None]:
    """Holds the entry's lock file, and removes the file before releasing it.

    Removing it while held is safe with filelock >= 4: a waiter that then locks the removed
    inode sees it has no links left and starts over on a new file.
    """
    from filelock import FileLock

    path = root() / "locks" / f"{sha256}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=timeout)
    with lock:
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()


@dataclass(frozen=True)
class CacheEntry:
    """One module in the cache, for ``graft cache ls``."""

    kind: str  # "hub" or "zoo"
    key: str  # sha256 for hub snapshots, name@version for zoo modules
    name: str
    version: str
    path: Path
    size: int
    refs: tuple[str, ...]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries() -> list[CacheEntry]:
    """Every module in the cache: hub snapshots (with the handles that point at them) and
    materialised zoo entries."""
    from graft.module.manifest import Manifest

    home = config.graft_home()
    refs: dict[str, list[str]] = {}
    refs_root = home / "hub" / "refs"
    if refs_root.is_dir():
        from urllib.parse import unquote

        for path in sorted(refs_root.glob("*/*/*.json")):
            ref = Ref.read(path)
            if ref:
                hub, name = unquote(path.parent.parent.name), path.parent.name
                refs.setdefault(ref.sha256, []).append(f"hub://{hub}/{name}@{path.stem}")
    found = []
    snaps = home / "hub" / "snapshots"
    for path in sorted(snaps.iterdir()) if snaps.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            manifest = Manifest.read(path / "manifest.json")
            name, version = manifest.name, manifest.version
        except Exception:  # noqa: BLE001 - a damaged entry is still listed, to be removed
            name, version = "?", "?"
        found.append(
            CacheEntry(
                "hub", path.name, name, version, path, _size(path), tuple(refs.get(path.name, ()))
            )
        )
    modules = home / "modules"
    for path in sorted(modules.glob("*/*")) if modules.is_dir() else []:
        if path.is_dir() and not path.name.startswith("."):
            key = f"{path.parent.name}@{path.name}"
            found.append(CacheEntry("zoo", key, path.parent.name, path.name, path, _size(path), ()))
    return found


def remove(entry: CacheEntry) -> None:
    """Deletes an entry (renamed aside first, so no reader sees half of it) and its refs."""
    aside = entry.path.with_name(f".{entry.path.name}.removing.{os.getpid()}")
    os.replace(entry.path, aside)
    shutil.rmtree(aside, ignore_errors=True)
    if entry.kind == "hub":
        refs_root = config.graft_home() / "hub" / "refs"
        for path in refs_root.glob("*/*/*.json") if refs_root.is_dir() else []:
            ref = Ref.read(path)
            if ref is None or ref.sha256 == entry.key:
                path.unlink(missing_ok=True)
