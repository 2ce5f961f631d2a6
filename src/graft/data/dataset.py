"""Labelled examples (image files or texts) and their train/validation/test splits."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class Skipped:
    """An example left out, and why."""

    item: str
    reason: str


@dataclass(frozen=True)
class LabeledData:
    """Examples with integer labels into ``class_names`` (sorted).

    Attributes:
        kind: ``"image"`` (``items`` are file paths) or ``"text"`` (``items`` are the texts).
        items: the examples.
        labels: class index of each example.
        class_names: sorted class names.
        source: where the data came from, for reports.
        skipped: examples left out (unreadable files, empty texts).
    """

    kind: Literal["image", "text"]
    items: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    source: str = ""
    skipped: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def counts(self) -> dict[str, int]:
        """Examples per class name."""
        c = Counter(self.labels)
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def subset(self, indices) -> LabeledData:
        return LabeledData(
            kind=self.kind,
            items=tuple(self.items[i] for i in indices),
            labels=tuple(self.labels[i] for i in indices),
            class_names=self.class_names,
            source=self.source,
        )


@dataclass(frozen=True)
class DataSplits:
    """Train, validation and test sets sharing one list of class names."""

    train: LabeledData
    val: LabeledData
    test: LabeledData
    skipped: tuple[Skipped, ...] = field(default=())

    def named(self) -> dict[str, LabeledData]:
        """``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    @property
    def kind(self) -> str:
        return self.train.kind

    def fingerprint(self) -> str:
        """sha256 over every example's content (file bytes or text), label and split: the same
        data gives the same fingerprint on any machine, wherever its folder is."""
        import hashlib

        digest = hashlib.sha256()
        for split, part in self.named().items():
            for item, label in zip(part.items, part.labels, strict=True):
                if part.kind == "image":
                    content = hashlib.sha256(Path(item).read_bytes()).hexdigest()
                else:
                    content = hashlib.sha256(item.encode("utf-8")).hexdigest()
                digest.update(f"{split}\t{part.class_names[label]}\t{content}\n".encode())
        return digest.hexdigest()

    def describe(self, command: str) -> str:
        """Provenance that names the data without the trainer's paths: ``graft train on
        flowers (2936/367/367 train/val/test, 5 classes)``."""
        name = Path(self.train.source).name or "data"
        counts = "/".join(str(len(p.items)) for p in self.named().values())
        return f"{command} on {name} ({counts} train/val/test, {len(self.class_names)} classes)"

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.train.class_names


def check_classes(names: list[str], counts: dict[str, int], source: str) -> None:
    """Raises a clear error for fewer than two classes or an empty class."""
    if len(names) < 2:
        raise InvalidArgumentError(
            f"A classifier needs at least two classes; {source} has {len(names)} "
            f"({', '.join(names) or 'none'}). For images, make one subfolder per class "
            f"(flowers/daisy/*.jpg, flowers/tulips/*.jpg). {received(classes=names)}"
        )
    empty = [n for n in names if counts.get(n, 0) == 0]
    if empty:
        raise InvalidArgumentError(
            f"Every class needs examples; these have none in {source}: {', '.join(empty)}. "
            f"Add examples or remove the class. {received(empty_classes=empty)}"
        )


def stratified_split(
    data: LabeledData, val_fraction: float, test_fraction: float, seed: int
) -> DataSplits:
    """Splits per class so every split keeps the class proportions.

    Raises:
        InvalidArgumentError: fractions out of range, or a class too small to appear in every
            split.
    """
    import numpy as np

    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise InvalidArgumentError(f"{name} must be in [0, 1). {received(**{name: value})}")
    if val_fraction + test_fraction >= 1.0:
        raise InvalidArgumentError(
            "val_fraction + test_fraction must leave examples for training. "
            f"{received(val_fraction=val_fraction, test_fraction=test_fraction)}"
        )
    rng = np.random.default_rng(seed)
    labels = np.asarray(data.labels)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls, name in enumerate(data.class_names):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        n_test = int(round(len(idx) * test_fraction))
        n_val = int(round(len(idx) * val_fraction))
        if test_fraction > 0:
            n_test = max(n_test, 1)
        if val_fraction > 0:
            n_val = max(n_val, 1)
        if len(idx) - n_test - n_val < 1:
            raise InvalidArgumentError(
                f"Class {name!r} has {len(idx)} examples, too few for a train, validation and "
                f"test split; add examples or lower the fractions. "
                f"{received(class_name=name, examples=len(idx))}"
            )
        parts["test"] += idx[:n_test].tolist()
        parts["val"] += idx[n_test : n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val :].tolist()
    return DataSplits(**{k: data.subset(sorted(v)) for k, v in parts.items()}, skipped=data.skipped)
