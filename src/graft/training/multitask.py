"""Several tasks on one backbone: ``graft.train_tasks`` (``graft train`` with several
``--label-column`` or with ``--labels labels.csv``).

The backbone's features are computed once for every example; each task then gets its own
convex head, fitted on the examples whose label for that task is known (a missing label masks
that example out of that task's loss only). The module is one Keras model with one named
output per task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data.tasks import TaskData, TaskSplits, read_image_labels, read_task_table, split_tasks
from graft.errors import InvalidArgumentError, received
from graft.training.loop import write_json
from graft.training.run import RunFolder


@dataclass(frozen=True)
class TaskRun(RunFolder):
    """A finished multi-task run: per-task metrics, the module, the report."""

    directory: Path
    backbone: str
    tasks: tuple[str, ...]
    class_names: dict[str, tuple[str, ...]]
    kind: str
    metrics: dict[str, dict]
    timings: dict = field(default_factory=dict)
    feature_passes: int = 1


def multitask_model(backbone, heads: dict, kind: str, size):
    """Raw encoded images (or strings) -> the backbone -> ``{task: probabilities}``."""
    import keras

    from graft.training.assemble import raw_inputs

    inputs, x = raw_inputs(kind, size)
    features = backbone(x)
    outputs = {name: _named_copy(head, f"head_{name}")(features) for name, head in heads.items()}
    return keras.Model(inputs, outputs, name="multitask_classifier")


def _named_copy(head, name: str):
    """An uncompiled copy of a head model under another name (every head is "head")."""
    import keras

    config = head.get_config()
    config["name"] = name
    copy = keras.Model.from_config(config)
    copy.set_weights(head.get_weights())
    return copy


def train_tasks(
    data: str | Path,
    model: str = "efficientnet_lite0.imagenet",
    *,
    out: str | Path | None = None,
    label_columns: Sequence[str] = (),
    labels: str | Path | None = None,
    text_column: str = "text",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    class_weight: str = "auto",
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
) -> TaskRun:
    """Trains one head per task on one backbone's features, computed once.

    Args:
        data: a ``.csv``/``.tsv``/``.jsonl`` of texts (with ``label_columns``), or a folder of
            images (with ``labels``).
        model: the backbone (zoo name, module directory or hub handle).
        out: the run folder (default ``runs/<time>``); must be new or empty.
        label_columns: texts: the label column of each task (two or more).
        labels: images: a CSV with a ``file`` column (relative to ``data``) and one column per
            task; an empty cell is an unknown label.
        text_column: texts: the text column.
        val_fraction, test_fraction: the split, stratified by the first task.
        class_weight: ``auto``, ``balanced`` or ``none``, per task.
        seed: seed of the split and the heads' cross-validation.
        progress: ``progress(stage, done, total)``.

    Returns:
        ``TaskRun``.

    Raises:
        InvalidArgumentError: bad columns, a task with fewer than two classes, a backbone of
            the wrong kind for the data.
        ModuleExistsError: ``out`` holds something.

    Example:
        >>> run = graft.train_tasks("reviews.csv", "minilm_l6.sentence",
        ...                         label_columns=["topic", "sentiment"])  # doctest: +SKIP
        >>> run.metrics["topic"]["accuracy"]  # doctest: +SKIP
    """
    from graft.training.run import FEATURE_TASKS, TrainConfig, _prepare_run_dir, resolve_backbone

    backbone_dir, bm = resolve_backbone(model)
    kind = FEATURE_TASKS[bm.task]
    out = Path(out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")
    _prepare_run_dir(out, False, TrainConfig(model=model))
    path = Path(data).expanduser()
    if path.is_dir():
        if labels is None:
            raise InvalidArgumentError(
                "Multi-task images need --labels: a CSV with a 'file' column and one column per "
                f"task. {received(data=str(data))}"
            )
        task_data = read_image_labels(path, labels)
    else:
        if len(label_columns) < 2:
            raise InvalidArgumentError(
                "Multi-task texts need two or more --label-column. "
                f"{received(label_columns=list(label_columns))}"
            )
        task_data = read_task_table(path, text_column, label_columns)
    if task_data.kind != kind:
        raise InvalidArgumentError(
            f"{model} takes {kind} input but the data is {task_data.kind}. "
            f"{received(model=model, data_kind=task_data.kind)}"
        )
    splits = split_tasks(task_data, val_fraction, test_fraction, seed)
    config = {
        "model": model,
        "tasks": list(task_data.tasks),
        "text_column": text_column,
        "labels": str(labels) if labels else None,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "class_weight": class_weight,
        "seed": seed,
    }
    write_json(out / "config.json", config)
    _write_splits(out, splits, task_data)
    return _fit(out, model, backbone_dir, bm, kind, splits, task_data, class_weight, seed, progress)


def _write_splits(out: Path, splits: TaskSplits, data: TaskData) -> None:
    write_json(
        out / "splits.json",
        {
            "kind": data.kind,
            "tasks": list(data.tasks),
            "class_names": {t: list(c) for t, c in data.class_names.items()},
            "source": data.source,
            "skipped": [{"item": s.item, "reason": s.reason} for s in data.skipped],
            **{
                name: {
                    "items": list(part.items),
                    "labels": {t: list(v) for t, v in part.labels.items()},
                }
                for name, part in splits.named().items()
            },
        },
    )


def _fit(out, model, backbone_dir, bm, kind, splits, data, class_weight, seed, progress):
    from graft.evaluation.report import write_report
    from graft.module.io import load, save
    from graft.module.manifest import HeadSpec, Manifest, OutputSpec, Provenance
    from graft.training.features import FeatureExtractor
    from graft.training.head import fit_convex
    from graft.training.stages import FeatureStore, classifier_inputs

    extractor = _Counted(FeatureExtractor(backbone_dir))
    store = FeatureStore(extractor)
    store.fill([i for part in splits.named().values() for i in part.items], progress)
    timings = {"features_s": round(store.seconds, 3)}
    features = {name: store(part.items) for name, part in splits.named().items()}
    heads, metrics, selection = {}, {}, {}
    start = time.perf_counter()
    for t, task in enumerate(data.tasks):
        n = len(data.class_names[task])
        rows = {name: part.known(task) for name, part in splits.named().items()}
        task_features = {name: features[name][rows[name]] for name in rows}
        task_labels = {
            name: np.asarray(splits.named()[name].labels[task])[rows[name]] for name in rows
        }
        if progress:
            progress("heads", t, len(data.tasks))
        head = fit_convex(
            task_features,
            task_labels,
            n,
            dropout=0.0,
            label_smoothing=0.1,
            class_weight=class_weight,
            refit_on="train+val",
            seed=seed,
        )
        heads[task] = head.model
        selection[task] = {"head": {"kind": head.kind, **head.info}}
    if progress:
        progress("heads", len(data.tasks), len(data.tasks))
    timings["heads_s"] = round(time.perf_counter() - start, 3)

    loaded = load(backbone_dir)
    size = tuple(bm.inputs.size) if kind == "image" else None
    module_model = multitask_model(loaded.model, heads, kind, size)
    test = splits.test
    for task in data.tasks:
        rows = test.known(task)
        items = [test.items[i] for i in rows]
        probs = np.asarray(heads[task].predict(features["test"][rows], verbose=0))
        y_true = [test.labels[task][i] for i in rows]
        report = write_report(
            out / "tasks" / task,
            kind=kind,
            items=items,
            y_true=y_true,
            probs=probs,
            class_names=data.class_names[task],
            title=f"graft run {out.name}: task {task}",
            summary={
                "backbone": model,
                "task": f"{task}: {len(data.class_names[task])} classes; known labels "
                f"{len(splits.train.known(task))} train, {len(splits.val.known(task))} "
                f"validation, {len(rows)} test",
            },
            selection=selection[task],
        )
        metrics[task] = report.metrics
    headline = {}
    for task, m in metrics.items():
        headline[f"{task}_test_accuracy"] = m["accuracy"]
        headline[f"{task}_test_macro_f1"] = m["macro_f1"]
    first = data.tasks[0]
    manifest = Manifest(
        name=_name(out),
        task=f"{kind}-classifier",
        description=f"{len(data.tasks)}-task {kind} classifier ({', '.join(data.tasks)}) "
        f"trained by graft on {model}",
        inputs=classifier_inputs(kind, size, bm),
        outputs=OutputSpec(kind="probabilities", dim=len(data.class_names[first])),
        labels=data.class_names[first],
        heads=tuple(HeadSpec(name=t, labels=data.class_names[t]) for t in data.tasks),
        license=bm.license,
        provenance=Provenance(
            source=f"graft train on {data.source}",
            converted_from=f"{model} (model.keras sha256 {bm.files['model.keras'].sha256[:12]})",
        ),
        metrics=headline,
        tags=("graft-train", kind, "multi-task"),
    )
    save(module_model, out / "module", manifest, overwrite=True)
    write_overview(out, f"graft run {out.name}", data, metrics, splits.named())
    write_json(out / "metrics.json", {"tasks": metrics})
    write_json(
        out / "run.json",
        {
            "metrics": headline,
            "timings": timings,
            "selection": selection,
            "feature_passes": extractor.passes,
        },
    )
    return TaskRun(
        directory=out,
        backbone=model,
        tasks=data.tasks,
        class_names=data.class_names,
        kind=kind,
        metrics=metrics,
        timings=timings,
        feature_passes=extractor.passes,
    )


class _Counted:
    """A feature extractor that counts its passes over the data (the run asserts one)."""

    def __init__(self, extractor) -> None:
        self.extractor = extractor
        self.output_shape = extractor.output_shape
        self.runtime = extractor.runtime
        self.passes = 0

    def __call__(self, items, progress=None):
        self.passes += 1
        return self.extractor(items, progress=progress)


def _name(out: Path) -> str:
    from graft.training.run import _module_name

    return _module_name(out)


def write_overview(
    out: Path, title: str, data: TaskData, metrics: dict, parts: dict[str, TaskData]
) -> None:
    """``report.html``: one section per task (headline figures, confusion matrix, the convex
    head's selection curve), each linking to the task's full report under ``tasks/``.

    Args:
        parts: the data's parts by name (train/val/test, or the evaluated data), for counts.
    """
    import jinja2

    from graft.evaluation.report import _b64_png, _write_text

    sections = []
    for task in data.tasks:
        folder = out / "tasks" / task
        images = {"confusion": _b64_png(folder / "confusion_matrix.png")}
        if (folder / "selection.png").is_file():
            images["selection"] = _b64_png(folder / "selection.png")
        m = metrics[task]
        sections.append(
            {
                "name": task,
                "classes": list(data.class_names[task]),
                "accuracy": m["accuracy"],
                "macro_f1": m["macro_f1"],
                "test": m["examples"],
                "unknown": " / ".join(
                    str(len(part) - len(part.known(task))) for part in parts.values()
                ),
                "images": images,
            }
        )
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("graft.evaluation", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    html = env.get_template("multitask_report.html.j2").render(
        title=title,
        source=data.source,
        tasks=sections,
        counts=", ".join(f"{len(part)} {name}" for name, part in parts.items()),
        part_names=" / ".join(parts),
    )
    _write_text(out / "report.html", html)
