"""Running a classifier module on raw inputs (image files or texts): ``graft.predict``.

Shared by training (the test split), evaluation and the CLI; depends on no training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """One prediction: the top label and the top-k (label, probability) pairs."""

    item: str
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]


def predict_probs(model, kind: str, items: Sequence[str], chunk: int = 64) -> np.ndarray:
    """Runs a raw-input module model (image bytes or strings in) on files or texts."""
    import tensorflow as tf

    from graft.data.images import read_inputs

    probs = [
        np.asarray(
            model.predict(
                tf.constant(read_inputs(kind, items[i : i + chunk])), verbose=0, batch_size=32
            )
        )
        for i in range(0, len(items), chunk)
    ]
    return np.concatenate(probs) if probs else np.zeros((0, model.output_shape[-1]), np.float32)


def predict(module_dir: str | Path, inputs: Sequence[str], top_k: int = 3) -> list[Prediction]:
    """Runs a classifier module on image files or texts and returns label names."""
    from graft.module.io import load

    loaded = load(module_dir)
    labels = loaded.manifest.labels or ()
    inputs = list(inputs)
    probs = predict_probs(loaded.model, loaded.manifest.inputs.kind, inputs)
    k = max(1, min(top_k, probs.shape[1]))
    results = []
    for item, row in zip(inputs, probs, strict=True):
        order = np.argsort(-row)[:k]
        named = tuple((labels[i] if i < len(labels) else str(i), float(row[i])) for i in order)
        results.append(Prediction(str(item), named[0][0], named[0][1], named))
    return results
