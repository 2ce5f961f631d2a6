"""Labelled texts from CSV, TSV or JSON Lines files."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from graft.data.dataset import DataSplits, LabeledData, Skipped, check_classes, stratified_split
from graft.errors import InvalidArgumentError, received

_FORMATS = {".csv": ",", ".tsv": "\t", ".jsonl": None, ".ndjson": None}


def _rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise InvalidArgumentError(
            f"Text data must be .csv, .tsv or .jsonl. {received(path=str(path))}"
        )
    with open(path, encoding="utf-8-sig", newline="") as f:
        if _FORMATS[suffix] is None:
            rows = []
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise InvalidArgumentError(
                            f"{path} line {number} is not JSON ({exc.msg}). {received(line=number)}"
                        ) from None
            return rows
        return list(csv.DictReader(f, delimiter=_FORMATS[suffix]))


def read_table(
    path: str | Path, text_column: str = "text", label_column: str = "label"
) -> LabeledData:
    """Reads labelled texts; rows with an empty text or label are skipped and listed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidArgumentError(f"No such file: {path}. {received(path=str(path))}")
    rows = _rows(path)
    columns = list(rows[0]) if rows else []
    for role, column in (("text_column", text_column), ("label_column", label_column)):
        if column not in columns:
            raise InvalidArgumentError(
                f"{path} has no column {column!r}; its columns are {columns}. Pass "
                f"{role}= with one of them. {received(**{role: column})}"
            )
    texts, names, skipped = [], [], []
    for number, row in enumerate(rows, 2):
        text, label = row.get(text_column), row.get(label_column)
        if text is None or label is None or not str(text).strip() or not str(label).strip():
            skipped.append(Skipped(f"{path.name}:{number}", "empty text or label"))
            continue
        texts.append(str(text))
        names.append(str(label).strip())
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    return LabeledData(
        kind="text",
        items=tuple(texts),
        labels=tuple(index[n] for n in names),
        class_names=tuple(classes),
        source=str(path),
        skipped=tuple(skipped),
    )


def from_csv(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Reads a CSV, TSV or JSONL file of texts and labels into stratified splits.

    Args:
        path: ``.csv``, ``.tsv`` or ``.jsonl`` (one object per line).
        text_column: the column holding the text.
        label_column: the column holding the class name.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for the test set.
        seed: seed of the split.

    Raises:
        InvalidArgumentError: a missing column (the message lists the real ones), fewer than
            two classes, or a class too small to split.

    Example:
        >>> splits = from_csv("reviews.csv", text_column="review")  # doctest: +SKIP
    """
    data = read_table(path, text_column, label_column)
    check_classes(list(data.class_names), data.counts(), str(path))
    return stratified_split(data, val_fraction, test_fraction, seed)
