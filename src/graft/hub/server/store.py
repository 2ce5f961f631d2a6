"""The hub's catalogue: records and labels in storage, a SQLite index for queries.

Storage is the truth: ``blobs/<sha256>.tar`` (archives, shared by identical versions),
``modules/<name>/<version>.json`` (one record per version, created only if absent) and
``modules/<name>/labels/<label>.json`` (one object per label, so servers sharing a bucket can
move different labels at the same time without losing a move; a label table read, changed and
written back would drop the other server's change). The SQLite file beside it is an index
rebuilt from storage at start-up, plus download counters. A ``modules/<name>/labels.json``
table written by earlier versions is read too, and turned into per-label objects.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from graft.hub.archive import Limits, inspect
from graft.hub.names import LATEST, check_label
from graft.hub.server.storage import LocalStorage, Storage

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, task TEXT, description TEXT, tags TEXT, record TEXT NOT NULL,
    yanked INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS labels (
    name TEXT NOT NULL, label TEXT NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (name, label));
CREATE TABLE IF NOT EXISTS downloads (
    name TEXT NOT NULL, version INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (name, version));
"""


class NotFound(LookupError):
    """No such module, version or label (HTTP 404)."""


class Conflict(Exception):
    """The version exists already (HTTP 409)."""


@dataclass(frozen=True)
class Upload:
    """A published archive waiting in a temporary file."""

    path: Path
    sha256: str
    size: int


def blob_key(sha256: str) -> str:
    return f"blobs/{sha256}.tar"


def _record_key(name: str, version: int) -> str:
    return f"modules/{name}/{version}.json"


def _label_key(name: str, label: str) -> str:
    return f"modules/{name}/labels/{label}.json"


def _legacy_labels_key(name: str) -> str:
    return f"modules/{name}/labels.json"


class Store:
    """Publishing and querying modules.

    Args:
        root: a local directory for the index and temporary uploads (and the objects, unless
            ``storage`` is given).
        storage: where archives and records live; default ``LocalStorage(root)``.
    """

    def __init__(self, root: str | Path, storage: Storage | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.storage = storage or LocalStorage(self.root)
        self.limits = Limits.from_env()
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.root / "index.sqlite", check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
        self.reindex()

    # -- index ----------------------------------------------------------------------------
    def reindex(self) -> int:
        """Rebuilds the index from storage; returns the number of versions found."""
        records, labels, legacy = [], {}, {}
        for key in self.storage.list("modules/"):
            parts = key.split("/")
            if not parts[-1].endswith(".json") or len(parts) not in (3, 4):
                continue
            data = self.storage.get_bytes(key)
            if data is None:  # deleted since it was listed
                continue
            if len(parts) == 4 and parts[2] == "labels":
                labels.setdefault(parts[1], {})[parts[3][: -len(".json")]] = json.loads(data)[
                    "version"
                ]
            elif len(parts) == 3 and parts[2] == "labels.json":
                legacy[parts[1]] = json.loads(data)
            elif len(parts) == 3:
                records.append(json.loads(data))
        for name, table in legacy.items():  # the old single table: one object per label
            for label, version in table.items():
                if label not in labels.get(name, {}):
                    document = json.dumps({"version": version}).encode()
                    self.storage.put_bytes(_label_key(name, label), document, exclusive=True)
                    labels.setdefault(name, {})[label] = version
            self.storage.delete(_legacy_labels_key(name))
        with self._lock, self._db:  # one transaction: readers see the old or the new index
            self._db.execute("DELETE FROM versions")
            self._db.execute("DELETE FROM labels")
            for record in records:
                self._index(record)
            for name, table in labels.items():
                for label, version in table.items():
                    self._db.execute("INSERT INTO labels VALUES (?, ?, ?)", (name, label, version))
        return len(records)

    def _index(self, record: dict) -> None:
        manifest = record["manifest"]
        self._db.execute(
            "INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record["name"],
                record["version"],
                record["sha256"],
                record["size"],
                record["created"],
                manifest.get("task"),
                manifest.get("description", ""),
                json.dumps(manifest.get("tags", [])),
                json.dumps(record),
                int(record.get("yanked", False)),
            ),
        )

    def _labels(self, name: str) -> dict[str, int]:
        rows = self._db.execute(
            "SELECT label, version FROM labels WHERE name = ? ORDER BY label", (name,)
        )
        return {row["label"]: row["version"] for row in rows}

    def _downloads(self, name: str) -> dict[int, int]:
        rows = self._db.execute("SELECT version, count FROM downloads WHERE name = ?", (name,))
        return {row["version"]: row["count"] for row in rows}

    # -- queries --------------------------------------------------------------------------
    def search(self, query: str = "", task: str = "", tag: str = "") -> list[dict]:
        """Modules whose name, description, task, tags or labels contain every word of
        ``query``, newest non-yanked version first in each summary."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM versions ORDER BY name, version").fetchall()
            labels = self._db.execute("SELECT name, label FROM labels").fetchall()
            counts = self._db.execute(
                "SELECT name, SUM(count) AS n FROM downloads GROUP BY name"
            ).fetchall()
        by_name: dict[str, list[sqlite3.Row]] = {}
        for row in rows:
            by_name.setdefault(row["name"], []).append(row)
        label_text: dict[str, list[str]] = {}
        for row in labels:
            label_text.setdefault(row["name"], []).append(row["label"])
        downloads = {row["name"]: row["n"] for row in counts}
        words = query.lower().split()
        found = []
        for name, versions in by_name.items():
            live = [v for v in versions if not v["yanked"]] or versions
            top = live[-1]
            tags = json.loads(top["tags"])
            text = " ".join(
                [
                    name,
                    top["task"] or "",
                    top["description"] or "",
                    *tags,
                    *label_text.get(name, []),
                ]
            ).lower()
            if any(word not in text for word in words):
                continue
            if task and top["task"] != task:
                continue
            if tag and tag not in tags:
                continue
            found.append(
                {
                    "name": name,
                    "latest_version": top["version"],
                    "task": top["task"],
                    "description": top["description"],
                    "tags": tags,
                    "labels": sorted(label_text.get(name, [])),
                    "versions": len(versions),
                    "updated": max(v["created"] for v in versions),
                    "downloads": downloads.get(name, 0),
                }
            )
        return found

    def module(self, name: str) -> dict:
        """A module with every version's record, its labels and download counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM versions WHERE name = ? ORDER BY version DESC", (name,)
            ).fetchall()
            labels = self._labels(name)
            downloads = self._downloads(name)
        if not rows:
            raise NotFound(f"no module named {name!r}")
        versions = []
        for row in rows:
            record = json.loads(row["record"])
            record["labels"] = sorted(k for k, v in labels.items() if v == record["version"])
            record["downloads"] = downloads.get(record["version"], 0)
            versions.append(record)
        live = [v["version"] for v in versions if not v.get("yanked")]
        return {
            "name": name,
            "latest_version": max(live) if live else None,
            "labels": labels,
            "versions": versions,
        }

    def version(self, name: str, ref: str) -> dict:
        """The record ``name@ref`` names (``ref``: a number, a label or ``latest``)."""
        with self._lock:
            if ref == LATEST:
                row = self._db.execute(
                    "SELECT record FROM versions WHERE name = ? AND yanked = 0 "
                    "ORDER BY version DESC LIMIT 1",
                    (name,),
                ).fetchone()
                if row is None:
                    self.module(name)  # 404 for an unknown module
                    raise NotFound(f"every version of {name!r} is yanked")
            else:
                if not ref.isdigit():
                    labels = self._labels(name)
                    if ref not in labels:
                        self.module(name)
                        known = ", ".join(labels) or "none"
                        raise NotFound(f"{name!r} has no label {ref!r} (labels: {known})")
                    ref = str(labels[ref])
                row = self._db.execute(
                    "SELECT record FROM versions WHERE name = ? AND version = ?", (name, int(ref))
                ).fetchone()
                if row is None:
                    self.module(name)
                    raise NotFound(f"{name!r} has no version {ref}")
        return json.loads(row["record"])

    def count_download(self, name: str, version: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO downloads VALUES (?, ?, 1) ON CONFLICT(name, version) "
                "DO UPDATE SET count = count + 1",
                (name, version),
            )

    # -- writes ---------------------------------------------------------------------------
    def publish(
        self, name: str, upload: Upload, version: int | None = None, labels: tuple[str, ...] = ()
    ) -> dict:
        """Checks an uploaded archive completely and records it as a new version.

        Raises:
            UnsafeArchiveError, ManifestError, ChecksumError: the archive is refused (400).
            Conflict: the version exists (409).
        """
        for label in labels:
            check_label(label)
        manifest = inspect(upload.path, self.limits)
        with self._lock:
            if version is None:
                row = self._db.execute(
                    "SELECT MAX(version) AS v FROM versions WHERE name = ?", (name,)
                ).fetchone()
                version = (row["v"] or 0) + 1
            exists = self._db.execute(
                "SELECT 1 FROM versions WHERE name = ? AND version = ?", (name, version)
            ).fetchone()
            if exists:
                raise Conflict(f"{name} version {version} exists; versions are immutable")
            if self.storage.size(blob_key(upload.sha256)) != upload.size:
                self.storage.put_file(blob_key(upload.sha256), upload.path)
            record = {
                "name": name,
                "version": version,
                "sha256": upload.sha256,
                "size": upload.size,
                "created": time.time(),
                "manifest": json.loads(manifest.to_json()),
                "yanked": False,
                "yank_reason": "",
            }
            if not self.storage.put_bytes(
                _record_key(name, version), json.dumps(record).encode(), exclusive=True
            ):
                raise Conflict(f"{name} version {version} exists; versions are immutable")
            with self._db:
                self._index(record)
            for label in labels:
                self.set_label(name, label, version)
        return record

    def set_label(self, name: str, label: str, version: int) -> dict[str, int]:
        """Points a label at an existing version; returns the module's labels.

        Only this label's object is written: a server moving another label of the same module
        at the same time (on a shared bucket) keeps its move.
        """
        check_label(label)
        with self._lock:
            self.version(name, str(version))
            document = json.dumps({"version": version}).encode()
            self.storage.put_bytes(_label_key(name, label), document)
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO labels VALUES (?, ?, ?)", (name, label, version)
                )
            return self._labels(name)

    def delete_label(self, name: str, label: str) -> dict[str, int]:
        with self._lock:
            if label not in self._labels(name):
                raise NotFound(f"{name!r} has no label {label!r}")
            self.storage.delete(_label_key(name, label))
            with self._db:
                self._db.execute("DELETE FROM labels WHERE name = ? AND label = ?", (name, label))
            return self._labels(name)

    def yank(self, name: str, version: int, reason: str = "", undo: bool = False) -> dict:
        """Marks a version yanked (or not): ``latest`` skips yanked versions."""
        with self._lock:
            record = self.version(name, str(version))
            record = {**record, "yanked": not undo, "yank_reason": "" if undo else reason}
            self.storage.put_bytes(_record_key(name, version), json.dumps(record).encode())
            with self._db:
                self._index(record)
        return record

    def refresh_every(self, seconds: float) -> None:
        """Re-reads storage every ``seconds`` in a daemon thread, so a server sharing a bucket
        with others sees their publishes, labels and yanks."""
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    self.reindex()
                except Exception:  # noqa: BLE001 - storage hiccup: keep serving, retry later
                    log.exception("Re-reading the hub's storage failed; retrying")

        threading.Thread(target=loop, name="graft-hub-refresh", daemon=True).start()

    def close(self) -> None:
        if getattr(self, "_stop", None) is not None:
            self._stop.set()
        with self._lock:
            self._db.close()
