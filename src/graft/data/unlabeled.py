"""Unlabelled examples for pseudo-labelling: image files anywhere under a folder, or texts from
a .txt file (one per line) or a .csv/.tsv/.jsonl column."""

from __future__ import annotations

from pathlib import Path

from graft.data.dataset import Skipped
from graft.errors import InvalidArgumentError, received


def read_unlabeled(
    source: str | Path, kind: str, text_column: str = "text"
) -> tuple[tuple[str, ...], tuple[Skipped, ...]]:
    """Reads unlabelled examples of ``kind`` (``"image"`` or ``"text"``).

    Returns:
        ``(items, skipped)``: image paths (readable ones) or texts, and what was left out.

    Raises:
        InvalidArgumentError: no such file or folder, the wrong kind, or nothing usable.

    Example:
        >>> items, skipped = read_unlabeled("photos_unsorted", "image")  # doctest: +SKIP
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise InvalidArgumentError(
            f"No such file or folder for unlabelled data: {path}. Give a folder of images or a "
            f".txt/.csv/.tsv/.jsonl of texts. {received(unlabeled=str(source))}"
        )
    if kind == "image":
        if not path.is_dir():
            raise InvalidArgumentError(
                f"Unlabelled images must be a folder (searched recursively); {path} is a file. "
                f"{received(unlabeled=str(source))}"
            )
        from concurrent.futures import ThreadPoolExecutor

        from graft.data.images import IMAGE_SUFFIXES, check_image

        files = [
            p
            for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
        ]
        with ThreadPoolExecutor(max_workers=8) as pool:
            problems = list(pool.map(check_image, files))
        items = tuple(str(p) for p, bad in zip(files, problems, strict=True) if not bad)
        skipped = tuple(Skipped(str(p), bad) for p, bad in zip(files, problems, strict=True) if bad)
    else:
        if path.is_dir():
            raise InvalidArgumentError(
                f"Unlabelled texts must be a .txt (one text per line), .csv, .tsv or .jsonl "
                f"file; {path} is a folder. {received(unlabeled=str(source))}"
            )
        if path.suffix.lower() == ".txt":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            items = tuple(line for line in lines if line.strip())
        else:
            from graft.data.table import _rows

            rows = _rows(path)
            if rows and text_column not in rows[0]:
                raise InvalidArgumentError(
                    f"{path} has no column {text_column!r}; its columns are {list(rows[0])}. "
                    f"{received(text_column=text_column)}"
                )
            items = tuple(
                str(r[text_column]) for r in rows if str(r.get(text_column) or "").strip()
            )
        skipped = ()
    if not items:
        raise InvalidArgumentError(
            f"{path} holds no usable unlabelled {kind}s. {received(unlabeled=str(source))}"
        )
    return items, skipped
