"""Running a classifier module on raw inputs (image files or texts): ``graft.predict``.

Shared by training (the test split), evaluation and the CLI; depends on no training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import Skipped
from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class Prediction:
    """One prediction: the top label and the top-k (label, probability) pairs."""

    item: str
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]
    # A multi-task module: per task, its own Prediction (label, probability, top_k); the
    # fields above are then the first task's.
    tasks: dict = field(default_factory=dict)


def predict_probs(model, kind: str, items: Sequence[str], chunk: int = 64):
    """Runs a raw-input module model (image bytes or strings in) on files or texts.

    Returns:
        ``(n, classes)`` probabilities, or for a multi-task module ``{task: (n, classes)}``.
    """
    import tensorflow as tf

    from graft.data.images import read_inputs

    parts = [
        model.predict(
            tf.constant(read_inputs(kind, items[i : i + chunk])), verbose=0, batch_size=32
        )
        for i in range(0, len(items), chunk)
    ]
    if isinstance(model.output, dict):
        names = list(model.output)
        if not parts:
            return {n: np.zeros((0, model.output[n].shape[-1]), np.float32) for n in names}
        return {n: np.concatenate([np.asarray(p[n]) for p in parts]) for n in names}
    probs = [np.asarray(p) for p in parts]
    return np.concatenate(probs) if probs else np.zeros((0, model.output_shape[-1]), np.float32)


class Predictions(list):
    """The predictions for the inputs that could be read, in their order; ``skipped`` lists
    the inputs left out (an image file that is missing or not an image), and why."""

    skipped: tuple = ()


def load_classifier(module: str | Path, command: str):
    """Loads a classifier module from any handle (a run folder uses its ``module/``).

    Raises:
        InvalidArgumentError: the module is not a classifier (a backbone gives features, not
            labels).
    """
    from graft._load import load

    model = load(module)
    manifest = model.graft_manifest
    if not manifest.task.endswith("classifier") or not manifest.labels:
        raise InvalidArgumentError(
            f"{module} is not a classifier (its task is {manifest.task}, without labels): "
            f"{command} needs a classifier, such as the module of a `graft train` run. "
            f"{received(module=str(module))}"
        )
    return model


def readable_inputs(kind: str, inputs: Sequence[str]) -> tuple[list[str], tuple[Skipped, ...]]:
    """Splits image files into the readable ones and the rest (with the reason); texts pass."""
    if kind == "text":
        return list(inputs), ()
    from graft.data.images import check_image

    kept, skipped = [], []
    for item in inputs:
        path = Path(item)
        problem = "no such file" if not path.is_file() else check_image(path)
        if problem:
            skipped.append(Skipped(str(item), problem))
        else:
            kept.append(str(item))
    return kept, tuple(skipped)


def predict(module: str | Path, inputs: Sequence[str], top_k: int = 3) -> Predictions:
    """Runs a classifier module on image files or texts and returns label names.

    Args:
        module: a module handle (directory, run folder, zoo name, hub handle or URL).
        inputs: image file paths for an image classifier, texts for a text classifier.
        top_k: how many (label, probability) pairs each prediction carries.

    Returns:
        ``Predictions``: one ``Prediction`` per readable input; unreadable image files are
        left out and listed in ``.skipped``.

    Raises:
        InvalidArgumentError: the module is not a classifier, or no input could be read.

    Example:
        >>> graft.predict("runs/digits", ["seven.png"])[0].label  # doctest: +SKIP
        '7'
    """
    model = load_classifier(module, "predict")
    labels = model.graft_manifest.labels
    kind = model.graft_manifest.inputs.kind
    items, skipped = readable_inputs(kind, [str(i) for i in inputs])
    if not items:
        reasons = "; ".join(f"{s.item}: {s.reason}" for s in skipped[:5])
        raise InvalidArgumentError(
            f"None of the inputs is a readable image ({reasons}). The module takes image files "
            f"(jpg, png, bmp, gif, webp, tiff). {received(inputs=[str(i) for i in inputs][:5])}"
        )
    probs = predict_probs(model, kind, items)
    heads = model.graft_manifest.heads
    results = Predictions()
    if heads:
        per_task = {h.name: _rows(items, probs[h.name], h.labels, top_k) for h in heads}
        for i, item in enumerate(items):
            tasks = {name: rows[i] for name, rows in per_task.items()}
            first = tasks[heads[0].name]
            results.append(Prediction(item, first.label, first.probability, first.top_k, tasks))
    else:
        results.extend(_rows(items, probs, labels, top_k))
    results.skipped = skipped
    return results


def _rows(items, probs: np.ndarray, labels, top_k: int) -> list[Prediction]:
    k = max(1, min(top_k, probs.shape[1]))
    out = []
    for item, row in zip(items, probs, strict=True):
        order = np.argsort(-row)[:k]
        named = tuple((labels[i] if i < len(labels) else str(i), float(row[i])) for i in order)
        out.append(Prediction(item, named[0][0], named[0][1], named))
    return out
