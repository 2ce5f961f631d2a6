"""The trials of ``graft tune``: the search space, and the score of one configuration.

Every trial is scored the same way: k-fold cross-validated accuracy on the train and validation
splits together (the test split is left for the final evaluation), on the same folds, so a
small validation split cannot be overfitted by the search. Head-only trials train on cached
backbone features and take seconds: the convex head solves its k fold problems in one batched
L-BFGS (``linear.py``); the SGD head trains its k fold copies side by side in one Keras model
and reports the mean held-out accuracy after each epoch to the pruner. Fine-tune trials fit the
head per fold, then fine-tune the top blocks (cached block activations, no augmentation) and
report the held-out accuracy after each fine-tuning epoch.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, LabeledData

FOLDS = 5
BATCH_SIZE = 32
HIDDEN_UNITS = (0, 64, 256)
MAX_FINE_TUNE_BLOCKS = 3
FINE_TUNE_EPOCHS = 5
# Fine-tune trials report at steps from here on, head trials at their epochs: the median
# pruner compares a trial only with trials that reported the same step.
FINE_TUNE_STEP = 1000


@dataclass(frozen=True)
class SearchData:
    """The cached features of the train and validation splits, and their folds.

    Attributes:
        pool: the train split, then the validation split, as one ``LabeledData``.
        x: ``(n, dim)`` backbone features of ``pool``.
        y: ``(n,)`` class indices.
        n_train: the first ``n_train`` rows are the train split.
        folds: the fold of each row (stratified, seeded).
    """

    pool: LabeledData
    x: np.ndarray
    y: np.ndarray
    n_train: int
    folds: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.pool.class_names)

    @property
    def k(self) -> int:
        return int(self.folds.max()) + 1

    @property
    def nonnegative(self) -> bool:
        return float(self.x.min()) >= 0

    @classmethod
    def build(cls, splits: DataSplits, store, seed: int) -> SearchData:
        """Features of train+val from ``store`` (a ``FeatureStore``) and seeded folds."""
        from graft.training.linear import _fold_assignment

        pool = LabeledData(
            kind=splits.kind,
            items=splits.train.items + splits.val.items,
            labels=splits.train.labels + splits.val.labels,
            class_names=splits.class_names,
            source=splits.train.source,
        )
        y = np.asarray(pool.labels, dtype=int)
        # The folds ``fit_linear_head(..., folds=FOLDS)`` draws for the same rows and seed.
        k = max(2, min(FOLDS, int(np.bincount(y).max())))
        x = store(list(pool.items)).astype(np.float32)
        return cls(pool, x, y, len(splits.train), _fold_assignment(y, k, seed))


def default_params(data: SearchData, seed: int, fine_tune: bool) -> dict:
    """graft's default configuration as trial parameters: the convex head with the L2 strength
    and transform ``graft train`` would choose on this data (by the same cross-validation)."""
    from graft.training.linear import fit_linear_head

    n = data.n_train
    linear = fit_linear_head(
        data.x[:n],
        data.y[:n],
        data.x[n:],
        data.y[n:],
        data.num_classes,
        transforms=("none", "power") if data.nonnegative else ("none",),
        seed=seed,
    )
    params: dict = {"head": "convex", "lam": linear.lam}
    if data.nonnegative:
        params["transform"] = linear.transform
    if fine_tune:
        params["fine_tune_blocks"] = 0
    return params


def suggest(trial, *, nonnegative: bool, max_blocks: int) -> dict:
    """Draws one configuration from the search space (conditional on the head kind)."""
    params: dict = {}
    if max_blocks:
        params["fine_tune_blocks"] = trial.suggest_int("fine_tune_blocks", 0, max_blocks)
        if params["fine_tune_blocks"]:
            params["fine_tune_lr"] = trial.suggest_float("fine_tune_lr", 1e-5, 1e-3, log=True)
    params["head"] = trial.suggest_categorical("head", ["convex", "sgd"])
    if params["head"] == "convex":
        params["lam"] = trial.suggest_float("lam", 1e-5, 1.0, log=True)
        if nonnegative:  # power normalisation is for non-negative (pooled ReLU) features
            params["transform"] = trial.suggest_categorical("transform", ["none", "power"])
    else:
        params["hidden_units"] = trial.suggest_categorical("hidden_units", list(HIDDEN_UNITS))
        params["dropout"] = trial.suggest_float("dropout", 0.0, 0.5)
        params["label_smoothing"] = trial.suggest_float("label_smoothing", 0.0, 0.2)
        params["lr"] = trial.suggest_float("lr", 1e-3, 3e-2, log=True)
        params["epochs"] = trial.suggest_int("epochs", 10, 40, step=10)
    return params


def train_settings(params: dict) -> dict:
    """The ``graft.train`` settings (``TrainConfig`` fields) of trial parameters.

    Example:
        >>> train_settings({"head": "convex", "lam": 0.01, "transform": "power"})
        {'head': 'convex', 'lam': 0.01, 'transform': 'power'}
    """
    if params["head"] == "convex":
        settings = {"head": "convex", "lam": params["lam"]}
        settings["transform"] = params.get("transform", "none")
    else:
        names = ("hidden_units", "dropout", "label_smoothing", "lr", "epochs")
        settings = {"head": "sgd", **{name: params[name] for name in names}}
    if params.get("fine_tune_blocks"):
        settings.update(
            fine_tune_blocks=params["fine_tune_blocks"],
            fine_tune_lr=params["fine_tune_lr"],
            fine_tune_epochs=FINE_TUNE_EPOCHS,
            augment="none",
        )
    return settings


class Objective:
    """``objective(trial) -> cross-validated accuracy``, for ``study.optimize``.

    Args:
        data: the cached features and folds.
        seed: the run seed (initial weights, data order).
        backbone_dir: the backbone module, for fine-tune trials.
        max_blocks: the largest ``fine_tune_blocks`` searched (0: head-only search).
        work_dir: where fine-tune trials keep their checkpoints while they run.
    """

    def __init__(
        self,
        data: SearchData,
        *,
        seed: int,
        backbone_dir: Path | None = None,
        max_blocks: int = 0,
        work_dir: Path | None = None,
        model: str = "",
    ) -> None:
        self.data, self.seed = data, seed
        self.backbone_dir, self.max_blocks, self.work_dir = backbone_dir, max_blocks, work_dir
        self.model = model

    def __call__(self, trial) -> float:
        params = suggest(trial, nonnegative=self.data.nonnegative, max_blocks=self.max_blocks)
        if params.get("fine_tune_blocks"):
            return self._fine_tune(trial, params)
        if params["head"] == "convex":
            return self._convex(params)
        return self._sgd(params, trial)[0]

    # -- head-only trials -----------------------------------------------------------------
    def _convex(self, params: dict) -> float:
        from graft.training.linear import fit_linear_head

        d, n = self.data, self.data.n_train
        linear = fit_linear_head(
            d.x[:n],
            d.y[:n],
            d.x[n:],
            d.y[n:],
            d.num_classes,
            folds=FOLDS,
            lambdas=(params["lam"],),
            transforms=(params.get("transform", "none"),),
            seed=self.seed,
        )
        return float(linear.scores[0]["accuracy"])

    def _sgd(self, params: dict, trial=None) -> tuple[float, list]:
        """Trains the k fold heads side by side; returns the final mean held-out accuracy and
        the heads. With ``trial``, reports each epoch's score and stops when pruned."""
        import keras
        import optuna

        from graft.training.head import build_head, warmup_cosine
        from graft.training.linear import class_weights

        d, k = self.data, self.data.k
        keras.utils.set_random_seed(self.seed)
        inputs = keras.Input((d.x.shape[1],), name="features")
        heads = [
            build_head(
                d.x.shape[1],
                d.num_classes,
                dropout=params["dropout"],
                hidden_units=params["hidden_units"],
            )
            for _ in range(k)
        ]
        outputs = [
            keras.Model(h.input, h.output, name=f"fold_{f}")(inputs) for f, h in enumerate(heads)
        ]
        model = keras.Model(inputs, outputs, name="fold_heads")
        steps = -(-len(d.y) // BATCH_SIZE)
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=params["label_smoothing"])
        model.compile(
            optimizer=keras.optimizers.Adam(
                warmup_cosine(params["lr"], steps * params["epochs"], warmup_fraction=0.05)
            ),
            loss=[loss] * k,
            steps_per_execution=16,
        )
        cw = class_weights(d.y[: d.n_train], d.num_classes, "auto")
        base = cw[d.y] if cw is not None else np.ones(len(d.y))
        # Each fold's head learns from the other folds only: its held-out rows weigh 0.
        weights = [((d.folds != f) * base).astype(np.float32) for f in range(k)]
        onehot = np.eye(d.num_classes, dtype=np.float32)[d.y]
        held_out = _held_out(d, trial)
        model.fit(
            d.x,
            [onehot] * k,
            sample_weight=weights,
            batch_size=BATCH_SIZE,
            epochs=params["epochs"],
            verbose=0,
            callbacks=[held_out],
        )
        if held_out.pruned:
            raise optuna.TrialPruned(f"pruned at epoch {len(held_out.scores)}")
        return held_out.scores[-1], heads

    # -- fine-tune trials -----------------------------------------------------------------
    def _fine_tune(self, trial, params: dict) -> float:
        import optuna

        from graft.module.io import load
        from graft.training.finetune import fine_tune
        from graft.training.head import fit_convex
        from graft.training.run import TrainConfig

        d = self.data
        heads = self._sgd(params)[1] if params["head"] == "sgd" else None
        config = TrainConfig(
            model=self.model,
            seed=self.seed,
            patience=FINE_TUNE_EPOCHS,  # no early stop: every fold runs the same epochs
            **{
                k: v
                for k, v in train_settings(params).items()
                if k in ("fine_tune_blocks", "fine_tune_lr", "fine_tune_epochs", "augment")
            },
            **({"label_smoothing": params["label_smoothing"]} if heads else {}),
        )
        work = (self.work_dir or Path(".")) / f"trial-{trial.number}"
        scores = []
        try:
            for f in range(d.k):
                train_rows, held_rows = np.flatnonzero(d.folds != f), np.flatnonzero(d.folds == f)
                if heads is None:
                    head = fit_convex(
                        {"train": d.x[train_rows], "val": d.x[held_rows]},
                        {"train": d.y[train_rows], "val": d.y[held_rows]},
                        d.num_classes,
                        dropout=0.0,
                        label_smoothing=config.label_smoothing,
                        class_weight="auto",
                        refit_on="train",
                        seed=self.seed,
                        lam=params["lam"],
                        transform=params.get("transform", "none"),
                    ).model
                else:
                    head = heads[f]
                held = d.pool.subset(held_rows)
                splits = DataSplits(d.pool.subset(train_rows), held, held.subset([]))
                onehot = {
                    name: np.eye(d.num_classes, dtype=np.float32)[list(part.labels)]
                    for name, part in splits.named().items()
                }
                last: list[float] = []

                def report(epoch: int, logs: dict, fold: int = f, last: list = last) -> None:
                    last.append(float(logs["val_accuracy"]))
                    trial.report(last[-1], FINE_TUNE_STEP + fold * FINE_TUNE_EPOCHS + epoch)
                    if trial.should_prune():
                        raise optuna.TrialPruned(f"pruned in fold {fold + 1}, epoch {epoch + 1}")

                loaded = load(self.backbone_dir)
                fine_tune(
                    run_dir=work / f"fold-{f + 1}",
                    config=config,
                    splits=splits,
                    backbone_dir=self.backbone_dir,
                    backbone=loaded.model,
                    groups=loaded.manifest.groups,
                    head=head,
                    onehot=onehot,
                    resume=False,
                    on_epoch=report,
                    pruning_for=lambda e, s: None,
                )
                scores.append(last[-1])
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return float(np.mean(scores))


def _held_out(data: SearchData, trial):
    """A Keras callback: after each epoch, the mean held-out accuracy of the fold heads; it
    reports it to ``trial`` and stops training when the pruner says so."""
    import keras

    class HeldOut(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.scores: list[float] = []
            self.pruned = False

        def on_epoch_end(self, epoch: int, logs=None) -> None:
            probs = self.model.predict(data.x, batch_size=1024, verbose=0)
            accuracy = [
                float((probs[f][data.folds == f].argmax(1) == data.y[data.folds == f]).mean())
                for f in range(data.k)
            ]
            self.scores.append(float(np.mean(accuracy)))
            if trial is not None:
                trial.report(self.scores[-1], epoch)
                if trial.should_prune():
                    self.pruned = True
                    self.model.stop_training = True

    return HeldOut()
