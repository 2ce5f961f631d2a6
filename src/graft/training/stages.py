"""The two training stages and the final module: called by ``graft.train``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, Skipped
from graft.training.loop import run_stage, write_json
from graft.training.run import FEATURE_TASKS, Run, TrainConfig, _module_name, _onehot


def fit_all(
    out: Path,
    config: TrainConfig,
    splits: DataSplits,
    backbone_dir: Path,
    skipped: tuple[Skipped, ...],
    progress: Callable[[str, int, int], None] | None,
) -> Run:
    from graft.data.images import read_inputs
    from graft.evaluation.report import write_report
    from graft.models.transfer import set_trainable, set_trainable_layers
    from graft.module.io import load, save
    from graft.module.manifest import InputSpec, Manifest, OutputSpec, Provenance
    from graft.training.assemble import serving_model, tuning_model
    from graft.training.features import FeatureExtractor
    from graft.training.head import build_head, compile_classifier
    from graft.training.pipeline import make_dataset

    def report(stage: str, done: int, total: int) -> None:
        if progress:
            progress(stage, done, total)

    timings: dict[str, float] = {}
    names = splits.class_names
    n = len(names)
    backbone_loaded = load(backbone_dir)
    bm = backbone_loaded.manifest
    kind = FEATURE_TASKS[bm.task]
    size = tuple(bm.inputs.size) if kind == "image" else None

    # Stage 1: features once, then the head.
    start = time.perf_counter()
    extractor = FeatureExtractor(backbone_dir, runtime=config.runtime, model=backbone_loaded.model)
    total = len(splits.train) + len(splits.val) + len(splits.test)
    done = [0]

    def count(k: int) -> None:
        done[0] += k
        report("features", done[0], total)

    features = {
        name: extractor(part.items, progress=count) for name, part in splits.named().items()
    }
    timings["features_s"] = time.perf_counter() - start
    timings["features_runtime"] = extractor.runtime
    y = {name: _onehot(part.labels, n) for name, part in splits.named().items()}
    start = time.perf_counter()
    import keras

    keras.utils.set_random_seed(config.seed)  # the head's initial weights
    head = build_head(
        bm.outputs.dim,
        n,
        dropout=config.dropout,
        hidden_units=config.hidden_units,
        learning_rate=config.lr,
        label_smoothing=config.label_smoothing,
    )

    fine_tuning = bool(config.fine_tune_blocks or config.fine_tune_layers)
    steps = -(-len(y["train"]) // config.batch_size)
    head_pruning = None if fine_tuning else _pruning(config, config.epochs, steps)

    def head_epoch(epoch: int):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(y["train"]))
        return features["train"][order], y["train"][order], config.batch_size

    head, head_state = run_stage(
        stage="head",
        model=head,
        run_dir=out,
        epochs=config.epochs,
        seed=config.seed,
        train_data=head_epoch,
        validation_data=(features["val"], y["val"]),
        resume=(out / "state.json").is_file(),
        on_epoch=lambda e, logs: report("head", e + 1, config.epochs),
        pruning=head_pruning,
        steps_per_epoch=steps,
    )
    history = {"head": head_state.history}
    timings["head_s"] = time.perf_counter() - start

    # Stage 2 (optional): fine-tune the top blocks end to end.
    backbone = backbone_loaded.model
    if fine_tuning:
        start = time.perf_counter()
        if config.fine_tune_blocks:
            set_trainable(backbone, bm.groups, top_groups=config.fine_tune_blocks)
        else:
            set_trainable_layers(backbone, config.fine_tune_layers)
        tune = tuning_model(backbone, head, kind, size)
        compile_classifier(tune, config.fine_tune_lr, config.label_smoothing)
        inputs = {name: read_inputs(kind, part.items) for name, part in splits.named().items()}

        def tune_epoch(epoch: int):
            augment = config.seed * 31 + epoch if config.augment and kind == "image" else None
            return (
                make_dataset(
                    kind,
                    inputs["train"],
                    y["train"],
                    config.batch_size,
                    size=size,
                    shuffle_seed=config.seed * 7919 + epoch,
                    augment_seed=augment,
                ),
            )

        val_ds = make_dataset(kind, inputs["val"], y["val"], config.batch_size, size=size)
        tune, tune_state = run_stage(
            stage="finetune",
            model=tune,
            run_dir=out,
            epochs=config.fine_tune_epochs,
            seed=config.seed,
            train_data=tune_epoch,
            validation_data=val_ds,
            patience=config.patience,
            resume=(out / "state.json").is_file(),
            on_epoch=lambda e, logs: report("finetune", e + 1, config.fine_tune_epochs),
            pruning=_pruning(config, config.fine_tune_epochs, steps),
            steps_per_epoch=steps,
        )
        backbone, head = tune.get_layer(backbone.name), tune.get_layer("head")
        history["finetune"] = tune_state.history
        test_ds = make_dataset(kind, inputs["test"], y["test"], config.batch_size, size=size)
        probs = np.asarray(tune.predict(test_ds, verbose=0))
        timings["finetune_s"] = time.perf_counter() - start
    else:
        probs = np.asarray(head.predict(features["test"], verbose=0))

    summary = {
        "backbone": f"{config.model} ({bm.params:,} parameters)",
        "data": f"{splits.train.source}: {len(splits.train)} train, {len(splits.val)} "
        f"validation, {len(splits.test)} test, {n} classes",
        "settings": ", ".join(f"{k}={v}" for k, v in asdict(config).items() if k != "model"),
        "feature extraction": f"{timings['features_s']:.1f}s ({extractor.runtime})",
        "head training": f"{timings['head_s']:.1f}s",
    }
    if "finetune_s" in timings:
        summary["fine-tuning"] = f"{timings['finetune_s']:.1f}s"
    pruned = {}
    if config.prune_sparsity:
        from graft.training.pruning import sparsity_by_layer

        pruned = sparsity_by_layer(head, minimum=0.01)
        if fine_tuning:
            pruned.update(sparsity_by_layer(backbone, minimum=0.01))
        initial = min(config.prune_initial, config.prune_sparsity)
        summary["pruning"] = (
            f"magnitude, polynomial decay {initial:.0%} -> {config.prune_sparsity:.0%} "
            f"during {'fine-tuning' if fine_tuning else 'head training'}; "
            + ", ".join(f"{k} {v['sparsity']:.1%} of {v['params']:,}" for k, v in pruned.items())
        )
    evaluation = write_report(
        out,
        kind=kind,
        items=splits.test.items,
        y_true=splits.test.labels,
        probs=probs,
        class_names=names,
        title=f"graft run {out.name}",
        history=history,
        skipped=skipped,
        summary=summary,
    )
    metrics = evaluation.metrics
    headline = {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
    headline.update({f"test_top{k}_accuracy": v for k, v in metrics["top_k_accuracy"].items()})
    manifest = Manifest(
        name=_module_name(out),
        task=f"{kind}-classifier",
        description=f"{n}-class {kind} classifier trained by graft on {config.model}",
        inputs=InputSpec(
            kind=kind,
            size=size,
            encoded=kind == "image",
            normalization=(
                "encoded JPEG/PNG/GIF/BMP bytes; decoded, resized, normalised inside"
                if kind == "image"
                else bm.inputs.normalization
            ),
            max_length=bm.inputs.max_length,
        ),
        outputs=OutputSpec(kind="probabilities", dim=n),
        labels=names,
        license=bm.license,
        provenance=Provenance(
            source=f"graft train on {splits.train.source}",
            converted_from=f"{config.model} (model.keras sha256 "
            f"{bm.files['model.keras'].sha256[:12]})",
        ),
        metrics=headline,
        tags=("graft-train", kind),
    )
    save(serving_model(backbone, head, kind, size), out / "module", manifest, overwrite=True)
    run_json = {"metrics": headline, "timings": timings}
    if pruned:
        run_json["sparsity"] = pruned
    write_json(out / "run.json", run_json)
    return Run(
        directory=out,
        config=config,
        class_names=names,
        kind=kind,
        metrics=metrics,
        history=history,
        timings=timings,
        skipped=skipped,
    )


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


def load_run(directory: str | Path) -> dict:
    """Reads ``run.json`` of a finished run."""
    return json.loads((Path(directory) / "run.json").read_text())
