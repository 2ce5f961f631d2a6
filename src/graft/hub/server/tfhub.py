"""TF Hub's download protocol on graft hub: ``tensorflow_hub.load("http://HOST/tfhub/NAME/REF")``.

The client asks ``GET /tfhub/NAME/REF?tf-hub-format=compressed`` and unpacks the ``.tar.gz`` it
gets (a TF2 SavedModel at the root). REF is a version number, a label or ``latest``. The
SavedModel (``graft.export.tfhub``) is made once per module archive, in a separate process
(the server itself never imports TensorFlow), and kept in the hub's storage beside the
archives: ``tfhub/<archive sha256>/<tar.gz sha256>.tar.gz``, with a pointer
``tfhub/<archive sha256>.json`` holding its sha256 and size, written only if absent, so hub
servers sharing a bucket agree on one. Every answer carries the sha256 as its ETag and is
checked against the pointer before it is sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)
FORMAT_QUERY = "tf-hub-format"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()
_verified: set[str] = set()  # pointers whose blob was hashed in full by this process


class ConversionError(RuntimeError):
    """The module could not be written as a SavedModel (the message says why)."""


def _pointer_key(archive_sha: str) -> str:
    return f"tfhub/{archive_sha}.json"


def _blob_key(archive_sha: str, sha: str) -> str:
    return f"tfhub/{archive_sha}/{sha}.tar.gz"


def _lock(key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def compressed(store, record: dict) -> tuple[str, str, int]:
    """``(storage key, sha256, size)`` of the version's SavedModel ``.tar.gz``, made on first
    use.

    Raises:
        ConversionError: the module cannot be a SavedModel (its message says why).
    """
    from graft.errors import ChecksumError
    from graft.hub.server.store import blob_key

    archive_sha = record["sha256"]
    with _lock(archive_sha):
        pointer = store.storage.get_bytes(_pointer_key(archive_sha))
        if pointer is None:
            archive = store.storage.local_path(blob_key(archive_sha))
            with tempfile.TemporaryDirectory(dir=store.tmp, prefix="tfhub-") as tmp:
                if archive is None or not archive.is_file():  # remote storage: fetch it first
                    archive = Path(tmp) / "module.tar"
                    with open(archive, "wb") as f:
                        for chunk in store.storage.iter_range(
                            blob_key(archive_sha), 0, record["size"] - 1
                        ):
                            f.write(chunk)
                out = Path(tmp) / "out.tar.gz"
                _convert(archive, out)
                digest, size = hashlib.sha256(), out.stat().st_size
                with open(out, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                sha = digest.hexdigest()
                store.storage.put_file(_blob_key(archive_sha, sha), out)
            document = json.dumps({"sha256": sha, "size": size}).encode()
            store.storage.put_bytes(_pointer_key(archive_sha), document, exclusive=True)
            pointer = store.storage.get_bytes(_pointer_key(archive_sha))  # the first one wins
            log.info("made the TF Hub SavedModel of %s@%s", record["name"], record["version"])
        meta = json.loads(pointer)
        key = _blob_key(archive_sha, meta["sha256"])
        if store.storage.size(key) != meta["size"]:
            raise ChecksumError(
                f"The TF Hub SavedModel of {record['name']}@{record['version']} is missing or "
                f"damaged in storage (the pointer says {meta['size']} bytes)."
            )
        if key not in _verified:
            digest = hashlib.sha256()
            for chunk in store.storage.iter_range(key, 0, meta["size"] - 1):
                digest.update(chunk)
            if digest.hexdigest() != meta["sha256"]:
                raise ChecksumError(
                    f"The TF Hub SavedModel of {record['name']}@{record['version']} does not "
                    f"match its sha256 {meta['sha256']}."
                )
            _verified.add(key)
        return key, meta["sha256"], meta["size"]


def _convert(archive: Path, out: Path) -> None:
    """Runs the conversion in a child process (TensorFlow loads there, and goes with it)."""
    proc = subprocess.run(
        [sys.executable, "-m", "graft.hub.server.tfhub", str(archive), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0 or not out.is_file():
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1:] or ["?"])
        raise ConversionError(str(reason)[-1000:])


def main(argv: list[str]) -> int:
    """``python -m graft.hub.server.tfhub ARCHIVE OUT.tar.gz``: extract, check, convert."""
    from graft.export import tfhub
    from graft.hub.archive import extract

    archive, out = Path(argv[0]), Path(argv[1])
    with tempfile.TemporaryDirectory(prefix="graft-tfhub-") as tmp:
        module = Path(tmp) / "module"
        extract(archive, module)  # checked members, verified checksums
        saved = tfhub.write(module, Path(tmp) / "saved_model")
        partial = out.with_name(out.name + ".part")
        tfhub.write_tar_gz(saved, partial)
        partial.replace(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as exc:  # one line for the server's error message
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
