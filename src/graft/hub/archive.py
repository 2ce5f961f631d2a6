"""Module archives: deterministic tar files in, checked and verified module directories out.

An archive holds ``manifest.json`` and exactly the files it lists, as regular files with
relative paths. Everything else is refused before a byte is written: absolute paths, ``..``,
backslashes, links, devices, duplicate names, more than ``max_members`` members or more than
``max_bytes`` in total. Extraction then goes through ``tarfile``'s ``data`` filter as well, and
the module's checksums are verified.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from graft.errors import ChecksumError, ManifestError, UnsafeArchiveError, received
from graft.module.io import MANIFEST_FILE, verify
from graft.module.manifest import Manifest

CHUNK = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Caps on what an archive may hold."""

    max_members: int = 10_000
    max_bytes: int = 32 << 30

    @classmethod
    def from_env(cls) -> Limits:
        """Limits from ``GRAFT_HUB_MAX_MEMBERS`` and ``GRAFT_HUB_MAX_BYTES`` if set."""
        return cls(
            max_members=int(os.environ.get("GRAFT_HUB_MAX_MEMBERS", cls.max_members)),
            max_bytes=int(os.environ.get("GRAFT_HUB_MAX_BYTES", cls.max_bytes)),
        )


def pack(module_dir: str | Path, dest: str | Path) -> tuple[str, int]:
    """Writes a module directory as a deterministic tar file (same files -> same bytes).

    The module is verified first; only ``manifest.json`` and the files it lists go in.

    Args:
        module_dir: a module directory.
        dest: the archive to write (through a temporary file and a rename).

    Returns:
        The archive's sha256 and size in bytes.

    Example:
        >>> pack("runs/digits/module", "digits.tar")  # doctest: +SKIP
        ('5f1c...', 16412160)
    """
    module_dir, dest = Path(module_dir), Path(dest)
    manifest = verify(module_dir)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for rel in [MANIFEST_FILE, *sorted(manifest.files)]:
                info = tar.gettarinfo(module_dir / rel, arcname=rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                info.mode = 0o644
                with open(module_dir / rel, "rb") as f:
                    tar.addfile(info, f)
        digest = hashlib.sha256()
        with open(tmp, "rb") as f:
            while block := f.read(CHUNK):
                digest.update(block)
        size = tmp.stat().st_size
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest(), size


def _member_name(info: tarfile.TarInfo) -> str:
    name = info.name
    if name.startswith("./"):
        name = name[2:]
    parts = PurePosixPath(name).parts
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or (len(name) > 1 and name[1] == ":")
    ):
        raise UnsafeArchiveError(
            "An archive member must have a relative path without '..', '.', backslashes or a "
            f"drive letter. {received(member=info.name)}"
        )
    return name


def check_members(tar: tarfile.TarFile, limits: Limits | None = None) -> dict[str, tarfile.TarInfo]:
    """Checks every member of an open archive before anything is extracted.

    Returns:
        Regular-file members by their normalised relative path (directories are dropped).

    Raises:
        UnsafeArchiveError: naming the first member that breaks a rule, or the limit exceeded.
    """
    limits = limits or Limits.from_env()
    files: dict[str, tarfile.TarInfo] = {}
    count = total = 0
    try:
        for info in tar:
            count += 1
            if count > limits.max_members:
                raise UnsafeArchiveError(
                    f"The archive has more than {limits.max_members} members (the limit; set "
                    f"GRAFT_HUB_MAX_MEMBERS to change it). {received(members=count)}"
                )
            name = _member_name(info)
            if info.isdir():
                continue
            if not info.isreg():
                kind = "link" if info.issym() or info.islnk() else "device or special file"
                raise UnsafeArchiveError(
                    f"Archive members must be regular files or folders; {name} is a {kind}. "
                    f"{received(member=info.name)}"
                )
            if name in files:
                raise UnsafeArchiveError(
                    f"The archive holds {name} twice. {received(member=info.name)}"
                )
            total += info.size
            if total > limits.max_bytes:
                raise UnsafeArchiveError(
                    f"The archive unpacks to more than {limits.max_bytes} bytes (the limit; set "
                    f"GRAFT_HUB_MAX_BYTES to change it). {received(bytes=total)}"
                )
            files[name] = info
        # tarfile stops quietly at a damaged or cut header; a whole archive ends in zero blocks.
        tar.fileobj.seek(tar.offset)
        end = tar.fileobj.read(2 * tarfile.BLOCKSIZE)
        if len(end) < 2 * tarfile.BLOCKSIZE or end.strip(b"\0"):
            raise tarfile.ReadError(f"no end-of-archive marker after byte {tar.offset}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, UnsafeArchiveError):
            raise
        raise UnsafeArchiveError(
            f"The archive is truncated or not a tar file ({exc}). {received(archive=tar.name)}"
        ) from None
    return files


def _open(path: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchiveError(
            f"The archive is truncated or not a (gzip/bzip2/xz) tar file ({exc}). "
            f"{received(archive=str(path))}"
        ) from None


def inspect(path: str | Path, limits: Limits | None = None) -> Manifest:
    """Checks an archive completely without extracting it and returns its manifest.

    Every member must be safe, ``manifest.json`` must be valid, and the files it lists must be
    exactly the archive's other members, with the recorded sizes and sha256.

    Raises:
        UnsafeArchiveError, ManifestError, ChecksumError: naming the member at fault.
    """
    path = Path(path)
    with _open(path) as tar:
        files = check_members(tar, limits)
        if MANIFEST_FILE not in files:
            raise ManifestError(
                f"The archive has no {MANIFEST_FILE}. {received(archive=str(path))}"
            )
        manifest = Manifest.from_json(
            tar.extractfile(files[MANIFEST_FILE]).read().decode("utf-8"), f"{path}!manifest.json"
        )
        extra = sorted(set(files) - set(manifest.files) - {MANIFEST_FILE})
        missing = sorted(set(manifest.files) - set(files))
        if extra or missing:
            raise ManifestError(
                "The archive's files must be exactly those its manifest lists. "
                f"{received(unlisted=extra, missing=missing)}"
            )
        for rel, entry in manifest.files.items():
            digest = hashlib.sha256()
            stream = tar.extractfile(files[rel])
            try:
                while block := stream.read(CHUNK):
                    digest.update(block)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise UnsafeArchiveError(
                    f"The archive is truncated inside {rel} ({exc}). {received(member=rel)}"
                ) from None
            if files[rel].size != entry.size or digest.hexdigest() != entry.sha256:
                raise ChecksumError(
                    f"{rel} in the archive differs from its manifest entry (sha256 "
                    f"{digest.hexdigest()}, {files[rel].size} bytes; the manifest says "
                    f"{entry.sha256}, {entry.size} bytes). {received(member=rel)}"
                )
    return manifest


def extract(path: str | Path, dest: str | Path, limits: Limits | None = None) -> Manifest:
    """Extracts a checked archive into a new directory and verifies the module there.

    Args:
        path: the archive.
        dest: a directory that must not exist yet (callers pass a temporary path, then rename).

    Returns:
        The verified manifest.

    Raises:
        UnsafeArchiveError, ManifestError, ChecksumError: nothing is left in ``dest`` then.
    """
    import shutil

    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True)
    try:
        with _open(path) as tar:
            files = check_members(tar, limits)
            for name, info in files.items():
                info.name = name
            tar.extractall(dest, members=list(files.values()), filter="data")
        manifest = verify(dest)
        listed = set(manifest.files) | {MANIFEST_FILE}
        extra = sorted(set(files) - listed)
        if extra:
            raise ManifestError(
                f"The archive holds files its manifest does not list. {received(unlisted=extra)}"
            )
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return manifest
