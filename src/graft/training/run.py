"""``graft.train``: data in, one evaluated classifier module out, in a resumable run folder.

Run folder (``runs/NAME``)::

    config.json  splits.json  state.json      what was asked, which examples, where it got to
    checkpoints/  tensorboard/                per-epoch checkpoints and TensorBoard logs
    module/                                   the classifier: raw input -> probabilities
    report.html  metrics.json  predictions.csv  misclassified.csv  confusion_matrix.{csv,png}
    curves.png                                the evaluation on the test split
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, LabeledData, Skipped
from graft.errors import InvalidArgumentError, ModuleExistsError, received
from graft.training.loop import write_json

FEATURE_TASKS = {"image-feature-vector": "image", "text-embedding": "text"}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run (``config.json``)."""

    model: str = "efficientnet_lite0.imagenet"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    dropout: float = 0.2
    hidden_units: int = 0
    label_smoothing: float = 0.1
    fine_tune_blocks: int = 0
    fine_tune_layers: int = 0
    fine_tune_epochs: int = 5
    fine_tune_lr: float = 1e-4
    patience: int = 3
    prune_sparsity: float = 0.0
    prune_initial: float = 0.5
    augment: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    runtime: str = "auto"

    def check(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(
                    f"{name} must be at least 1. {received(**{name: getattr(self, name)})}"
                )
        if self.fine_tune_blocks and self.fine_tune_layers:
            both = received(
                fine_tune_blocks=self.fine_tune_blocks, fine_tune_layers=self.fine_tune_layers
            )
            raise InvalidArgumentError(
                f"Give fine_tune_blocks or fine_tune_layers, not both. {both}"
            )
        for name in ("fine_tune_blocks", "fine_tune_layers", "fine_tune_epochs", "hidden_units"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(
                    f"{name} must be 0 or more. {received(**{name: getattr(self, name)})}"
                )
        if not 0 <= self.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise InvalidArgumentError(
                "dropout and label_smoothing must be in [0, 1). "
                f"{received(dropout=self.dropout, label_smoothing=self.label_smoothing)}"
            )
        if not 0 <= self.prune_sparsity < 1 or not 0 <= self.prune_initial < 1:
            raise InvalidArgumentError(
                "prune_sparsity (the final share of zero weights; 0 = no pruning) and "
                "prune_initial must be in [0, 1). "
                f"{received(prune_sparsity=self.prune_sparsity, prune_initial=self.prune_initial)}"
            )
        if self.lr <= 0 or self.fine_tune_lr <= 0:
            raise InvalidArgumentError(f"learning rates must be positive. {received(lr=self.lr)}")


@dataclass(frozen=True)
class Prediction:
    """One prediction: the top label and the top-k (label, probability) pairs."""

    item: str
    label: str
    probability: float
    top_k: tuple[tuple[str, float], ...]


def _onehot(labels: Sequence[int], n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[np.asarray(labels, dtype=int)]


def _module_name(run_dir: Path) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", run_dir.name.lower()).strip(".-") or "classifier"
    return name if name[0].isalnum() else f"run-{name}"


@dataclass
class Run:
    """A finished training run: its module, metrics and files.

    Example:
        >>> run = graft.train("flower_photos", out="runs/flowers")  # doctest: +SKIP
        >>> run.predict(["daisy.jpg"])[0].label  # doctest: +SKIP
        'daisy'
    """

    directory: Path
    config: TrainConfig
    class_names: tuple[str, ...]
    kind: str
    metrics: dict
    history: dict
    timings: dict = field(default_factory=dict)
    skipped: tuple[Skipped, ...] = ()

    @property
    def module_dir(self) -> Path:
        return self.directory / "module"

    @property
    def report(self) -> Path:
        return self.directory / "report.html"

    def model(self):
        """The trained Keras model (raw input -> probabilities)."""
        from graft.module.io import load

        return load(self.module_dir).model

    def predict(self, inputs: Sequence[str], top_k: int = 3) -> list[Prediction]:
        """Predicts label names for image files or texts."""
        return predict(self.module_dir, inputs, top_k=top_k)

    def evaluate(self, data: str | DataSplits | LabeledData | None = None, out=None):
        """Evaluates the module on ``data`` (default: the run's test split)."""
        from graft.evaluation.classifier import evaluate

        if data is None:
            return evaluate(self.module_dir, _read_split(self.directory, "test"), out=out)
        return evaluate(self.module_dir, data, out=out)

    def save(self, directory: str | Path, *, overwrite: bool = False) -> Path:
        """Copies the module elsewhere (atomically)."""
        from graft.module.io import load, save

        loaded = load(self.module_dir)
        save(loaded.model, directory, loaded.manifest, overwrite=overwrite)
        return Path(directory)


def _read_split(run_dir: Path, name: str) -> LabeledData:
    data = json.loads((run_dir / "splits.json").read_text())
    return LabeledData(
        kind=data["kind"],
        items=tuple(data[name]["items"]),
        labels=tuple(data[name]["labels"]),
        class_names=tuple(data["class_names"]),
        source=data["source"],
    )


def _prepare_run_dir(out: Path, resume: bool, config: TrainConfig) -> None:
    if resume:
        if not (out / "config.json").is_file():
            raise InvalidArgumentError(
                f"Nothing to resume in {out}: it has no config.json from an earlier run. "
                f"{received(out=str(out))}"
            )
        for leftover in out.rglob(".*"):  # temp files of a write the kill interrupted
            if leftover.is_file():
                leftover.unlink()
        saved = TrainConfig(**json.loads((out / "config.json").read_text()))
        if saved != config:
            diff = {k: v for k, v in asdict(config).items() if asdict(saved)[k] != v}
            raise InvalidArgumentError(
                f"--resume continues a run with its own settings; these differ from the "
                f"saved config.json: {diff}. {received(out=str(out))}"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise ModuleExistsError(
            f"{out} already holds a run. Pass resume=True (--resume) to continue it, or "
            f"choose another output folder. {received(out=str(out))}"
        )
    write_json(out / "config.json", asdict(config))


def train(
    data: str | Path | DataSplits,
    model: str = "efficientnet_lite0.imagenet",
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    **settings,
) -> Run:
    """Trains a classifier on a pretrained backbone and evaluates it on the test split.

    Stage 1 computes backbone features once (cached) and trains the head on them. Stage 2
    (``fine_tune_blocks > 0``) unfreezes the backbone's top blocks (BatchNorm stays in
    inference mode) and trains end to end at ``fine_tune_lr`` with augmentation and early
    stopping. The best weights by validation accuracy are kept.

    Args:
        data: a folder of class subfolders, a .csv/.tsv/.jsonl of texts, or ``DataSplits``.
        model: a feature-vector or text-embedding zoo entry or module.
        out: the run folder (default ``runs/<time>``).
        resume: continue the run in ``out`` from its last checkpoint.
        progress: called as ``progress(stage, done, total)``.
        **settings: fields of ``TrainConfig`` (epochs, batch_size, lr, fine_tune_blocks...).

    Returns:
        The ``Run``: module, metrics, report path.

    Raises:
        InvalidArgumentError: bad settings, a backbone of the wrong kind for the data.
        ModuleExistsError: ``out`` holds another run and ``resume`` is false.

    Example:
        >>> run = train("data/digits", epochs=10, out="runs/digits")  # doctest: +SKIP
        >>> print(run.metrics["accuracy"], run.report)  # doctest: +SKIP
    """
    import graft.data
    from graft.handles import resolve
    from graft.module.io import verify

    unknown = set(settings) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise InvalidArgumentError(
            f"Unknown setting(s) {sorted(unknown)}; settings are the fields of TrainConfig: "
            f"{sorted(TrainConfig.__dataclass_fields__)}. {received(settings=sorted(unknown))}"
        )
    config = TrainConfig(model=model, **settings)
    config.check()
    backbone_dir = resolve(config.model)
    backbone_manifest = verify(backbone_dir)
    if backbone_manifest.task not in FEATURE_TASKS:
        raise InvalidArgumentError(
            f"{config.model} is a {backbone_manifest.task} model; training needs a backbone "
            "whose task is image-feature-vector or text-embedding (for an ImageNet classifier "
            f"use its .imagenet entry). {received(model=config.model)}"
        )
    if config.fine_tune_blocks > len(backbone_manifest.groups):
        blocks = ", ".join(g.name for g in backbone_manifest.groups)
        raise InvalidArgumentError(
            f"{config.model} has {len(backbone_manifest.groups)} blocks ({blocks}); "
            f"fine_tune_blocks must be at most that. "
            f"{received(fine_tune_blocks=config.fine_tune_blocks)}"
        )
    out = Path(out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    _prepare_run_dir(out, resume, config)

    if resume and (out / "splits.json").is_file():
        splits = DataSplits(*(_read_split(out, n) for n in ("train", "val", "test")))
        skipped = tuple(
            Skipped(**s) for s in json.loads((out / "splits.json").read_text())["skipped"]
        )
    else:
        if isinstance(data, DataSplits):
            splits = data
        else:
            splits = graft.data.load(
                str(data),
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                seed=config.seed,
            )
        skipped = splits.skipped
        write_json(
            out / "splits.json",
            {
                "kind": splits.kind,
                "class_names": list(splits.class_names),
                "source": splits.train.source,
                "skipped": [asdict(s) for s in skipped],
                **{
                    name: {"items": list(part.items), "labels": list(part.labels)}
                    for name, part in splits.named().items()
                },
            },
        )
    kind = FEATURE_TASKS[backbone_manifest.task]
    if splits.kind != kind:
        raise InvalidArgumentError(
            f"{config.model} takes {kind} input but the data is {splits.kind}. "
            f"{received(model=config.model, data=str(data))}"
        )
    from graft.training.stages import fit_all

    return fit_all(out, config, splits, backbone_dir, skipped, progress)


def predict_probs(model, kind: str, items: Sequence[str], chunk: int = 64) -> np.ndarray:
    """Runs a raw-input module model (image bytes or strings in) on files or texts."""
    import tensorflow as tf

    from graft.data.images import read_inputs

    probs = [
        np.asarray(
            model.predict(
                tf.constant(read_inputs(kind, items[i : i + chunk])), verbose=0, batch_size=32
            )
        )
        for i in range(0, len(items), chunk)
    ]
    return np.concatenate(probs) if probs else np.zeros((0, model.output_shape[-1]), np.float32)


def predict(module_dir: str | Path, inputs: Sequence[str], top_k: int = 3) -> list[Prediction]:
    """Runs a classifier module on image files or texts and returns label names."""
    from graft.module.io import load

    loaded = load(module_dir)
    labels = loaded.manifest.labels or ()
    inputs = list(inputs)
    probs = predict_probs(loaded.model, loaded.manifest.inputs.kind, inputs)
    k = max(1, min(top_k, probs.shape[1]))
    results = []
    for item, row in zip(inputs, probs, strict=True):
        order = np.argsort(-row)[:k]
        named = tuple((labels[i] if i < len(labels) else str(i), float(row[i])) for i in order)
        results.append(Prediction(str(item), named[0][0], named[0][1], named))
    return results
