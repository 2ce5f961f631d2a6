"""The stages of a run, composed by ``graft.train``: features -> head -> fine-tune -> choose ->
save -> report, once on a train/validation/test split or once per fold (``folds``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, LabeledData, Skipped
from graft.training.loop import write_json
from graft.training.run import FEATURE_TASKS, Run, TrainConfig, _module_name, _onehot

Progress = Callable[[str, int, int], None] | None


class FeatureStore:
    """Backbone features of examples, computed once (and cached on disk by the extractor)."""

    def __init__(self, extractor) -> None:
        self.extractor = extractor
        self._rows: dict[str, np.ndarray] = {}
        self.seconds = 0.0

    def __call__(self, items, progress: Callable[[int], None] | None = None) -> np.ndarray:
        missing = list(dict.fromkeys(i for i in items if i not in self._rows))
        if missing:
            start = time.perf_counter()
            for item, row in zip(missing, self.extractor(missing, progress=progress), strict=True):
                self._rows[item] = row
            self.seconds += time.perf_counter() - start
        elif progress:
            progress(len(items))
        dim = self.extractor.output_shape
        return np.stack([self._rows[i] for i in items]) if items else np.zeros((0, *dim))

    def fill(self, items, progress: Progress = None) -> None:
        """Computes the features of ``items`` (once), reporting ``("features", done, total)``."""
        done = [0]

        def count(k: int) -> None:
            done[0] += k
            if progress:
                progress("features", done[0], len(items))

        self(items, progress=count)


@dataclass
class SplitFit:
    """What fitting one train/validation/test split produced."""

    backbone: object
    head: object
    probs: np.ndarray  # on the test split
    history: dict
    selection: dict
    timings: dict = field(default_factory=dict)


def _labels(splits: DataSplits) -> dict[str, np.ndarray]:
    return {name: np.asarray(part.labels, dtype=int) for name, part in splits.named().items()}


def _pruning(config: TrainConfig, epochs: int, steps_per_epoch: int):
    """The stage's pruning (None without ``prune_sparsity``): polynomial decay from
    ``prune_initial`` to ``prune_sparsity``, reached after 70% of the epochs; the remaining
    epochs train at the final sparsity and only they can give the kept weights."""
    if not config.prune_sparsity:
        return None
    from graft.training.pruning import PolynomialDecay, Pruning

    end_epoch = max(1, -(-epochs * 7 // 10))
    schedule = PolynomialDecay(
        min(config.prune_initial, config.prune_sparsity),
        config.prune_sparsity,
        begin_step=0,
        end_step=end_epoch * steps_per_epoch,
    )
    return Pruning(schedule, frequency=max(1, min(100, steps_per_epoch // 2)))


def fit_head(
    run_dir: Path,
    config: TrainConfig,
    features,
    labels,
    n: int,
    refit_on: str,
    report,
    fixed: tuple[float, str] | None = None,
):
    """The head on cached features: convex (default) or SGD (hidden layers, pruning).

    ``fixed``: the convex head's ``(lam, transform)``, to refit without choosing them again.
    """
    from graft.training.head import fit_convex, fit_sgd, resolve_kind
    from graft.training.linear import class_weights

    kind = resolve_kind(config.head, config.hidden_units, config.prune_sparsity)
    if kind == "convex":
        report("head", 0, 1)
        result = fit_convex(
            features,
            labels,
            n,
            dropout=config.dropout,
            label_smoothing=config.label_smoothing,
            class_weight=config.class_weight,
            refit_on=refit_on,
            seed=config.seed,
            lam=fixed[0] if fixed else config.lam,
            transform=fixed[1] if fixed else config.transform,
        )
        report("head", 1, 1)
        return result
    onehot = {name: _onehot(v, n) for name, v in labels.items()}
    fine_tuning = bool(config.fine_tune_blocks or config.fine_tune_layers)
    return fit_sgd(
        features,
        onehot,
        run_dir=run_dir,
        config=config,
        resume=(run_dir / "state.json").is_file(),
        on_epoch=lambda e, logs: report("head", e + 1, config.epochs),
        pruning_for=(lambda e, s: None) if fine_tuning else (lambda e, s: _pruning(config, e, s)),
        class_weights=class_weights(labels["train"], n, config.class_weight),
    )


def _pseudo_labels(config, features, labels, x_unlabeled, n, head) -> tuple[dict, dict, dict]:
    """Adds confident pseudo-labels to the training features if they raise validation
    accuracy; returns ``(features, labels, summary)``."""
    from graft.training.pseudo import pseudo_label

    result = pseudo_label(
        features["train"],
        labels["train"],
        features["val"],
        labels["val"],
        x_unlabeled,
        n,
        lam=head.info["lam"],
        transform=head.info["transform"],
        threshold=config.pseudo_threshold,
        rounds=config.pseudo_rounds,
        class_weight=config.class_weight,
    )
    if result.kept:
        features = {
            **features,
            "train": np.concatenate([features["train"], x_unlabeled[result.indices]]),
        }
        labels = {**labels, "train": np.concatenate([labels["train"], result.labels])}
    return features, labels, result.summary()


def keep_fine_tuned(
    tuned_val: float, head_val: float, n_val: int, pruned: bool = False
) -> tuple[str, str, float]:
    """Whether the fine-tuned network replaces the head: ``(kept, reason, margin)``.

    The fine-tuned score is its best epoch's, picked on the same validation split, so it is
    optimistic; it wins only with a lead larger than the chance variation of the head's score
    (one binomial standard error; on the bench a 2-example lead on 179 lost 6 points on test).
    A pruned run keeps the fine-tuned network (only it is pruned).

    Example:
        >>> keep_fine_tuned(0.905, 0.894, 179)[0], keep_fine_tuned(0.95, 0.894, 179)[0]
        ('head', 'fine-tuned')
    """
    from graft.evaluation.metrics import standard_error

    margin = standard_error(max(head_val, 0.0), n_val)
    if pruned:
        return (
            "fine-tuned",
            f"pruning was asked for and only the fine-tuned model is pruned (validation "
            f"accuracy {tuned_val:.4f}; the unpruned head alone had {head_val:.4f})",
            margin,
        )
    if tuned_val > head_val + margin:
        return (
            "fine-tuned",
            f"fine-tuning reached {tuned_val:.4f} validation accuracy, above the head alone "
            f"({head_val:.4f}) by more than its standard error ({margin:.4f} on {n_val} "
            "examples)",
            margin,
        )
    lead = "not above" if tuned_val <= head_val else "within the standard error of"
    return (
        "head",
        f"fine-tuning reached {tuned_val:.4f} validation accuracy, {lead} the head alone "
        f"({head_val:.4f}; standard error {margin:.4f} on {n_val} examples): the fine-tuned "
        "weights were discarded",
        margin,
    )


def fit_split(
    run_dir: Path,
    config: TrainConfig,
    splits: DataSplits,
    store: FeatureStore,
    backbone_dir: Path,
    progress: Progress,
    unlabeled: tuple[str, ...] = (),
) -> SplitFit | None:
    """Head, optional pseudo-labels and fine-tuning, and the choice between them, on one
    split (``None`` on a distributed run's worker other than the chief, after fine-tuning)."""
    from graft.module.io import load
    from graft.training.finetune import fine_tune

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    run_dir.mkdir(parents=True, exist_ok=True)
    loaded = load(backbone_dir)
    backbone, groups = loaded.model, loaded.manifest.groups
    n = len(splits.class_names)
    labels = _labels(splits)
    features = {name: store(part.items) for name, part in splits.named().items()}
    fine_tuning = bool(config.fine_tune_blocks or config.fine_tune_layers) and len(labels["val"])
    timings: dict[str, float] = {}
    start = time.perf_counter()
    head = fit_head(
        run_dir, config, features, labels, n, "train" if fine_tuning else "train+val", report
    )
    selection = {"head": {"kind": head.kind, "val_accuracy": head.val_accuracy, **head.info}}
    if unlabeled:
        features, labels, selection["pseudo"] = _pseudo_labels(
            config, features, labels, store(list(unlabeled)), n, head
        )
        if selection["pseudo"]["kept"]:  # the head again, with them (same strength)
            fixed = (head.info["lam"], head.info["transform"])
            head = fit_head(
                run_dir, config, features, labels, n, head.info["fitted_on"], report, fixed
            )
            selection["head"]["val_accuracy"] = head.val_accuracy
    timings["head_s"] = time.perf_counter() - start
    history = {"head": head.history} if head.history else {}
    final_head = head.model
    if fine_tuning:
        start = time.perf_counter()
        head_weights = [w.copy() for w in head.model.get_weights()]
        backbone_weights = [w.copy() for w in backbone.get_weights()]
        tuned = fine_tune(
            run_dir=run_dir,
            config=config,
            splits=splits,
            backbone_dir=backbone_dir,
            backbone=backbone,
            groups=groups,
            head=head.model,
            onehot={name: _onehot(v, n) for name, v in labels.items()},
            resume=(run_dir / "state.json").is_file(),
            on_epoch=lambda e, logs: report("finetune", e + 1, config.fine_tune_epochs),
            pruning_for=lambda e, s: _pruning(config, e, s),
        )
        timings["finetune_s"] = time.perf_counter() - start
        from graft.training import distributed

        if (cluster := distributed.active()) is not None and not cluster.is_chief:
            return None  # the chief evaluates and writes
        history["finetune"] = tuned.history
        selection["finetune"] = {"val_accuracy": tuned.val_accuracy, **tuned.info}
        head_val = head.val_accuracy if head.val_accuracy is not None else -1.0
        kept, reason, margin = keep_fine_tuned(
            tuned.val_accuracy, head_val, len(labels["val"]), bool(config.prune_sparsity)
        )
        selection.update(kept=kept, reason=reason)
        selection["finetune"]["margin"] = margin
        if kept == "head":
            backbone.set_weights(backbone_weights)
            head.model.set_weights(head_weights)
            if head.kind == "convex":  # refit on train+val, as without fine-tuning
                fixed = (head.info["lam"], head.info["transform"])
                final_head = fit_head(
                    run_dir, config, features, labels, n, "train+val", lambda *a: None, fixed
                ).model
    else:
        selection["kept"] = "head"
        selection["reason"] = "no fine-tuning asked for"
    probs = (
        np.asarray(final_head.predict(features["test"], verbose=0)) if len(labels["test"]) else None
    )
    if selection["kept"] == "fine-tuned" and len(labels["test"]):
        from graft.inference import predict_probs
        from graft.training.assemble import serving_model

        size = tuple(loaded.manifest.inputs.size) if splits.kind == "image" else None
        model = serving_model(backbone, final_head, splits.kind, size)
        probs = predict_probs(model, splits.kind, splits.test.items)
    return SplitFit(
        backbone=backbone,
        head=final_head,
        probs=probs if probs is not None else np.zeros((0, n), np.float32),
        history=history,
        selection=selection,
        timings=timings,
    )


def _describe_selection(selection: dict) -> dict[str, str]:
    """Report rows: how the head was fitted and what was kept."""
    head = selection["head"]
    rows = {}
    if head["kind"] == "convex":
        where = head["selection"]
        where = "the caller (lam, transform)" if where == "given" else where
        heldout = head.get("heldout_accuracy")
        rows["head"] = (
            f"convex: multinomial logistic regression (L-BFGS to convergence), "
            f"{'power-normalised' if head['transform'] == 'power' else 'standardised'} "
            f"features, L2 strength {head['lam']:.2g} (C={head['C']:.3g}) chosen by {where}"
            + (f" (held-out accuracy {heldout:.4f})" if heldout is not None else "")
            + (", balanced class weights" if head["class_weighted"] else "")
        )
    else:
        rows["head"] = (
            f"SGD: {head['solver']}, {head['epochs']} epochs, best epoch {head['best_epoch']}"
            + (f", hidden layer of {head['hidden_units']}" if head["hidden_units"] else "")
        )
    if "pseudo" in selection:
        p = selection["pseudo"]
        rows["pseudo-labels"] = (
            f"{p['selected']} of {p['unlabeled']} unlabelled examples reached p >= "
            f"{p['threshold']:g} (per class {p['selected_per_class']}); validation accuracy "
            f"{p['val_accuracy_before']:.4f} without, {p['val_accuracy_after']:.4f} with: "
            + ("kept" if p["kept"] else "not kept (no gain)")
        )
    if "finetune" in selection:
        tune = selection["finetune"]
        rows["fine-tuning"] = (
            f"{tune['path']}; starts at {tune['start_val_accuracy']:.4f} validation accuracy, "
            f"best {tune['val_accuracy']:.4f} (epoch {tune['best_epoch']}); {tune['schedule']}"
        )
    rows["kept"] = f"{selection['kept']}: {selection['reason']}"
    return rows


def fit_all(
    out: Path,
    config: TrainConfig,
    splits: DataSplits,
    backbone_dir: Path,
    skipped: tuple[Skipped, ...],
    progress: Progress,
) -> Run | None:
    """One split (train/val/test), or ``config.folds`` folds plus a final fit on all data
    (``None`` on a distributed run's worker other than the chief)."""
    from graft.training.features import FeatureExtractor

    extractor = FeatureExtractor(backbone_dir, runtime=config.runtime)
    store = FeatureStore(extractor)
    every = [i for part in splits.named().values() for i in part.items]
    unlabeled: tuple[str, ...] = ()
    if config.unlabeled:
        from graft.data.unlabeled import read_unlabeled

        unlabeled, _ = read_unlabeled(config.unlabeled, splits.kind, config.unlabeled_column)
        every += list(unlabeled)
    store.fill(every, progress)
    timings = {"features_s": store.seconds, "features_runtime": extractor.runtime}
    if config.folds:
        return _fit_folds(
            out, config, splits, backbone_dir, skipped, progress, store, timings, unlabeled
        )
    fit = fit_split(out, config, splits, store, backbone_dir, progress, unlabeled)
    if fit is None:  # a worker of a distributed run, not the chief
        return None
    timings.update(fit.timings)
    return _finish(out, config, splits, backbone_dir, skipped, fit, timings, extractor)


def _finish(
    out: Path,
    config: TrainConfig,
    splits: DataSplits,
    backbone_dir: Path,
    skipped,
    fit: SplitFit,
    timings: dict,
    extractor,
    folds: dict | None = None,
    evaluation_items=None,
) -> Run:
    """Writes the report, the module and run.json of a finished run."""
    from graft.evaluation.report import write_report
    from graft.explanation.report import explain_misclassified
    from graft.module.io import save, verify
    from graft.module.manifest import Manifest, OutputSpec, Provenance
    from graft.training.assemble import serving_model

    bm = verify(backbone_dir)
    kind = FEATURE_TASKS[bm.task]
    size = tuple(bm.inputs.size) if kind == "image" else None
    names = splits.class_names
    n = len(names)
    items, y_true, probs = evaluation_items or (splits.test.items, splits.test.labels, fit.probs)
    summary = {
        "backbone": f"{config.model} ({bm.params:,} parameters)",
        "data": f"{splits.train.source}: {len(splits.train)} train, {len(splits.val)} "
        f"validation, {len(splits.test)} test, {n} classes",
        "settings": ", ".join(f"{k}={v}" for k, v in asdict(config).items() if k != "model"),
        "feature extraction": f"{timings['features_s']:.1f}s ({extractor.runtime})",
        "head training": f"{timings.get('head_s', 0.0):.1f}s",
        **_describe_selection(fit.selection),
    }
    if folds:
        summary["data"] = (
            f"{splits.train.source}: {len(items)} examples in {config.folds} folds; the module "
            f"was then trained on {len(splits.train)} train + {len(splits.val)} validation"
        )
    if "finetune_s" in timings:
        summary["fine-tuning"] += f"; {timings['finetune_s']:.1f}s"
    pruned = {}
    if config.prune_sparsity:
        from graft.training.pruning import sparsity_by_layer

        fine_tuning = bool(config.fine_tune_blocks or config.fine_tune_layers)
        pruned = sparsity_by_layer(fit.head, minimum=0.01)
        if fine_tuning:
            pruned.update(sparsity_by_layer(fit.backbone, minimum=0.01))
        initial = min(config.prune_initial, config.prune_sparsity)
        summary["pruning"] = (
            f"magnitude, polynomial decay {initial:.0%} -> {config.prune_sparsity:.0%} "
            f"during {'fine-tuning' if fine_tuning else 'head training'}; "
            + ", ".join(f"{k} {v['sparsity']:.1%} of {v['params']:,}" for k, v in pruned.items())
        )
    model = serving_model(fit.backbone, fit.head, kind, size)
    started = time.perf_counter()
    explanations = explain_misclassified(model, kind, size, items, y_true, probs, names)
    timings["explain_s"] = round(time.perf_counter() - started, 3)
    evaluation = write_report(
        out,
        kind=kind,
        items=items,
        y_true=y_true,
        probs=probs,
        class_names=names,
        title=f"graft run {out.name}",
        history=fit.history,
        skipped=skipped,
        summary=summary,
        folds=folds,
        selection=fit.selection,
        explanations=explanations,
    )
    metrics = evaluation.metrics
    headline = {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
    headline.update({f"test_top{k}_accuracy": v for k, v in metrics["top_k_accuracy"].items()})
    if folds:
        headline.update(
            {"cv_accuracy_mean": folds["accuracy_mean"], "cv_accuracy_sd": folds["accuracy_sd"]}
        )
    manifest = Manifest(
        name=_module_name(out),
        task=f"{kind}-classifier",
        description=f"{n}-class {kind} classifier trained by graft on {config.model}",
        inputs=classifier_inputs(kind, size, bm),
        outputs=OutputSpec(kind="probabilities", dim=n),
        labels=names,
        license=bm.license,
        provenance=Provenance(
            source=splits.describe("graft train"),
            source_sha256=splits.fingerprint(),
            converted_from=f"{config.model} (model.keras sha256 "
            f"{bm.files['model.keras'].sha256[:12]})",
        ),
        metrics=headline,
        tags=("graft-train", kind),
    )
    save(model, out / "module", manifest, overwrite=True)
    run_json = {"metrics": headline, "timings": timings, "selection": fit.selection}
    if folds:
        run_json["folds"] = folds
    if pruned:
        run_json["sparsity"] = pruned
    write_json(out / "run.json", run_json)
    return Run(
        directory=out,
        config=config,
        class_names=names,
        kind=kind,
        metrics=metrics,
        history=fit.history,
        timings=timings,
        skipped=skipped,
        selection=fit.selection,
        folds=folds,
    )


def classifier_inputs(kind: str, size, backbone_manifest):
    """The ``InputSpec`` of a classifier module trained on ``backbone_manifest``: encoded image
    files (decoded inside), or the backbone's texts."""
    from graft.module.manifest import InputSpec

    return InputSpec(
        kind=kind,
        size=size,
        encoded=kind == "image",
        normalization=(
            "encoded JPEG/PNG/GIF/BMP bytes; decoded, resized, normalised inside"
            if kind == "image"
            else backbone_manifest.inputs.normalization
        ),
        max_length=backbone_manifest.inputs.max_length,
    )


def assign_folds(splits: DataSplits, config: TrainConfig) -> tuple[DataSplits, dict]:
    """Pools every example, gives each a stratified fold, and draws the module's own
    train/validation split (no test part: the folds test every example).

    Returns:
        ``(final_splits, record)`` where ``record`` (stored in ``splits.json``) holds the pooled
        items, labels and fold of each.

    Raises:
        InvalidArgumentError: a class has fewer examples than there are folds.
    """
    from graft.data.dataset import stratified_split
    from graft.errors import InvalidArgumentError, received
    from graft.training.linear import _fold_assignment

    everything = _pool(splits)
    labels = np.asarray(everything.labels)
    smallest = int(np.bincount(labels, minlength=len(everything.class_names)).min())
    if smallest < config.folds:
        raise InvalidArgumentError(
            f"{config.folds}-fold cross-validation needs at least {config.folds} examples of "
            f"every class; the smallest class has {smallest}. Lower --folds. "
            f"{received(folds=config.folds)}"
        )
    assignment = _fold_assignment(labels, config.folds, config.seed)
    final = stratified_split(everything, config.val_fraction, 0.0, config.seed)
    record = {
        "items": list(everything.items),
        "labels": list(everything.labels),
        "fold": [int(f) for f in assignment],
    }
    return DataSplits(final.train, final.val, final.test, skipped=splits.skipped), record


def _pool(splits: DataSplits, names: tuple[str, ...] = ("train", "val", "test")) -> LabeledData:
    """The examples of the ``names`` splits as one ``LabeledData``."""
    parts = [splits.named()[name] for name in names]
    return LabeledData(
        kind=splits.kind,
        items=tuple(i for p in parts for i in p.items),
        labels=tuple(label for p in parts for label in p.labels),
        class_names=splits.class_names,
        source=splits.train.source,
    )


def fold_splits(everything: LabeledData, assignment, val_fraction: float, seed: int):
    """Fold i's splits: its examples are the test set; validation comes from the rest."""
    from graft.data.dataset import stratified_split

    assignment = np.asarray(assignment)
    for f in range(int(assignment.max()) + 1):
        rest = everything.subset(np.flatnonzero(assignment != f))
        share = val_fraction * len(everything) / len(rest)
        inner = stratified_split(rest, share, 0.0, seed + f + 1)
        yield DataSplits(inner.train, inner.val, everything.subset(np.flatnonzero(assignment == f)))


def _fit_folds(
    out, config, splits, backbone_dir, skipped, progress, store, timings, unlabeled=()
) -> Run:
    """K folds (out-of-fold predictions for every example), then the module on all data."""
    from graft.evaluation.metrics import compute_metrics

    record = json.loads((out / "splits.json").read_text())["folds"]
    everything = LabeledData(
        kind=splits.kind,
        items=tuple(record["items"]),
        labels=tuple(record["labels"]),
        class_names=splits.class_names,
        source=splits.train.source,
    )
    store(list(everything.items))
    per_fold, items, y_true, probs = [], [], [], []
    folds = fold_splits(everything, record["fold"], config.val_fraction, config.seed)
    for f, fold in enumerate(folds):
        fold_dir = out / "folds" / str(f + 1)
        done_file = fold_dir / "fold.json"
        if done_file.is_file():
            result = json.loads(done_file.read_text())
        else:
            fit = fit_split(fold_dir, config, fold, store, backbone_dir, progress, unlabeled)
            metrics = compute_metrics(fold.test.labels, fit.probs, splits.class_names)
            result = {
                "fold": f + 1,
                "train": len(fold.train),
                "val": len(fold.val),
                "test": len(fold.test),
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "kept": fit.selection["kept"],
                "timings": fit.timings,
                "probs": fit.probs.tolist(),
            }
            write_json(done_file, result)
        if progress:
            progress("folds", f + 1, config.folds)
        per_fold.append({k: v for k, v in result.items() if k != "probs"})
        items += fold.test.items
        y_true += fold.test.labels
        probs.append(np.asarray(result["probs"], np.float32))
    accuracies = np.array([r["accuracy"] for r in per_fold])
    folds = {
        "k": config.folds,
        "accuracy_mean": float(accuracies.mean()),
        "accuracy_sd": float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0,
        "macro_f1_mean": float(np.mean([r["macro_f1"] for r in per_fold])),
        "per_fold": per_fold,
    }
    # The module: every example, the validation split for the choices, no test split.
    fit = fit_split(out / "final", config, splits, store, backbone_dir, progress, unlabeled)
    timings.update(fit.timings)
    return _finish(
        out,
        config,
        splits,
        backbone_dir,
        skipped,
        fit,
        timings,
        store.extractor,
        folds=folds,
        evaluation_items=(tuple(items), tuple(y_true), np.concatenate(probs)),
    )


def load_run(directory: str | Path) -> dict:
    """Reads ``run.json`` of a finished run."""
    return json.loads((Path(directory) / "run.json").read_text())
