"""Multi-task data: one example list, one label column per task, empty cells unknown.

Texts come from a table with several label columns; images from a folder of files plus a labels
CSV (a ``file`` column, one column per task). A task's unknown labels (-1) mask that task's loss
for that example; the example still trains the other tasks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.data.dataset import Skipped
from graft.errors import InvalidArgumentError, received

TASK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
UNKNOWN = -1


@dataclass(frozen=True)
class TaskData:
    """Examples with a label per task.

    Attributes:
        kind: ``"image"`` (``items`` are file paths) or ``"text"``.
        items: the examples.
        tasks: task names, in column order.
        labels: per task, the class index of each example (``UNKNOWN`` = -1 where missing).
        class_names: per task, its sorted class names.
        source: where the data came from.
        skipped: examples left out.
    """

    kind: str
    items: tuple[str, ...]
    tasks: tuple[str, ...]
    labels: dict[str, tuple[int, ...]]
    class_names: dict[str, tuple[str, ...]]
    source: str = ""
    skipped: tuple[Skipped, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices: Sequence[int]) -> TaskData:
        return TaskData(
            kind=self.kind,
            items=tuple(self.items[i] for i in indices),
            tasks=self.tasks,
            labels={t: tuple(self.labels[t][i] for i in indices) for t in self.tasks},
            class_names=self.class_names,
            source=self.source,
            skipped=self.skipped,
        )

    def known(self, task: str) -> np.ndarray:
        """Indices of the examples whose ``task`` label is known."""
        return np.flatnonzero(np.asarray(self.labels[task]) != UNKNOWN)


@dataclass(frozen=True)
class TaskSplits:
    train: TaskData
    val: TaskData
    test: TaskData

    def named(self) -> dict[str, TaskData]:
        return {"train": self.train, "val": self.val, "test": self.test}


def check_task_names(names: Sequence[str], option: str) -> None:
    """Task names become output names of the module (SavedModel signatures, JSON keys).

    Raises:
        InvalidArgumentError: a name that is not a letter followed by letters, digits or ``_``,
            or a repeated one.
    """
    for name in names:
        if not TASK_NAME.match(name):
            raise InvalidArgumentError(
                f"A task name (a label column) must start with a letter and use only letters, "
                f"digits and '_' (it names the module's output); rename the column. "
                f"{received(**{option: name})}"
            )
    if len(set(names)) != len(names):
        raise InvalidArgumentError(
            f"Each label column can be given once. {received(**{option: list(names)})}"
        )


def _index(tasks, raw: dict[str, list[str | None]], source: str):
    labels, class_names = {}, {}
    for task in tasks:
        values = raw[task]
        classes = tuple(sorted({v for v in values if v is not None}))
        if len(classes) < 2:
            raise InvalidArgumentError(
                f"Task {task!r} needs at least two classes with examples in {source}; it has "
                f"{list(classes)}. {received(task=task, classes=list(classes))}"
            )
        where = {c: i for i, c in enumerate(classes)}
        labels[task] = tuple(UNKNOWN if v is None else where[v] for v in values)
        class_names[task] = classes
    return labels, class_names


def _cell(value) -> str | None:
    text = "" if value is None else str(value).strip()
    return text or None


def read_task_table(path: str | Path, text_column: str, label_columns: Sequence[str]) -> TaskData:
    """Texts with several label columns (``.csv``, ``.tsv`` or ``.jsonl``); rows with an empty
    text, or with no label at all, are skipped."""
    from graft.data.table import _rows

    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidArgumentError(f"No such file: {path}. {received(path=str(path))}")
    check_task_names(label_columns, "label_column")
    rows = _rows(path)
    columns = list(rows[0]) if rows else []
    for role, column in [("text_column", text_column)] + [
        ("label_column", c) for c in label_columns
    ]:
        if column not in columns:
            raise InvalidArgumentError(
                f"{path} has no column {column!r}; its columns are {columns}. Pass --"
                f"{role.replace('_', '-')} with one of them. {received(**{role: column})}"
            )
    items, raw, skipped = [], {t: [] for t in label_columns}, []
    for number, row in enumerate(rows, 2):
        text = _cell(row.get(text_column))
        cells = {t: _cell(row.get(t)) for t in label_columns}
        if text is None or all(v is None for v in cells.values()):
            skipped.append(Skipped(f"{path.name}:{number}", "empty text, or no label"))
            continue
        items.append(str(row.get(text_column)))
        for t in label_columns:
            raw[t].append(cells[t])
    labels, class_names = _index(label_columns, raw, str(path))
    return TaskData(
        kind="text",
        items=tuple(items),
        tasks=tuple(label_columns),
        labels=labels,
        class_names=class_names,
        source=str(path),
        skipped=tuple(skipped),
    )


def read_image_labels(folder: str | Path, labels_csv: str | Path) -> TaskData:
    """Image files of ``folder`` labelled by ``labels_csv``: a ``file`` column (a path relative
    to ``folder``) and one column per task. Rows whose file is missing or unreadable are
    skipped; so are rows with no label."""
    from graft.data.images import check_image

    folder, labels_csv = Path(folder).expanduser(), Path(labels_csv).expanduser()
    if not labels_csv.is_file():
        raise InvalidArgumentError(
            f"No such labels file: {labels_csv}. --labels is a CSV with a 'file' column and "
            f"one column per task. {received(labels=str(labels_csv))}"
        )
    from graft.data.table import _rows

    rows = _rows(labels_csv)
    columns = list(rows[0]) if rows else []
    if "file" not in columns or len(columns) < 2:
        raise InvalidArgumentError(
            f"{labels_csv} needs a 'file' column and at least one label column; its columns "
            f"are {columns}. {received(columns=columns)}"
        )
    tasks = [c for c in columns if c not in ("file", "split")]
    check_task_names(tasks, "column")
    items, raw, skipped = [], {t: [] for t in tasks}, []
    for number, row in enumerate(rows, 2):
        name = _cell(row.get("file"))
        path = folder / name if name else None
        problem = (
            "no file named"
            if path is None
            else "no such file"
            if not path.is_file()
            else check_image(path)
        )
        cells = {t: _cell(row.get(t)) for t in tasks}
        if problem is None and all(v is None for v in cells.values()):
            problem = "no label"
        if problem:
            skipped.append(Skipped(f"{labels_csv.name}:{number} ({name})", problem))
            continue
        items.append(str(path))
        for t in tasks:
            raw[t].append(cells[t])
    labels, class_names = _index(tasks, raw, str(labels_csv))
    return TaskData(
        kind="image",
        items=tuple(items),
        tasks=tuple(tasks),
        labels=labels,
        class_names=class_names,
        source=f"{folder} + {labels_csv.name}",
        skipped=tuple(skipped),
    )


def split_tasks(
    data: TaskData, val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
) -> TaskSplits:
    """A random split stratified by the first task's label (its unknowns as one more group)."""
    rng = np.random.default_rng(seed)
    first = np.asarray(data.labels[data.tasks[0]])
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for value in np.unique(first):
        idx = np.flatnonzero(first == value)
        rng.shuffle(idx)
        n_test = max(1, round(len(idx) * test_fraction)) if len(idx) >= 3 else 0
        n_val = max(1, round(len(idx) * val_fraction)) if len(idx) >= 3 else 0
        parts["test"] += idx[:n_test].tolist()
        parts["val"] += idx[n_test : n_test + n_val].tolist()
        parts["train"] += idx[n_test + n_val :].tolist()
    return TaskSplits(**{k: data.subset(sorted(v)) for k, v in parts.items()})
