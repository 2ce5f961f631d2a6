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


_SPLIT_VALUES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


def read_table(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
) -> LabeledData:
    """Reads labelled texts; rows with an empty text or label are skipped and listed.

    With ``split_column``, each kept row's split name (train, val or test) is returned in
    the ``splits`` attribute order via ``read_table_splits``.
    """
    return _read(path, text_column, label_column, split_column)[0]


def _read(
    path: str | Path, text_column: str, label_column: str, split_column: str | None
) -> tuple[LabeledData, list[str]]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidArgumentError(f"No such file: {path}. {received(path=str(path))}")
    rows = _rows(path)
    columns = list(rows[0]) if rows else []
    roles = [("text_column", text_column), ("label_column", label_column)]
    if split_column is not None:
        roles.append(("split_column", split_column))
    for role, column in roles:
        if column not in columns:
            raise InvalidArgumentError(
                f"{path} has no column {column!r}; its columns are {columns}. Pass "
                f"{role}= with one of them. {received(**{role: column})}"
            )
    texts, names, skipped, split_names = [], [], [], []
    for number, row in enumerate(rows, 2):
        text, label = row.get(text_column), row.get(label_column)
        if text is None or label is None or not str(text).strip() or not str(label).strip():
            skipped.append(Skipped(f"{path.name}:{number}", "empty text or label"))
            continue
        if split_column is not None:
            value = str(row.get(split_column) or "").strip().lower()
            if value not in _SPLIT_VALUES:
                raise InvalidArgumentError(
                    f"{path} line {number}: the {split_column!r} column must say train, val "
                    f"(or validation, dev) or test. {received(split=row.get(split_column))}"
                )
            split_names.append(_SPLIT_VALUES[value])
        texts.append(str(text))
        names.append(str(label).strip())
    classes = sorted(set(names))
    index = {name: i for i, name in enumerate(classes)}
    data = LabeledData(
        kind="text",
        items=tuple(texts),
        labels=tuple(index[n] for n in names),
        class_names=tuple(classes),
        source=str(path),
        skipped=tuple(skipped),
    )
    return data, split_names


def from_csv(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    *,
    split_column: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> DataSplits:
    """Reads a CSV, TSV or JSONL file of texts and labels into stratified splits.

    Args:
        path: ``.csv``, ``.tsv`` or ``.jsonl`` (one object per line).
        text_column: the column holding the text.
        label_column: the column holding the class name.
        split_column: a column naming each row's split (``train``, ``val``/``validation``/
            ``dev``, ``test``); a split the file does not have is drawn from its train rows.
        val_fraction: share of each class for validation.
        test_fraction: share of each class for the test set.
        seed: seed of the split.

    Raises:
        InvalidArgumentError: a missing column (the message lists the real ones), fewer than
            two classes, or a class too small to split.

    Example:
        >>> splits = from_csv("reviews.csv", text_column="review")  # doctest: +SKIP
    """
    data, split_names = _read(path, text_column, label_column, split_column)
    check_classes(list(data.class_names), data.counts(), str(path))
    if split_column is None:
        return stratified_split(data, val_fraction, test_fraction, seed)
    parts = {
        name: data.subset([i for i, s in enumerate(split_names) if s == name])
        for name in ("train", "val", "test")
    }
    if not len(parts["train"]):
        raise InvalidArgumentError(
            f"{path}: no row of the {split_column!r} column says train. "
            f"{received(split_column=split_column)}"
        )
    missing = {name: frac for name, frac in (("val", val_fraction), ("test", test_fraction))}
    missing = {k: v for k, v in missing.items() if not len(parts[k])}
    if missing:  # draw the absent splits from the train rows
        scale = 1.0 - sum(
            v for k, v in (("val", val_fraction), ("test", test_fraction)) if k not in missing
        )
        drawn = stratified_split(
            parts["train"],
            missing.get("val", 0.0) / scale,
            missing.get("test", 0.0) / scale,
            seed,
        )
        parts["train"] = drawn.train
        parts.update({k: getattr(drawn, k) for k in missing})
    return DataSplits(**parts, skipped=data.skipped)
