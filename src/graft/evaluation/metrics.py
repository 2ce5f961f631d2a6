"""Classification metrics, computed with scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def standard_error(accuracy: float, examples: int) -> float:
    """The binomial standard error of an accuracy measured on ``examples`` examples: how much
    a score moves by chance. graft lets a challenger (a tuned configuration, a fine-tuned
    network) replace the safe default only when it leads by more than this.

    Example:
        >>> round(standard_error(0.9, 100), 4)
        0.03
    """
    return float(np.sqrt(accuracy * (1.0 - accuracy) / max(examples, 1)))


def compute_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy, top-k accuracy, per-class precision/recall/F1/support, confusion matrix.

    Args:
        y_true: true class indices.
        probs: ``(n, classes)`` predicted probabilities.
        class_names: names of the classes, in index order.

    Returns:
        A JSON-ready dict: ``accuracy``, ``top_k_accuracy`` (``{"3": ...}`` for k < classes),
        ``macro_f1``, ``per_class`` (precision, recall, f1, support by name),
        ``confusion_matrix`` (rows: true, columns: predicted), ``examples``.

    Example:
        >>> m = compute_metrics([0, 1], np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"])
        >>> m["accuracy"]
        1.0
    """
    from sklearn.metrics import classification_report, confusion_matrix, top_k_accuracy_score

    y_true = np.asarray(y_true, dtype=int)
    labels = list(range(len(class_names)))
    y_pred = probs.argmax(axis=1)
    report = classification_report(
        y_true,
        y_pred,
        labels=labels,
        target_names=list(class_names),
        output_dict=True,
        zero_division=0,
    )
    top_k = {}
    for k in (3, 5):
        if k < len(class_names):
            top_k[str(k)] = float(top_k_accuracy_score(y_true, probs, k=k, labels=labels))
    return {
        "examples": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "top_k_accuracy": top_k,
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "per_class": {
            name: {
                "precision": float(report[name]["precision"]),
                "recall": float(report[name]["recall"]),
                "f1": float(report[name]["f1-score"]),
                "support": int(report[name]["support"]),
            }
            for name in class_names
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
