"""``graft.ensemble``: stacking across backbones, saved as one module.

Each member (a backbone, or ``tfidf`` for texts) gets graft's convex head on its cached
features. K stratified folds of train + validation give every example out-of-fold member
predictions; a meta-learner (the same convex head) is fitted on them; every member head is
then refitted on all of train + validation. The test split is held out and evaluated at the end.

Run folder (``runs/NAME``)::

    config.json  splits.json               what was asked; which examples, in which fold
    module/                                one classifier: raw input -> probabilities
    report.html  metrics.json  run.json    members vs ensemble (cross-validated and test)
    predictions.csv  misclassified.csv  confusion_matrix.{csv,png}     the test evaluation
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, Skipped
from graft.errors import InvalidArgumentError, ModuleExistsError, received
from graft.training.loop import write_json
from graft.training.run import RunFolder
from graft.training.stages import _pool

Progress = Callable[[str, int, int], None] | None


@dataclass(frozen=True)
class EnsembleConfig:
    """Every setting of an ensemble run (``config.json``)."""

    models: tuple[str, ...]
    folds: int = 5
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    runtime: str = "auto"

    def check(self) -> None:
        if self.folds < 2:
            raise InvalidArgumentError(
                "Stacking needs out-of-fold predictions: folds must be at least 2. "
                f"{received(folds=self.folds)}"
            )
        if not 0 < self.test_fraction < 1:
            raise InvalidArgumentError(
                "The ensemble is evaluated on a held-out test split: test_fraction must be in "
                f"(0, 1). {received(test_fraction=self.test_fraction)}"
            )
        from graft._engines import check_runtime

        check_runtime(self.runtime)


@dataclass
class EnsembleRun(RunFolder):
    """A finished ensemble: its module, the member comparison and the test evaluation.

    Attributes:
        members: one row per member, then the stack (meta-learner) and the plain mean of the
            members' probabilities, cross-validated (out-of-fold) and test accuracy of each;
            the one of those two that scored better out of fold is saved (``role ==
            "ensemble"``), the other is ``role == "reference"``.
        test_probs: the ensemble's probabilities on the test split (as the module computes
            them from the cached features).
        combination: which combination the module uses and why.

    Example:
        >>> run = graft.ensemble("data/digits", models=["efficientnet_lite0.imagenet",
        ...                      "efficientnet_lite1.imagenet"], out="runs/ens")  # doctest: +SKIP
        >>> [(r["name"], r["test_accuracy"]) for r in run.members]  # doctest: +SKIP
    """

    directory: Path
    config: EnsembleConfig
    class_names: tuple[str, ...]
    kind: str
    metrics: dict
    members: list[dict]
    timings: dict = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()
    test_probs: np.ndarray | None = None
    combination: str = ""


def _load_splits(data, config: EnsembleConfig, table: dict) -> DataSplits:
    if isinstance(data, DataSplits):
        return data
    import graft.data

    options = {"val_fraction": config.val_fraction, "test_fraction": config.test_fraction}
    if not Path(data).expanduser().is_dir():
        options.update(table)
    return graft.data.load(str(data), seed=config.seed, **options)


def ensemble(
    data: str | Path | DataSplits,
    models: Sequence[str],
    *,
    out: str | Path | None = None,
    folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    text_column: str = "text",
    label_column: str = "label",
    split_column: str | None = None,
    runtime: str = "auto",
    progress: Progress = None,
) -> EnsembleRun:
    """Stacks several backbones into one classifier module and compares it with each member.

    Args:
        data: a folder of class subfolders, a .csv/.tsv/.jsonl of texts, or ``DataSplits``.
        models: two or more members: feature-vector or text-embedding zoo entries, module
            directories or hub handles, and for texts ``"tfidf"`` (word + bigram TF-IDF).
        out: the run folder (default ``runs/<time>``); it must not hold a run.
        folds: K of the stratified folds of train + validation that give the out-of-fold
            predictions the meta-learner is fitted on.
        seed: seed of the split and the folds.
        val_fraction, test_fraction: shares of the split (train and validation are pooled
            for the folds; the test split is held out).
        text_column, label_column, split_column: columns of a text table.
        runtime: image feature runtime: ``"auto"`` (TFLite), ``"tflite"`` or ``"keras"``.
        progress: called as ``progress(stage, done, total)``.

    Returns:
        The ``EnsembleRun``.

    Raises:
        InvalidArgumentError: fewer than two members, a repeated member, a member of the
            wrong kind for the data, bad settings, or a class with fewer examples than folds.
        ModelNotFoundError: an unknown member.
        ModuleExistsError: ``out`` already holds a run.

    Example:
        >>> run = ensemble("news.csv", ["minilm_l6.sentence", "tfidf"], out="runs/news")
        ... # doctest: +SKIP
        >>> run.metrics["accuracy"], run.report  # doctest: +SKIP
    """
    from graft.training.linear import _fold_assignment
    from graft.training.members import check_names, resolve_members

    config = EnsembleConfig(
        tuple(str(m) for m in models), folds, seed, val_fraction, test_fraction, runtime
    )
    config.check()
    check_names(config.models)
    out = Path(out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and any(out.iterdir()):
        raise ModuleExistsError(
            f"{out} already holds a run; choose another output folder. {received(out=str(out))}"
        )
    table = {"text_column": text_column, "label_column": label_column}
    splits = _load_splits(data, config, {**table, "split_column": split_column})
    members = resolve_members(config.models, splits.kind)
    pooled = _pool(splits, ("train", "val"))
    labels = np.asarray(pooled.labels, int)
    n = len(splits.class_names)
    smallest = int(np.bincount(labels, minlength=n).min())
    if smallest < config.folds:
        raise InvalidArgumentError(
            f"{config.folds}-fold stacking needs at least {config.folds} train + validation "
            f"examples of every class; the smallest class has {smallest}. Lower --folds. "
            f"{received(folds=config.folds)}"
        )
    if not len(splits.test):
        raise InvalidArgumentError(
            "The ensemble is evaluated on a held-out test split, and the data has none. "
            f"{received(test_examples=0)}"
        )
    assignment = _fold_assignment(labels, config.folds, config.seed)
    write_json(out / "config.json", {**asdict(config), "models": list(config.models)})
    write_json(
        out / "splits.json",
        {
            "kind": splits.kind,
            "class_names": list(splits.class_names),
            "source": splits.train.source,
            "skipped": [asdict(s) for s in splits.skipped],
            **{
                name: {"items": list(part.items), "labels": list(part.labels)}
                for name, part in splits.named().items()
            },
            "folds": {
                "items": list(pooled.items),
                "labels": labels.tolist(),
                "fold": assignment.tolist(),
            },
        },
    )
    from graft.training.ensemble_steps import finish, fit_ensemble

    fitted = fit_ensemble(members, splits, pooled, assignment, config, progress)
    return finish(out, config, members, splits, fitted)
