"""The on-disk feature cache: vectors in sharded chunk files with a key index per shard.

One folder per (model sha, preprocessing) holds ``shards/<id>.npy`` (a float32 array, one row
per example, memory-mapped on read) and ``shards/<id>.keys`` (the rows' example keys, 32-byte
sha256 digests back to back). A shard is written under temporary names and renamed, the array
first and its keys last, so a reader sees whole shards or none, and writers never touch each
other's files: concurrent processes (training runs, Ray workers) need no lock to add vectors.
Lookups sort the keys of every shard once and answer a whole batch with ``np.searchsorted``;
reads touch only the rows asked for.

Many small shards (one per extraction call) are merged into large ones past ``MAX_SHARDS``,
under a lock, with the merged shard committed before the old ones are removed; a reader whose
shard vanished meanwhile re-reads the index. The earlier layout, one ``<xx>/<sha>.npy`` file
per example, is moved into shards the first time a folder is opened.

Measured with 100,000 vectors of 1,280 floats (bench/RESULTS.md, ``feature-store``): the
one-file-per-example layout took 6.6 s warm and 20 s cold to read back and 792 MB on disk.
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
KEY_BYTES = 32
SHARD_BYTES = 256 << 20  # the largest shard a merge writes
MAX_SHARDS = 64  # more shards than this are merged


class VectorStore:
    """Vectors by example key (sha256 hex) in one cache folder.

    Args:
        root: the folder (created on first write).
        shape: the shape of one vector.

    Example:
        >>> store = VectorStore(tmp / "features", (4,))  # doctest: +SKIP
        >>> store.put(["ab" * 32], np.ones((1, 4), np.float32))  # doctest: +SKIP
        >>> found, vectors = store.get(["ab" * 32, "cd" * 32])  # doctest: +SKIP
        >>> found.tolist()  # doctest: +SKIP
        [True, False]
    """

    def __init__(self, root: str | Path, shape: tuple[int, ...]) -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.shape = tuple(int(d) for d in shape)
        self._migrated = False

    # -- reading ----------------------------------------------------------------------------
    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Sorted keys, and for each the shard number and row; the shard ids."""
        ids, keys, shard_of, rows = [], [], [], []
        if self.shards.is_dir():
            for path in sorted(self.shards.glob("*.keys")):
                try:
                    data = path.read_bytes()
                except FileNotFoundError:  # merged away since the listing
                    continue
                n = len(data) // KEY_BYTES
                keys.append(np.frombuffer(data[: n * KEY_BYTES], dtype=f"S{KEY_BYTES}"))
                shard_of.append(np.full(n, len(ids), np.int32))
                rows.append(np.arange(n, dtype=np.int64))
                ids.append(path.stem)
        if not ids:
            empty = np.zeros(0, f"S{KEY_BYTES}")
            return empty, np.zeros(0, np.int32), np.zeros(0, np.int64), []
        keys_all = np.concatenate(keys)
        order = np.argsort(keys_all, kind="stable")
        return keys_all[order], np.concatenate(shard_of)[order], np.concatenate(rows)[order], ids

    def get(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, vectors)``: which keys are stored, and an ``(n, *shape)`` float32 array
        with their vectors (zeros where not found)."""
        self._migrate()
        for attempt in range(3):
            try:
                return self._get(keys)
            except FileNotFoundError:  # a merge removed a shard after the index was read
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _get(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        out = np.zeros((len(keys), *self.shape), np.float32)
        found = np.zeros(len(keys), bool)
        sorted_keys, shard_of, rows, ids = self._index()
        if not len(keys) or not ids:
            return found, out
        query = np.array([bytes.fromhex(k) for k in keys], dtype=f"S{KEY_BYTES}")
        pos = np.searchsorted(sorted_keys, query)
        pos_clipped = np.minimum(pos, len(sorted_keys) - 1)
        found = sorted_keys[pos_clipped] == query
        where = np.flatnonzero(found)
        shards = shard_of[pos_clipped[where]]
        for shard in np.unique(shards):
            mine = where[shards == shard]
            shard_rows = rows[pos_clipped[mine]]
            array = np.load(self.shards / f"{ids[shard]}.npy", mmap_mode="r")
            order = np.argsort(shard_rows)  # read in file order
            out[mine[order]] = array[shard_rows[order]]
        return found, out

    def __len__(self) -> int:
        self._migrate()
        return len(self._index()[0])

    # -- writing ----------------------------------------------------------------------------
    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        """Adds vectors as one new shard (keys already stored are written again: harmless, the
        first copy is read). Merges small shards when there are more than ``MAX_SHARDS``."""
        if not len(keys):
            return
        vectors = np.ascontiguousarray(vectors, np.float32).reshape(len(keys), *self.shape)
        self._write_shard([bytes.fromhex(k) for k in keys], vectors)
        if len(list(self.shards.glob("*.keys"))) > MAX_SHARDS:
            self.compact()

    def _write_shard(self, keys: list[bytes], vectors: np.ndarray) -> str:
        self.shards.mkdir(parents=True, exist_ok=True)
        shard = uuid.uuid4().hex
        tmp_array = self.shards / f".{shard}.npy.tmp"
        tmp_keys = self.shards / f".{shard}.keys.tmp"
        try:
            with open(tmp_array, "wb") as f:
                np.save(f, vectors)
            tmp_keys.write_bytes(b"".join(keys))
            os.replace(tmp_array, self.shards / f"{shard}.npy")
            try:
                os.replace(tmp_keys, self.shards / f"{shard}.keys")  # the shard is visible now
            except BaseException:
                (self.shards / f"{shard}.npy").unlink(missing_ok=True)
                raise
        finally:
            tmp_array.unlink(missing_ok=True)
            tmp_keys.unlink(missing_ok=True)
        return shard

    def compact(self) -> int:
        """Merges the shards smaller than ``SHARD_BYTES`` into as few as fit (one process at a
        time; the others skip). Returns the number of shards removed."""
        from filelock import FileLock, Timeout

        self.shards.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.root / "compact.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return 0
        try:
            row_bytes = int(np.prod(self.shape, dtype=np.int64)) * 4 or 4
            small = []
            for path in sorted(self.shards.glob("*.keys")):
                if path.stat().st_size // KEY_BYTES * row_bytes < SHARD_BYTES:
                    small.append(path.stem)
            if len(small) < 2:
                return 0
            seen: set[bytes] = set()
            batch_keys: list[bytes] = []
            batch_rows: list[np.ndarray] = []
            for shard in small:
                data = (self.shards / f"{shard}.keys").read_bytes()
                array = np.load(self.shards / f"{shard}.npy", mmap_mode="r")
                for i in range(len(data) // KEY_BYTES):
                    key = data[i * KEY_BYTES : (i + 1) * KEY_BYTES]
                    if key in seen:
                        continue
                    seen.add(key)
                    batch_keys.append(key)
                    batch_rows.append(np.asarray(array[i]))
                    if len(batch_keys) * row_bytes >= SHARD_BYTES:
                        self._write_shard(batch_keys, np.stack(batch_rows))
                        batch_keys, batch_rows = [], []
            if batch_keys:
                self._write_shard(batch_keys, np.stack(batch_rows))
            for shard in small:  # keys first: the shard disappears from the index at once
                (self.shards / f"{shard}.keys").unlink(missing_ok=True)
                (self.shards / f"{shard}.npy").unlink(missing_ok=True)
            return len(small)
        finally:
            lock.release()

    # -- the earlier layout -----------------------------------------------------------------
    def _migrate(self) -> None:
        """Moves ``<xx>/<sha>.npy`` files (one per example) into one shard, once."""
        if self._migrated:
            return
        self._migrated = True
        if not self.root.is_dir():
            return
        old = [d for d in self.root.iterdir() if d.is_dir() and len(d.name) == 2]
        if not old:
            return
        from filelock import FileLock

        with FileLock(str(self.root / "migrate.lock")):
            files = [p for d in old if d.is_dir() for p in sorted(d.glob("*.npy"))]
            keys, vectors = [], []
            for path in files:
                try:
                    vector = np.load(path, allow_pickle=False)
                except (OSError, ValueError):  # a damaged file: recomputed when asked for
                    continue
                if vector.shape == self.shape and len(path.stem) == 2 * KEY_BYTES:
                    keys.append(bytes.fromhex(path.stem))
                    vectors.append(vector.astype(np.float32))
            if keys:
                self._write_shard(keys, np.stack(vectors))
            for path in files:
                path.unlink(missing_ok=True)
            for d in old:
                try:
                    d.rmdir()
                except OSError:
                    pass
            if files:
                log.info("feature cache %s: %d vectors moved into a shard", self.root, len(keys))
