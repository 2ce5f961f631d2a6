"""Fine-tuning the top blocks of the backbone, starting from the trained head.

The stage unfreezes the top blocks (BatchNorm stays in inference mode), keeps the head's
weights, warms the learning rate up from zero and decays it on a cosine, and keeps its best
epoch by validation accuracy. Its starting validation accuracy is measured before the first
step, so a run shows that fine-tuning starts where the head ended.

Without augmentation every epoch feeds the same images to the frozen bottom of the network, so
its output (the activations at the block boundary) is computed once and cached like features,
and an epoch runs only the unfrozen blocks and the head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits


@dataclass
class FineTuneResult:
    """The fine-tuned backbone and head, and how they got there."""

    backbone: object
    head: object
    val_accuracy: float
    start_val_accuracy: float
    history: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)


def boundary_split(backbone, first_layer: str):
    """``(bottom, top)``: the backbone cut below ``first_layer`` (layers are shared), or
    ``None`` when the cut is not a single tensor every upper layer depends on (a skip
    connection crosses it, or the layer is nested)."""
    import keras

    try:
        layer = backbone.get_layer(first_layer)
        boundary = layer.input
        if not isinstance(boundary, keras.KerasTensor):
            return None
        bottom = keras.Model(backbone.input, boundary, name="frozen_bottom")
        top = keras.Model(boundary, backbone.output, name="tuned_top")
    except (ValueError, KeyError, AttributeError, TypeError):
        return None
    return bottom, top


def _copy_weights(source, target) -> None:
    """Copies weights layer by layer, matched by name (``source`` may be a reloaded copy)."""
    by_name = {
        layer.name: layer for layer in source._flatten_layers(include_self=False) if layer.weights
    }
    for layer in target._flatten_layers(include_self=False):
        if layer.weights and layer.name in by_name and by_name[layer.name] is not layer:
            layer.set_weights(by_name[layer.name].get_weights())


def _accuracy(model, data, labels: np.ndarray) -> float:
    probs = np.asarray(model.predict(data, verbose=0))
    return float((probs.argmax(1) == labels).mean()) if len(labels) else 0.0


def fine_tune(
    *,
    run_dir: Path,
    config,
    splits: DataSplits,
    backbone_dir: Path,
    backbone,
    groups,
    head,
    onehot: dict[str, np.ndarray],
    resume: bool,
    on_epoch: Callable[[int, dict], None] | None,
    pruning_for: Callable[[int, int], object],
) -> FineTuneResult:
    """Trains the top blocks and the head together; returns them at their best epoch.

    ``backbone`` and ``head`` are changed in place (their best weights), so the caller can
    save them or compare them with the head alone.
    """
    import keras

    from graft._engines import plan_runtime, visible_devices
    from graft.data.images import read_inputs
    from graft.models.transfer import set_trainable, set_trainable_layers
    from graft.training import distributed
    from graft.training.assemble import tuning_model
    from graft.training.features import ActivationExtractor
    from graft.training.head import compile_classifier, mixed_precision, warmup_cosine
    from graft.training.loop import run_stage
    from graft.training.pipeline import make_dataset

    cluster = distributed.active()
    batch_size = config.batch_size
    global_train = len(splits.train)
    if cluster is not None:  # this worker's shard of every split, a share of every batch
        splits = shard_splits(splits, cluster)
        onehot = {k: v[cluster.rank :: cluster.workers] for k, v in onehot.items()}
        batch_size = config.batch_size // cluster.workers
    kind = splits.kind
    size = tuple(backbone.input.shape[1:3]) if kind == "image" else None
    if config.fine_tune_blocks:
        set_trainable(backbone, groups, top_groups=config.fine_tune_blocks)
        unfrozen = groups[len(groups) - config.fine_tune_blocks :]
        first = unfrozen[0].layers[0] if unfrozen and "/" not in unfrozen[0].layers[0] else None
    else:
        set_trainable_layers(backbone, config.fine_tune_layers)
        first = None
    labels = {name: part.labels for name, part in splits.named().items()}
    labels = {name: np.asarray(v, dtype=int) for name, v in labels.items()}
    cut = None
    if config.augment == "none" and kind == "image" and first is not None:
        cut = boundary_split(backbone, first)
    if cluster is not None:
        steps = distributed.global_steps(global_train, config.batch_size, cluster)
    else:
        steps = -(-len(onehot["train"]) // config.batch_size)
    schedule = warmup_cosine(config.fine_tune_lr, steps * config.fine_tune_epochs)
    info = {
        "blocks": config.fine_tune_blocks,
        "layers": config.fine_tune_layers,
        "augment": config.augment,
        "schedule": f"linear warm-up over 10% of the steps to {config.fine_tune_lr:g}, then "
        "cosine decay",
    }
    if cut is not None:
        bottom, top = cut
        extractor = ActivationExtractor(backbone_dir, bottom, first, runtime=config.runtime)
        acts = {name: extractor(part.items) for name, part in splits.named().items()}
        inputs = keras.Input(top.input.shape[1:], name="boundary")
        tune = keras.Model(inputs, head(top(inputs)), name="classifier_top")
        info["path"] = f"cached activations below {first} ({extractor.runtime})"

        def epoch_data(epoch: int):
            order = np.random.default_rng([config.seed, 7919, epoch]).permutation(
                len(acts["train"])
            )
            return acts["train"][order], onehot["train"][order], batch_size

        validation = (acts["val"], onehot["val"])
        val_input = acts["val"]
    elif kind == "text":  # token arrays batched by length (no 256-token padding)
        from graft.models.text import TEXT_INPUTS, TextEngine
        from graft.training import text_batches

        engine = TextEngine(backbone)
        tokens = {name: engine.tokenize(part.items) for name, part in splits.named().items()}
        ids = text_batches.special_ids(engine.preprocessor)
        inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in TEXT_INPUTS}
        tune = keras.Model(inputs, head(engine.features(inputs)), name="classifier_tokens")
        info["path"] = "token batches cut to their longest text" + (
            f", '{config.augment}' token augmentation (deletion/masking/swaps)"
            if config.augment != "none"
            else ""
        )

        def epoch_data(epoch: int):
            return (
                text_batches.dataset(
                    tokens["train"],
                    onehot["train"],
                    batch_size,
                    seed=config.seed * 7919 + epoch,
                    augment=config.augment,
                    ids=ids,
                ),
            )

        validation = text_batches.dataset(tokens["val"], onehot["val"], batch_size)
        val_input = validation.map(lambda x, y: x)
        labels["val"] = np.concatenate([y.numpy().argmax(1) for _, y in validation])
    else:
        tune = tuning_model(backbone, head, kind, size)
        raw = {name: read_inputs(kind, part.items) for name, part in splits.named().items()}
        info["path"] = "end to end" + (f" with '{config.augment}' augmentation" * (kind == "image"))

        def epoch_data(epoch: int):
            augment = config.seed * 31 + epoch if config.augment != "none" else None
            return (
                make_dataset(
                    kind,
                    raw["train"],
                    onehot["train"],
                    batch_size,
                    size=size,
                    shuffle_seed=config.seed * 7919 + epoch,
                    augment_seed=augment,
                    augment=config.augment,
                ),
            )

        validation = make_dataset(kind, raw["val"], onehot["val"], batch_size, size=size)
        val_input = validation.map(lambda x, y: x)
    plan = plan_runtime(config.runtime, kind, visible_devices())
    info["compute"] = plan.reason
    stage = dict(
        stage="finetune",
        model=tune,
        run_dir=run_dir,
        epochs=config.fine_tune_epochs,
        seed=config.seed,
        train_data=epoch_data,
        validation_data=validation,
        patience=config.patience,
        resume=resume,
        on_epoch=on_epoch,
    )
    if cluster is not None:
        tuned, state, start = distributed.run_stage(
            **stage,
            batch_size=batch_size,
            steps=steps,
            learning_rate=schedule,
            label_smoothing=config.label_smoothing,
            cluster=cluster,
            jit_compile=plan.jit_compile,
        )
        start_val = start["accuracy"]
        info["compute"] += (
            f"; data-parallel on {cluster.workers} workers (MultiWorkerMirroredStrategy, "
            f"{batch_size} examples per worker and step, float32)"
        )
    else:
        with mixed_precision(tune, plan.mixed_precision):
            compile_classifier(tune, schedule, config.label_smoothing, jit_compile=plan.jit_compile)
            start_val = _accuracy(tune, val_input, labels["val"])
            tuned, state = run_stage(
                **stage,
                pruning=pruning_for(config.fine_tune_epochs, steps),
                steps_per_epoch=steps,
            )
    if tuned is not tune:  # reloaded from a checkpoint: bring the weights home
        _copy_weights(tuned, backbone)
        _copy_weights(tuned, head)
    best = float(state.best[0]) if state.best_epoch >= 0 else start_val
    info.update(best_epoch=state.best_epoch + 1, start_val_accuracy=start_val)
    return FineTuneResult(
        backbone=backbone,
        head=head,
        val_accuracy=best,
        start_val_accuracy=start_val,
        history=dict(state.history),
        info=info,
    )


def shard_splits(splits: DataSplits, cluster) -> DataSplits:
    """Every split cut to ``cluster``'s shard (every W-th example from the worker's rank)."""
    from dataclasses import replace

    def cut(part):
        return replace(
            part, items=tuple(cluster.shard(part.items)), labels=tuple(cluster.shard(part.labels))
        )

    return DataSplits(*(cut(part) for part in splits.named().values()))
