"""Evaluating a saved classifier module on labelled data: ``graft evaluate``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from graft.data.dataset import DataSplits, LabeledData
from graft.errors import InvalidArgumentError, received


def read_labelled(source: str | Path) -> LabeledData:
    """All examples of a folder (its ``test/`` split if it has one) or a text table."""
    from graft.data import existing
    from graft.data.folder import _scan
    from graft.data.table import read_table

    path = existing(source)
    if path.is_dir():
        for name in ("test", "Test"):
            if (path / name).is_dir():
                return _scan(path / name)
        return _scan(path)
    return read_table(path)


def evaluate(
    module_dir: str | Path,
    data: str | Path | LabeledData | DataSplits,
    *,
    out: str | Path | None = None,
    labels: str | Path | None = None,
    text_column: str = "text",
):
    """Evaluates a classifier module and writes the full report.

    Args:
        module_dir: a module whose task is image-classifier or text-classifier.
        data: labelled examples (a folder, a .csv/.tsv/.jsonl, or graft data; for
            ``DataSplits`` the test split). Class names must be among the module's labels.
        out: where to write (default ``eval/<module name>-<time>``).
        labels: a multi-task image module: the labels CSV of ``data`` (a ``file`` column and
            one column per task). A multi-task text module reads its tasks' columns from the
            table (``text_column`` holds the text).

    Returns:
        An ``EvalReport``.

    Raises:
        InvalidArgumentError: the module is not a classifier, or the data has classes the
            module does not know.

    Example:
        >>> evaluate("runs/digits/module", "data/digits").accuracy  # doctest: +SKIP
        0.95
    """
    from graft.evaluation.report import write_report
    from graft.explanation.report import explain_misclassified
    from graft.inference import load_classifier, predict_probs

    model = load_classifier(module_dir, "evaluate")
    manifest = model.graft_manifest
    if manifest.heads:
        return _evaluate_tasks(model, module_dir, data, out, labels, text_column)
    if isinstance(data, DataSplits):
        data = data.test
    elif not isinstance(data, LabeledData):
        data = read_labelled(data)
    labels = list(manifest.labels)
    unknown = [c for c in data.class_names if c not in labels]
    if unknown:
        raise InvalidArgumentError(
            f"The data has classes the module does not know: {unknown}; the module's labels "
            f"are {labels}. {received(classes=list(data.class_names))}"
        )
    if data.kind != manifest.inputs.kind:
        raise InvalidArgumentError(
            f"The module takes {manifest.inputs.kind} input but the data is {data.kind}. "
            f"{received(data=data.source)}"
        )
    y_true = [labels.index(data.class_names[i]) for i in data.labels]
    probs_array = predict_probs(model, data.kind, data.items)
    out = Path(out or f"eval/{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    size = tuple(manifest.inputs.size) if data.kind == "image" else None
    explanations = explain_misclassified(
        model, data.kind, size, data.items, y_true, probs_array, labels
    )
    return write_report(
        out,
        kind=data.kind,
        items=data.items,
        y_true=y_true,
        probs=probs_array,
        class_names=labels,
        title=f"Evaluation of {manifest.name} on {data.source}",
        skipped=data.skipped,
        summary={"module": str(module_dir), "data": data.source},
        explanations=explanations,
    )


def _evaluate_tasks(model, module_dir, data, out, labels, text_column):
    """Every task of a multi-task module: a report per task under ``tasks/`` and an overview."""
    from graft.data.tasks import TaskData, read_image_labels, read_task_table
    from graft.evaluation.report import EvalReport, _write_text, write_report
    from graft.inference import predict_probs
    from graft.training.multitask import write_overview

    manifest = model.graft_manifest
    heads = {h.name: list(h.labels) for h in manifest.heads}
    kind = manifest.inputs.kind
    if kind == "image":
        if labels is None:
            raise InvalidArgumentError(
                f"{manifest.name} has {len(heads)} tasks ({', '.join(heads)}): evaluate it on an "
                "image folder with --labels, a CSV with a 'file' column and one column per task. "
                f"{received(labels=None)}"
            )
        data = read_image_labels(data, labels)
    else:
        data = read_task_table(data, text_column, list(heads))
    missing = [t for t in heads if t not in data.tasks]
    if missing:
        raise InvalidArgumentError(
            f"The labels have no column for the tasks {missing}; the module's tasks are "
            f"{list(heads)}. {received(columns=list(data.tasks))}"
        )
    probs = predict_probs(model, kind, list(data.items))
    out = Path(out or f"eval/{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    metrics = {}
    for task, names in heads.items():
        unknown = [c for c in data.class_names[task] if c not in names]
        if unknown:
            raise InvalidArgumentError(
                f"Task {task!r} of the data has classes the module does not know: {unknown}; "
                f"the module's are {names}. {received(task=task)}"
            )
        rows = data.known(task)
        y_true = [names.index(data.class_names[task][data.labels[task][i]]) for i in rows]
        metrics[task] = write_report(
            out / "tasks" / task,
            kind=kind,
            items=[data.items[i] for i in rows],
            y_true=y_true,
            probs=probs[task][rows],
            class_names=names,
            title=f"Evaluation of {manifest.name}, task {task}, on {data.source}",
            summary={"module": str(module_dir), "data": data.source, "task": task},
        ).metrics
    data = TaskData(
        kind=data.kind,
        items=data.items,
        tasks=tuple(heads),
        labels={t: data.labels[t] for t in heads},
        class_names={t: tuple(heads[t]) for t in heads},
        source=data.source,
        skipped=data.skipped,
    )
    write_overview(
        out, f"Evaluation of {manifest.name} on {data.source}", data, metrics, {"data": data}
    )
    first = next(iter(heads))
    report = EvalReport(metrics={**metrics[first], "tasks": metrics}, directory=out)
    _write_text(out / "metrics.json", json.dumps({"tasks": metrics}, indent=2) + "\n")
    return report
