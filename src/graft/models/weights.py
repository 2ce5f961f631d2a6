"""Finding and downloading weight files: local folders first, then the network (unless offline).

Downloads stream into a uniquely named temporary file beside the target, are checked against
the expected hash, and only then renamed into place; a lock per file keeps concurrent processes
from downloading it twice.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from graft import config
from graft._atomic import copy_file
from graft.errors import OfflineError, WeightsError, received

CHUNK = 1 << 20


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def check_hash(path: Path, expected: str | None) -> None:
    """Verifies ``path`` against an md5 (32 hex) or sha256 (64 hex) digest, if one is known.

    Raises:
        WeightsError: the digest differs.
    """
    if not expected:
        return
    algorithm = "sha256" if len(expected) == 64 else "md5"
    actual = _digest(path, algorithm)
    if actual != expected:
        raise WeightsError(
            f"{path} has {algorithm} {actual}, expected {expected}: the file is corrupt or not "
            f"the right weights. Delete it and fetch it again. {received(path=str(path))}"
        )


def downloads_dir() -> Path:
    return config.graft_home() / "downloads"


def local_candidates(filename: str) -> list[Path]:
    """Where a weights file may already be: GRAFT_WEIGHTS_DIR, graft's cache, Keras' cache."""
    places = []
    if config.weights_dir():
        places.append(config.weights_dir() / filename)
    places.append(downloads_dir() / filename)
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    places.append(keras_home / "models" / filename)
    return places


def download(url: str, target: Path, expected_hash: str | None, timeout: float = 30.0) -> Path:
    """Downloads ``url`` to ``target`` atomically and verifies it.

    Raises:
        OfflineError: ``GRAFT_OFFLINE`` is set.
        WeightsError: the server could not be reached, answered an error, or sent a file with
            the wrong hash; nothing is left at ``target``.
    """
    import httpx
    from filelock import FileLock

    if config.offline():
        raise OfflineError(f"GRAFT_OFFLINE is set, so {url} is not downloaded. {received(url=url)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            check_hash(target, expected_hash)
            return target
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
                if response.status_code != 200:
                    raise WeightsError(
                        f"{url} answered HTTP {response.status_code}. {received(url=url)}"
                    )
                with open(tmp, "wb") as f:
                    for block in response.iter_bytes(CHUNK):
                        f.write(block)
            check_hash(tmp, expected_hash)
            os.replace(tmp, target)
        except httpx.HTTPError as exc:
            raise WeightsError(
                f"Could not download {url} ({type(exc).__name__}: {exc}). {received(url=url)}"
            ) from None
        finally:
            tmp.unlink(missing_ok=True)
    return target


def fetch_weights(filename: str, url_path: str, expected_hash: str | None, what: str) -> Path:
    """Returns a verified local path for a weights file, downloading it if needed.

    Args:
        filename: the file's name (as Keras names it).
        url_path: its path under ``GRAFT_WEIGHTS_BASE_URL``.
        expected_hash: md5 or sha256, or ``None`` when none is published.
        what: the model, for messages.

    Raises:
        WeightsError: no local copy, and the download is impossible or failed. The message
            says where to put the file.
    """
    for path in local_candidates(filename):
        if path.is_file():
            check_hash(path, expected_hash)
            return path
    url = config.weights_base_url() + url_path
    try:
        return download(url, downloads_dir() / filename, expected_hash)
    except (OfflineError, WeightsError) as exc:
        reason = str(exc).split(" Received: ")[0]
        raise WeightsError(
            f"The ImageNet weights of {what} ({filename}) are not on this machine and could not "
            f"be downloaded: {reason} To provide them, download {url} on a machine with "
            f"internet, then run `graft models fetch {what} --weights-file PATH`, or put the "
            f"file in $GRAFT_WEIGHTS_DIR or {downloads_dir()}. {received(filename=filename)}"
        ) from None


def install_weights_file(source: Path, filename: str, expected_hash: str | None) -> Path:
    """Copies a user-supplied weights file into graft's cache after checking its hash."""
    if not source.is_file():
        raise WeightsError(f"No such file: {source}. {received(weights_file=str(source))}")
    check_hash(source, expected_hash)
    target = downloads_dir() / filename
    copy_file(source, target)
    return target
