"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from graft.evaluation.metrics import compute_metrics


def test_metrics_by_hand():
    names = ["cat", "dog", "fox", "owl"]
    y_true = [0, 0, 1, 1, 2, 3]
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.1],  # cat ok
            [0.2, 0.5, 0.2, 0.1],  # cat -> dog; cat 2nd (top-3 hit)
            [0.1, 0.6, 0.2, 0.1],  # dog ok
            [0.4, 0.3, 0.2, 0.1],  # dog -> cat; dog 2nd
            [0.1, 0.1, 0.1, 0.7],  # fox -> owl; fox tied 2nd-4th
            [0.1, 0.1, 0.1, 0.7],  # owl ok
        ]
    )
    m = compute_metrics(y_true, probs, names)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["top_k_accuracy"] == {"3": pytest.approx(1.0)}
    assert m["confusion_matrix"] == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]]
    assert m["per_class"]["owl"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert m["per_class"]["fox"]["recall"] == 0.0 and m["per_class"]["fox"]["support"] == 1
    assert m["macro_f1"] == pytest.approx((0.5 + 0.5 + 0 + 2 / 3) / 4)


def test_two_classes_have_no_top_k():
    m = compute_metrics([0, 1], np.array([[0.9, 0.1], [0.3, 0.7]]), ["a", "b"])
    assert m["top_k_accuracy"] == {} and m["accuracy"] == 1.0
