"""Stacking on cached features, in NumPy: out-of-fold member predictions, a meta-learner on
them, and the stack's own cross-validated accuracy.

Every head here is graft's convex head (``linear.fit_linear_head``: multinomial logistic
regression solved to convergence, its L2 strength chosen on held-out data). For fold ``f`` a
member head is fitted on the examples outside ``f`` only and predicts the examples of ``f``,
so each out-of-fold prediction comes from a head that never saw that example. The meta-learner
is the same convex head on the members' concatenated out-of-fold log-probabilities.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from graft.training.linear import LAMBDAS, TRANSFORMS, LinearHead, _fold_assignment, fit_linear_head

# What the meta-learner reads: "log_probabilities" or "probabilities" (see README/bench).
STACK_ON = "log_probabilities"
VALIDATION_FOLDS = 5  # HeadPlan.folds == 0: one stratified fifth is the validation split


@dataclass(frozen=True)
class HeadPlan:
    """How a member's head chooses its strength.

    Attributes:
        transforms: feature transforms to try (``"none"``, ``"power"``).
        folds: ``None`` for ``fit_linear_head``'s default (5-fold cross-validation up to
            6,000 examples), ``0`` for one stratified validation split (a fifth).
        lambdas: L2 strengths to try.
    """

    transforms: tuple[str, ...] = ("none",)
    folds: int | None = None
    lambdas: tuple[float, ...] = LAMBDAS


def plan_for(features: np.ndarray, *, sparse: bool = False) -> HeadPlan:
    """The plan of ``graft train``'s convex head: power normalisation is tried for non-negative
    (pooled ReLU) features. ``sparse`` (TF-IDF, thousands of dimensions) chooses on one
    validation split over every other strength: the dense solver's cost grows with the
    dimension, and 5-fold CV would fit 5 times as many problems."""
    transforms = ("none", "power") if float(features.min()) >= 0 else ("none",)
    if sparse:
        return HeadPlan(transforms=("power",), folds=0, lambdas=LAMBDAS[::2])
    return HeadPlan(transforms=transforms)


def fit_head(x: np.ndarray, y: np.ndarray, n_classes: int, plan: HeadPlan, seed: int) -> LinearHead:
    """A convex head fitted on every row of ``x``, its strength chosen as ``plan`` says."""
    if plan.folds == 0:
        va = _fold_assignment(y, VALIDATION_FOLDS, seed) == 0
        tr = ~va
        return fit_linear_head(
            x[tr], y[tr], x[va], y[va], n_classes, folds=0, refit_on="train+val",
            transforms=plan.transforms, lambdas=plan.lambdas, seed=seed,
        )  # fmt: skip
    return fit_linear_head(
        x, y, x[:0], y[:0], n_classes, folds=plan.folds, refit_on="train+val",
        transforms=plan.transforms, lambdas=plan.lambdas, seed=seed,
    )  # fmt: skip


def log_proba(head: LinearHead, x: np.ndarray) -> np.ndarray:
    """Log-probabilities of a convex head (log-softmax of its logits: no ``log(0)``)."""
    z = ((TRANSFORMS[head.transform](x) - head.mean) / head.scale) @ head.kernel + head.bias
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def member_outputs(head: LinearHead, x: np.ndarray, stack_on: str = STACK_ON) -> np.ndarray:
    """What a member passes to the meta-learner: log-probabilities or probabilities."""
    logp = log_proba(head, x)
    return logp if stack_on == "log_probabilities" else np.exp(logp)


def out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    assignment: np.ndarray,
    n_classes: int,
    plan: HeadPlan,
    seed: int,
    on_fold: Callable[[int], None] | None = None,
    stack_on: str = STACK_ON,
) -> np.ndarray:
    """Each example's member output from a head fitted on the other folds only.

    Args:
        x, y: features and labels of every example (train + validation).
        assignment: the fold of each example (``0 .. K-1``).
        plan: how each fold's head chooses its strength (on that fold's training part).
        on_fold: called with the fold index after each fold.

    Returns:
        ``(n, n_classes)`` out-of-fold outputs (``member_outputs``).
    """
    out = np.zeros((len(y), n_classes), np.float32)
    for f in range(int(assignment.max()) + 1):
        held = assignment == f
        head = fit_head(x[~held], y[~held], n_classes, plan, seed + f + 1)
        out[held] = member_outputs(head, x[held], stack_on)
        if on_fold:
            on_fold(f)
    return out


def to_probabilities(outputs: np.ndarray, stack_on: str = STACK_ON) -> np.ndarray:
    """Probabilities from member outputs (for accuracies)."""
    return np.exp(outputs) if stack_on == "log_probabilities" else outputs


def meta_inputs(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The meta-learner's input: the members' outputs side by side."""
    return np.concatenate(list(outputs), axis=1).astype(np.float32)


META_PLAN = HeadPlan(transforms=("none",))


def fit_meta(z: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> LinearHead:
    """The meta-learner: the convex head on the members' out-of-fold outputs."""
    return fit_head(z, y, n_classes, META_PLAN, seed)


def stack_out_of_fold(
    z: np.ndarray, y: np.ndarray, assignment: np.ndarray, n_classes: int, seed: int
) -> np.ndarray:
    """The stack's cross-validated probabilities: for fold ``f`` a meta-learner fitted on the
    out-of-fold outputs of the other folds predicts ``f``. (The members' outputs of those other
    examples came from heads that saw ``f``; their own labels never reach ``f``'s meta-learner.)
    """
    probs = np.zeros((len(y), n_classes), np.float32)
    for f in range(int(assignment.max()) + 1):
        held = assignment == f
        meta = fit_meta(z[~held], y[~held], n_classes, seed + 100 + f)
        probs[held] = meta.predict_proba(z[held])
    return probs
