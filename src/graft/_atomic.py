"""Writing files so that readers see the old file or the whole new one, never a part."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yields a unique temporary path beside ``target``; renames it onto ``target`` when the
    block succeeds and removes it when it fails.

    Example:
        >>> with atomic_path(Path(tmp) / "a.txt") as path:  # doctest: +SKIP
        ...     path.write_text("whole")
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{suffix}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def replace_dir(new: Path, target: Path) -> None:
    """Puts the finished directory ``new`` at ``target``, replacing any directory there: the old
    one is renamed aside first and deleted after, so ``target`` is always whole."""
    if target.exists():
        aside = target.parent / f".{target.name}.old-{uuid.uuid4().hex}"
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(new, target)


def write_bytes(target: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def copy_file(source: str | Path, target: str | Path) -> None:
    """Copies ``source`` to ``target`` atomically."""
    with atomic_path(target, ".part") as tmp:
        shutil.copyfile(source, tmp)
