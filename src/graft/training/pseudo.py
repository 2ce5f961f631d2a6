"""Pseudo-labelling: confident predictions on unlabelled examples as extra training data.

The convex head (its strength and transform fixed, as chosen on labelled data) predicts the
unlabelled features; examples whose top probability reaches the threshold join the training
set with that label, in round r at most r times as many per class as the class has labelled
training examples (so a confident majority class cannot swamp the rest, and each round can
grow the set). Rounds re-predict with the head refitted on the last selection. The best round
is kept only if it raises validation accuracy, and the run says which happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class PseudoLabels:
    """What pseudo-labelling chose and whether it helped.

    Attributes:
        indices: rows of the unlabelled features used (empty if not kept).
        labels: their pseudo-labels.
        confidence: their top probabilities (each >= the threshold).
        val_before: validation accuracy of the head on labelled data alone.
        val_after: validation accuracy with the pseudo-labels (the best round).
        kept: whether they are used (``val_after > val_before``).
        rounds: per round: examples selected and validation accuracy.
    """

    indices: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    val_before: float
    val_after: float
    kept: bool
    threshold: float
    unlabeled: int
    n_classes: int
    rounds: tuple[dict, ...] = field(default=())

    def summary(self) -> dict:
        """JSON-ready figures for run.json and the report."""
        per_class = np.bincount(self.labels, minlength=self.n_classes).tolist()
        return {
            "unlabeled": self.unlabeled,
            "threshold": self.threshold,
            "selected": int(len(self.indices)),
            "selected_per_class": per_class,
            "val_accuracy_before": self.val_before,
            "val_accuracy_after": self.val_after,
            "kept": self.kept,
            "rounds": list(self.rounds),
        }


def select(probs: np.ndarray, threshold: float, caps: np.ndarray) -> np.ndarray:
    """Rows whose top probability is at least ``threshold``, the most confident first, at most
    ``caps[c]`` per predicted class ``c``."""
    top, label = probs.max(axis=1), probs.argmax(axis=1)
    chosen = []
    for c in range(probs.shape[1]):
        rows = np.flatnonzero((label == c) & (top >= threshold))
        rows = rows[np.argsort(-top[rows], kind="stable")][: int(caps[c])]
        chosen.append(rows)
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, int)


def pseudo_label(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    x_unlabeled: np.ndarray,
    n_classes: int,
    *,
    lam: float,
    transform: str,
    threshold: float = 0.9,
    rounds: int = 1,
    class_weight: str = "auto",
) -> PseudoLabels:
    """Chooses pseudo-labels for ``x_unlabeled`` and measures them on validation.

    Args:
        x_train, y_train: labelled training features and labels.
        x_val, y_val: labelled validation features and labels (never pseudo-labelled).
        x_unlabeled: features of the unlabelled examples.
        n_classes: number of classes.
        lam, transform: the convex head's chosen strength and feature transform.
        threshold: the least top probability a pseudo-label needs.
        rounds: selection rounds (each re-predicts with the head refitted on the last).
        class_weight: as for the convex head.

    Returns:
        The ``PseudoLabels``.

    Raises:
        InvalidArgumentError: a threshold outside (0, 1] or fewer than one round.

    Example:
        >>> r = pseudo_label(xtr, ytr, xva, yva, xun, 10,  # doctest: +SKIP
        ...                  lam=1e-3, transform="none")
        >>> r.kept, len(r.indices)  # doctest: +SKIP
    """
    from graft.training.linear import fit_linear_head

    if not 0.0 < threshold <= 1.0:
        raise InvalidArgumentError(
            f"The pseudo-label threshold is a probability in (0, 1]. "
            f"{received(pseudo_threshold=threshold)}"
        )
    if rounds < 1:
        raise InvalidArgumentError(f"pseudo_rounds must be at least 1. {received(rounds=rounds)}")

    def fit(x, y):
        return fit_linear_head(
            x,
            y,
            x_val,
            y_val,
            n_classes,
            refit_on="train",
            lam=lam,
            transforms=(transform,),
            class_weight=class_weight,
        )

    def val_accuracy(head) -> float:
        return float((head.predict_proba(x_val).argmax(1) == y_val).mean())

    head = fit(x_train, y_train)
    before = val_accuracy(head)
    caps = np.bincount(y_train, minlength=n_classes)
    history, best = [], (before, np.zeros(0, int), np.zeros(0, int), np.zeros(0))
    for r in range(rounds):
        probs = head.predict_proba(x_unlabeled)
        rows = select(probs, threshold, caps * (r + 1))
        labels, confidence = probs[rows].argmax(1), probs[rows].max(1)
        head = fit(np.concatenate([x_train, x_unlabeled[rows]]), np.concatenate([y_train, labels]))
        accuracy = val_accuracy(head)
        history.append({"round": r + 1, "selected": int(len(rows)), "val_accuracy": accuracy})
        if accuracy > best[0]:
            best = (accuracy, rows, labels, confidence)
        if not len(rows):
            break
    kept = best[0] > before
    return PseudoLabels(
        indices=best[1] if kept else np.zeros(0, int),
        labels=best[2] if kept else np.zeros(0, int),
        confidence=best[3] if kept else np.zeros(0),
        val_before=before,
        val_after=max(h["val_accuracy"] for h in history),
        kept=kept,
        threshold=threshold,
        unlabeled=len(x_unlabeled),
        n_classes=n_classes,
        rounds=tuple(history),
    )
