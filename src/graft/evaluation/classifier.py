"""Evaluating a saved classifier module on labelled data: ``graft evaluate``."""

from __future__ import annotations

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
):
    """Evaluates a classifier module and writes the full report.

    Args:
        module_dir: a module whose task is image-classifier or text-classifier.
        data: labelled examples (a folder, a .csv/.tsv/.jsonl, or graft data; for
            ``DataSplits`` the test split). Class names must be among the module's labels.
        out: where to write (default ``eval/<module name>-<time>``).

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
