"""The epoch loop shared by both stages: resumable, checkpointed, early-stopping.

Each epoch is one ``fit`` call with a seed derived from the run seed and the epoch, so a run
resumed from its last checkpoint (model, optimizer state and loop state are saved atomically
after every epoch) replays exactly the epochs an uninterrupted run would.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graft._atomic import atomic_path, write_bytes


def write_json(path: Path, data: Any) -> None:
    """Writes JSON atomically (temp file + rename)."""
    write_bytes(path, json.dumps(data, indent=2, default=float).encode("utf-8"))


@dataclass
class StageState:
    """Where a stage is: epochs done, best score so far, history."""

    stage: str
    epochs_done: int = 0
    best: list[float] = field(default_factory=lambda: [-np.inf, -np.inf])
    best_epoch: int = -1
    wait: int = 0
    finished: bool = False
    history: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, stage: str) -> StageState:
        if path.is_file():
            data = json.loads(path.read_text()).get(stage)
            if data:
                return cls(**data)
        return cls(stage=stage)

    def write(self, path: Path) -> None:
        data = json.loads(path.read_text()) if path.is_file() else {}
        data[self.stage] = self.__dict__
        write_json(path, data)


def _save_model(model, path: Path) -> None:
    with atomic_path(path, "".join(path.suffixes)) as tmp:  # Keras checks the suffix
        model.save(tmp)


def reseed_layers(model, seed: int) -> None:
    """Sets every random layer's seed state (Dropout, augmentation) from ``seed``.

    Keras does not save seed-generator states in checkpoints; deriving them from the epoch's
    seed instead makes a resumed epoch draw the same dropout masks as an uninterrupted one.
    """
    for i, variable in enumerate(model.variables):
        if variable.path.endswith("seed_generator_state"):
            value = np.array([(seed * 1_000_003 + i) % 2**31, 0])
            variable.assign(value.astype(variable.dtype))


def run_stage(
    *,
    stage: str,
    model,
    run_dir: Path,
    epochs: int,
    seed: int,
    train_data: Callable[[int], tuple],
    validation_data: tuple,
    patience: int | None = None,
    resume: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
    pruning=None,
    steps_per_epoch: int = 0,
):
    """Trains ``model`` for ``epochs`` epochs and returns it with the best weights.

    Args:
        stage: ``"head"`` or ``"finetune"``; names the checkpoints.
        model: a compiled Keras model.
        run_dir: the run folder (``checkpoints/``, ``state.json``, ``tensorboard/``).
        epochs: total epochs of this stage.
        seed: the run seed.
        train_data: ``epoch -> (x, y, batch_size[, sample_weight])`` or ``epoch -> (dataset,)``
            for that epoch.
        validation_data: what ``fit`` takes as ``validation_data``.
        patience: stop after this many epochs without a better validation score
            (accuracy, then loss).
        resume: continue from the stage's last checkpoint if there is one.
        on_epoch: called with ``(epoch, logs)`` after each epoch (progress bars).
        pruning: a ``graft.training.pruning.Pruning`` to run during the stage; only epochs that
            end at its final sparsity can be the best (or count towards ``patience``).
        steps_per_epoch: optimizer steps per epoch (where a resumed pruning schedule is).

    Returns:
        ``(model, state)``: the model holding its best weights, and the stage state.
    """
    import keras
    import tensorflow as tf

    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    state_path = run_dir / "state.json"
    last, best = checkpoints / f"{stage}_last.keras", checkpoints / f"{stage}_best.weights.h5"
    state = StageState.read(state_path, stage) if resume else StageState(stage=stage)
    if resume and state.epochs_done and last.is_file():
        import graft.models.layers  # noqa: F401  (graft's layers for the fine-tune model)

        model = keras.saving.load_model(last, safe_mode=True)
    else:
        state = StageState(stage=stage)
    callbacks = []
    if pruning is not None:
        pruning.attach(model, step=state.epochs_done * steps_per_epoch)
        callbacks.append(pruning.callback())
    writer = tf.summary.create_file_writer(str(run_dir / "tensorboard" / stage))
    stage_offset = 0 if stage == "head" else 1_000_003
    for epoch in range(state.epochs_done, epochs):
        if state.finished:
            break
        epoch_seed = seed * 10_007 + stage_offset + epoch
        keras.utils.set_random_seed(epoch_seed)
        reseed_layers(model, epoch_seed)
        started = time.perf_counter()
        data = train_data(epoch)
        fit_kwargs = dict(
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=validation_data,
            verbose=0,
            shuffle=False,  # the data is shuffled per epoch with the epoch's seed
            callbacks=callbacks,
        )
        if len(data) == 1:
            result = model.fit(data[0], **fit_kwargs)
        else:
            weights = data[3] if len(data) > 3 else None
            result = model.fit(
                data[0], data[1], batch_size=data[2], sample_weight=weights, **fit_kwargs
            )
        logs = {k: float(v[-1]) for k, v in result.history.items()}
        for key, value in logs.items():
            state.history.setdefault(key, []).append(value)
        # Wall time of the epoch (its data, its steps and validation), for bench/quality.py.
        state.history.setdefault("seconds", []).append(time.perf_counter() - started)
        with writer.as_default(step=epoch):
            for key, value in logs.items():
                tf.summary.scalar(key, value)
        writer.flush()
        # Best = highest validation accuracy; among equals, lowest validation loss (a small
        # validation set often ties on accuracy long before the model is trained).
        score = [logs.get("val_accuracy", 0.0), -logs.get("val_loss", 0.0)]
        if pruning is not None and not pruning.reached():
            pass  # not yet at the target sparsity: neither best nor a patience strike
        elif score > state.best:
            state.best, state.best_epoch, state.wait = score, epoch, 0
            tmp = best.with_name(f".{uuid.uuid4().hex}.weights.h5")
            model.save_weights(tmp)
            os.replace(tmp, best)
        else:
            state.wait += 1
        state.epochs_done = epoch + 1
        if patience is not None and state.wait >= patience:
            state.finished = True
        _save_model(model, last)
        state.write(state_path)
        if on_epoch:
            on_epoch(epoch, logs)
    state.finished = True
    state.write(state_path)
    if best.is_file():
        model.load_weights(best)
    return model, state
