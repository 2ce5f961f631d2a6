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
from graft.inference import Prediction
from graft.training.loop import write_json

FEATURE_TASKS = {"image-feature-vector": "image", "text-embedding": "text"}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a run (``config.json``)."""

    model: str = "efficientnet_lite0.imagenet"
    head: str = "auto"
    lam: float = 0.0  # the convex head's L2 strength; 0 = chosen by cross-validation
    transform: str = "auto"  # the convex head's feature transform: auto, none or power
    class_weight: str = "auto"
    epochs: int = 30
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
    augment: str = "default"
    folds: int = 0
    unlabeled: str | None = None
    unlabeled_column: str = "text"
    pseudo_threshold: float = 0.9
    pseudo_rounds: int = 1
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    runtime: str = "auto"

    def check(self) -> None:
        from graft.training.head import HEAD_KINDS, resolve_kind
        from graft.training.linear import class_weights
        from graft.training.pipeline import check_augment

        check_augment(self.augment)
        class_weights(np.zeros(1, int), 1, self.class_weight)  # raises for an unknown mode
        if self.head not in HEAD_KINDS:
            raise InvalidArgumentError(
                "head must be 'auto' (convex unless hidden_units or pruning ask for SGD), "
                "'convex' (logistic regression solved to convergence) or 'sgd'. "
                f"{received(head=self.head)}"
            )
        if self.head == "convex" and (self.hidden_units or self.prune_sparsity):
            raise InvalidArgumentError(
                "The convex head is one Dense layer fitted exactly; hidden_units and pruning "
                "need head='sgd' (or 'auto'). "
                f"{received(head=self.head, hidden_units=self.hidden_units)}"
            )
        if (
            self.unlabeled
            and resolve_kind(self.head, self.hidden_units, self.prune_sparsity) != "convex"
        ):
            raise InvalidArgumentError(
                "Pseudo-labelling (unlabeled=) works with the convex head; drop head='sgd', "
                f"hidden_units and pruning. {received(unlabeled=self.unlabeled, head=self.head)}"
            )
        if not 0 < self.pseudo_threshold <= 1 or self.pseudo_rounds < 1:
            values = received(
                pseudo_threshold=self.pseudo_threshold, pseudo_rounds=self.pseudo_rounds
            )
            raise InvalidArgumentError(
                f"pseudo_threshold must be in (0, 1] and pseudo_rounds at least 1. {values}"
            )
        if self.transform not in ("auto", "none", "power") or self.lam < 0:
            raise InvalidArgumentError(
                "transform must be 'auto' (chosen by cross-validation), 'none' (standardised "
                "features) or 'power' (power-normalised); lam must be 0 (chosen by "
                f"cross-validation) or positive. {received(transform=self.transform, lam=self.lam)}"
            )
        fixed = self.lam or self.transform != "auto"
        if fixed and resolve_kind(self.head, self.hidden_units, self.prune_sparsity) != "convex":
            raise InvalidArgumentError(
                "lam and transform set the convex head; this run trains an SGD head. "
                f"{received(head=self.head, lam=self.lam, transform=self.transform)}"
            )
        if self.folds == 1 or self.folds < 0:
            raise InvalidArgumentError(
                f"folds must be 0 (one train/validation/test split) or at least 2. "
                f"{received(folds=self.folds)}"
            )
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


def _onehot(labels: Sequence[int], n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[np.asarray(labels, dtype=int)]


def _module_name(run_dir: Path) -> str:
    name = re.sub(r"[^a-z0-9_.-]+", "-", run_dir.name.lower()).strip(".-") or "classifier"
    return name if name[0].isalnum() else f"run-{name}"


class RunFolder:
    """What a run folder (``directory``) offers, for ``Run``, ``EnsembleRun`` and
    ``TuneResult``: its module, report, predictions and evaluation."""

    directory: Path

    @property
    def module_dir(self) -> Path:
        return self.directory / "module"

    @property
    def report(self) -> Path:
        return self.directory / "report.html"

    def model(self):
        """The module's Keras model (raw input -> probabilities)."""
        from graft.module.io import load

        return load(self.module_dir).model

    def predict(self, inputs: Sequence[str], top_k: int = 3) -> list[Prediction]:
        """Predicts label names for image files or texts."""
        from graft.inference import predict

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


@dataclass
class Run(RunFolder):
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
    selection: dict = field(default_factory=dict)
    folds: dict | None = None


def _read_split(run_dir: Path, name: str) -> LabeledData:
    data = json.loads((run_dir / "splits.json").read_text())
    return LabeledData(
        kind=data["kind"],
        items=tuple(data[name]["items"]),
        labels=tuple(data[name]["labels"]),
        class_names=tuple(data["class_names"]),
        source=data["source"],
    )


def write_splits(out: Path, splits: DataSplits, skipped=(), extra: dict | None = None) -> None:
    """Writes ``splits.json``: which examples are in which split (read back by ``read_splits``)."""
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
            **(extra or {}),
        },
    )


def read_splits(out: Path) -> tuple[DataSplits, tuple[Skipped, ...]]:
    """The splits and skipped examples of ``splits.json``."""
    splits = DataSplits(*(_read_split(out, n) for n in ("train", "val", "test")))
    skipped = tuple(Skipped(**s) for s in json.loads((out / "splits.json").read_text())["skipped"])
    return splits, skipped


def resolve_backbone(model: str):
    """``(module_dir, manifest)`` of a backbone training can use (a feature-vector or
    text-embedding task).

    Raises:
        ModelNotFoundError: ``model`` names nothing graft knows.
        InvalidArgumentError: it is a classifier or another kind of model.
    """
    from graft.handles import resolve
    from graft.module.io import verify

    backbone_dir = resolve(model)
    manifest = verify(backbone_dir)
    if manifest.task not in FEATURE_TASKS:
        raise InvalidArgumentError(
            f"{model} is a {manifest.task} model; training needs a backbone "
            "whose task is image-feature-vector or text-embedding (for an ImageNet classifier "
            f"use its .imagenet entry). {received(model=model)}"
        )
    return backbone_dir, manifest


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
            f"{out} already holds a run. Continue it with --resume (the resume argument in "
            f"Python), or choose another output folder. {received(out=str(out))}"
        )


def train(
    data: str | Path | DataSplits,
    model: str = "efficientnet_lite0.imagenet",
    *,
    out: str | Path | None = None,
    resume: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    **settings,
) -> Run | None:
    """Trains a classifier on a pretrained backbone and evaluates it on the test split.

    Stage 1 computes backbone features once (cached) and fits the head on them: by default a
    logistic regression solved to convergence, its feature transform and L2 strength chosen by
    cross-validation. Stage 2 (``fine_tune_blocks > 0``) starts from that head, unfreezes the
    backbone's top blocks (BatchNorm stays in inference mode) and trains them with a warm-up
    and cosine learning rate; the fine-tuned model is kept only if it beats the head alone on
    the validation split by more than the standard error of the head's accuracy there.
    ``folds=K`` trains and evaluates K times (every example is tested once) and then trains the
    module on all data.

    Args:
        data: a folder of class subfolders, a .csv/.tsv/.jsonl of texts, or ``DataSplits``.
        model: a feature-vector or text-embedding zoo entry or module.
        out: the run folder (default ``runs/<time>``).
        resume: continue the run in ``out`` from its last checkpoint.
        progress: called as ``progress(stage, done, total)``.
        **settings: fields of ``TrainConfig`` (head, fine_tune_blocks, augment, folds...).

    When ``TF_CONFIG`` describes a cluster, fine-tuning runs data-parallel on every worker
    (``graft.training.distributed``); the chief writes ``out`` and the other workers return
    ``None``.

    Returns:
        The ``Run``: module, metrics, report path (``None`` on a worker other than the chief
        of a distributed run).

    Raises:
        InvalidArgumentError: bad settings, a backbone of the wrong kind for the data.
        ModuleExistsError: ``out`` holds another run and ``resume`` is false.
        WorkerFailedError: another worker of a distributed run stopped responding.

    Example:
        >>> run = train("data/digits", epochs=10, out="runs/digits")  # doctest: +SKIP
        >>> print(run.metrics["accuracy"], run.report)  # doctest: +SKIP
    """
    unknown = set(settings) - set(TrainConfig.__dataclass_fields__)
    if unknown:
        raise InvalidArgumentError(
            f"Unknown setting(s) {sorted(unknown)}; settings are the fields of TrainConfig: "
            f"{sorted(TrainConfig.__dataclass_fields__)}. {received(settings=sorted(unknown))}"
        )
    config = TrainConfig(model=model, **settings)
    config.check()
    backbone_dir, backbone_manifest = resolve_backbone(config.model)
    if config.fine_tune_blocks > len(backbone_manifest.groups):
        blocks = ", ".join(g.name for g in backbone_manifest.groups)
        raise InvalidArgumentError(
            f"{config.model} has {len(backbone_manifest.groups)} blocks ({blocks}); "
            f"fine_tune_blocks must be at most that. "
            f"{received(fine_tune_blocks=config.fine_tune_blocks)}"
        )
    out = Path(out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    from graft.training import distributed

    cluster = distributed.cluster_from_env()
    worker_dir = None
    if cluster is not None:
        distributed.check_settings(config, cluster)
        distributed.strategy()  # before any TensorFlow operation; waits for every worker
    if cluster is not None and not cluster.is_chief:  # writes nothing in the run folder
        import tempfile

        worker_dir = out = Path(tempfile.mkdtemp(prefix=f"graft-{cluster.task.replace(':', '')}-"))
    else:
        _prepare_run_dir(out, resume, config)  # checks only: nothing is written before the data
    try:
        return _train(data, config, out, resume, backbone_dir, backbone_manifest, progress)
    finally:
        if worker_dir is not None:
            import shutil

            shutil.rmtree(worker_dir, ignore_errors=True)


def _train(data, config, out, resume, backbone_dir, backbone_manifest, progress) -> Run | None:
    import graft.data

    kind = FEATURE_TASKS[backbone_manifest.task]

    def check_kind(splits: DataSplits) -> None:
        if splits.kind != kind:
            raise InvalidArgumentError(
                f"{config.model} takes {kind} input but the data is {splits.kind}. "
                f"{received(model=config.model, data_kind=splits.kind)}"
            )

    if resume and (out / "splits.json").is_file():
        splits, skipped = read_splits(out)
        check_kind(splits)
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
        check_kind(splits)
        if not resume:
            write_json(out / "config.json", asdict(config))
        skipped = splits.skipped
        extra = {}
        if config.folds:  # folds of every example; the module's own split has no test part
            from graft.training.stages import assign_folds

            splits, extra["folds"] = assign_folds(splits, config)
        write_splits(out, splits, skipped, extra)
    from graft.training.stages import fit_all

    return fit_all(out, config, splits, backbone_dir, skipped, progress)
