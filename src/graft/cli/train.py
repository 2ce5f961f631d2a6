"""``graft train``, ``graft evaluate`` and ``graft predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graft.cli._common import (
    MODULE_HELP,
    Alias,
    Register,
    SplitColumn,
    TextColumn,
    TrackingOptional,
    TrackingUri,
    TrackOption,
    TrainingData,
    console,
    err_console,
    finish_tracking,
    handle_errors,
    load_splits,
    print_table,
    stage_progress,
    start_tracking,
)
from graft.cli.features import ActorsOption, AddressOption, EngineOption

ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Backbone: a feature-vector zoo entry or module.")
]


@handle_errors
def train(
    data: TrainingData,
    model: ModelOption = "efficientnet_lite0.imagenet",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<time>).")
    ] = None,
    head: Annotated[
        str,
        typer.Option(
            help="Head fitting: auto (convex unless --hidden-units or pruning), convex "
            "(logistic regression solved to convergence, strength by cross-validation) or sgd."
        ),
    ] = "auto",
    lam: Annotated[
        float, typer.Option(help="L2 strength of the convex head (0: chosen by cross-validation).")
    ] = 0.0,
    transform: Annotated[
        str,
        typer.Option(
            help="Feature transform of the convex head: auto (cross-validated), none or power."
        ),
    ] = "auto",
    epochs: Annotated[int, typer.Option(help="Epochs of an SGD-trained head.")] = 30,
    fine_tune_blocks: Annotated[
        int, typer.Option(help="Unfreeze this many top blocks and fine-tune end to end.")
    ] = 0,
    fine_tune_layers: Annotated[
        int, typer.Option(help="Or: unfreeze this many top weighted layers (not BatchNorm).")
    ] = 0,
    fine_tune_epochs: Annotated[int, typer.Option(help="Epochs of fine-tuning.")] = 5,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate of an SGD head.")] = 1e-2,
    fine_tune_lr: Annotated[float, typer.Option(help="Peak fine-tuning learning rate.")] = 1e-4,
    hidden_units: Annotated[int, typer.Option(help="Hidden Dense layer in the head.")] = 0,
    dropout: Annotated[float, typer.Option(help="Dropout of an SGD head.")] = 0.2,
    label_smoothing: Annotated[
        float, typer.Option(help="Label smoothing (SGD, fine-tuning).")
    ] = 0.1,
    class_weight: Annotated[
        str,
        typer.Option(help="auto (balanced when classes differ by more than 3x), balanced, none."),
    ] = "auto",
    text_column: TextColumn = "text",
    label_column: Annotated[
        list[str],
        typer.Option(
            help="Label column of a table; repeat it for several tasks on one backbone "
            "(--label-column topic --label-column sentiment; empty cells are unknown)."
        ),
    ] = ["label"],  # noqa: B006 (typer reads the default; it is never mutated)
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="Images, several tasks: a CSV with a 'file' column (relative to DATA) and one "
            "column per task; empty cells are unknown.",
        ),
    ] = None,
    split_column: SplitColumn = None,
    augment: Annotated[
        str,
        typer.Option(
            help="Augmentation while fine-tuning: none (images: fastest, cached block "
            "activations), light, default (images: no flips or rotations; texts: token deletion "
            "and masking) or strong (adds flips and rotations, or token swaps)."
        ),
    ] = "default",
    no_augment: Annotated[
        bool, typer.Option("--no-augment", help="Same as --augment none.")
    ] = False,
    folds: Annotated[
        int, typer.Option(help="Cross-validate: train and test K times, report mean +- sd.")
    ] = 0,
    unlabeled: Annotated[
        Path | None,
        typer.Option(
            help="Unlabelled examples (an image folder, or a .txt/.csv/.jsonl of texts) to "
            "pseudo-label; kept only if validation accuracy rises."
        ),
    ] = None,
    pseudo_threshold: Annotated[
        float, typer.Option(help="Least top probability of a pseudo-label.")
    ] = 0.9,
    pseudo_rounds: Annotated[int, typer.Option(help="Pseudo-labelling rounds.")] = 1,
    prune_sparsity: Annotated[
        float, typer.Option(help="Magnitude-prune the trained kernels to this share of zeros.")
    ] = 0.0,
    prune_initial: Annotated[
        float, typer.Option(help="Sparsity the polynomial-decay schedule starts from.")
    ] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the split and training.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out.")] = False,
    track: TrackOption = False,
    tracking_uri: TrackingUri = None,
    tracking_optional: TrackingOptional = False,
    register: Register = None,
    alias: Alias = None,
) -> None:
    """Train a classifier on a pretrained backbone and write its module and report.

    With TF_CONFIG describing a cluster, every worker runs this same command and fine-tuning
    is data-parallel (the chief writes --out).

    Example: graft train data/flowers --model efficientnet_lite0.imagenet --out runs/flowers
    --fine-tune-blocks 2 --augment strong --folds 5
    """
    import graft

    if len(label_column) > 1 or labels is not None:
        single_only = {
            "--fine-tune-blocks": fine_tune_blocks,
            "--fine-tune-layers": fine_tune_layers,
            "--folds": folds,
            "--unlabeled": unlabeled,
            "--split-column": split_column,
            "--hidden-units": hidden_units,
            "--prune-sparsity": prune_sparsity,
            "--resume": resume,
            "--track": track or tracking_uri,
            "--register": register,
            "--head sgd": head == "sgd",
        }
        used = [name for name, value in single_only.items() if value]
        if used:
            from graft.errors import InvalidArgumentError, received

            raise InvalidArgumentError(
                "Multi-task training fits one convex head per task on the shared features; "
                f"these options are single-task only: {', '.join(used)}. "
                f"{received(options=used)}"
            )
        _train_tasks(data, model, out, label_column, labels, text_column, class_weight, seed)
        return
    (label_column,) = label_column
    from graft.training.distributed import cluster_from_env

    cluster = cluster_from_env()
    if cluster is not None and not cluster.is_chief:  # the chief tracks and registers
        tracking_uri, track, register, alias = None, False, None, None
    tracker = start_tracking(tracking_uri, track, tracking_optional, register, alias)
    splits = load_splits(
        data,
        out=out,
        resume=resume,
        seed=seed,
        text_column=text_column,
        label_column=label_column,
        split_column=split_column,
        folds=folds,
    )
    with stage_progress() as (progress, _):
        run = graft.train(
            splits if splits is not None else data,
            model,
            out=out,
            resume=resume,
            progress=progress,
            head=head,
            lam=lam,
            transform=transform,
            class_weight=class_weight,
            folds=folds,
            unlabeled=str(unlabeled) if unlabeled else None,
            unlabeled_column=text_column,
            pseudo_threshold=pseudo_threshold,
            pseudo_rounds=pseudo_rounds,
            epochs=epochs,
            fine_tune_blocks=fine_tune_blocks,
            fine_tune_layers=fine_tune_layers,
            fine_tune_epochs=fine_tune_epochs,
            batch_size=batch_size,
            lr=lr,
            fine_tune_lr=fine_tune_lr,
            hidden_units=hidden_units,
            dropout=dropout,
            label_smoothing=label_smoothing,
            augment="none" if no_augment else augment,
            seed=seed,
            prune_sparsity=prune_sparsity,
            prune_initial=prune_initial,
        )
    if run is None:
        console.print(
            f"Worker {cluster.task} of {cluster.workers}: fine-tuning done; the chief writes "
            "the run folder, the module and the report."
        )
        return
    if run.folds:
        f = run.folds
        per_fold = ", ".join(f"{r['accuracy']:.4f}" for r in f["per_fold"])
        console.print(
            f"Cross-validation, {f['k']} folds: accuracy [bold]{f['accuracy_mean']:.4f} "
            f"+- {f['accuracy_sd']:.4f}[/] (folds: {per_fold}); the table pools the "
            "out-of-fold predictions"
        )
    _print_metrics(run.metrics, f"Run {run.directory}")
    if run.selection.get("pseudo"):
        p = run.selection["pseudo"]
        console.print(
            f"Pseudo-labels: {p['selected']} of {p['unlabeled']} unlabelled examples at p >= "
            f"{p['threshold']:g}; validation accuracy {p['val_accuracy_before']:.4f} -> "
            f"{p['val_accuracy_after']:.4f}: {'kept' if p['kept'] else 'not kept (no gain)'}"
        )
    head = (run.selection or {}).get("head") or {}
    if head.get("kind") == "convex":
        transform = {"power": "power-normalised", "none": "standardised"}.get(
            head.get("transform"), head.get("transform")
        )
        console.print(
            f"Head: logistic regression (convex, L-BFGS) on {transform} features, L2 strength "
            f"{head['lam']:.3g} chosen by {head.get('selection', 'cross-validation')}",
            highlight=False,
        )
    if run.selection:
        console.print(f"Kept: {run.selection['kept']} ({run.selection['reason']})")
    timing = ", ".join(
        f"{k.removesuffix('_s')} {v:.1f}s" for k, v in run.timings.items() if k.endswith("_s")
    )
    console.print(f"Time: {timing} (features via {run.timings['features_runtime']})")
    console.print(f"Module: {run.module_dir}")
    console.print(f"Report: {run.report}")
    finish_tracking(tracker, run.directory, register, alias)


def _train_tasks(data, model, out, label_columns, labels, text_column, class_weight, seed):
    import graft

    with stage_progress() as (progress, _):
        run = graft.train_tasks(
            data,
            model,
            out=out,
            label_columns=label_columns,
            labels=labels,
            text_column=text_column,
            class_weight=class_weight,
            seed=seed,
            progress=progress,
        )
    table = Table(
        "task",
        "classes",
        "test accuracy",
        "macro F1",
        "test examples",
        title=f"Run {run.directory}",
    )
    for task in run.tasks:
        m = run.metrics[task]
        table.add_row(
            task,
            str(len(run.class_names[task])),
            f"{m['accuracy']:.4f}",
            f"{m['macro_f1']:.4f}",
            str(m["examples"]),
        )
    print_table(table)
    console.print(
        f"Features: one pass, {run.timings['features_s']:.1f}s; heads "
        f"{run.timings['heads_s']:.1f}s (one convex head per task, L2 strength by 5-fold "
        "cross-validation; a missing label leaves that example out of that task only)",
        highlight=False,
    )
    console.print(f"Module: {run.module_dir}")
    console.print(f"Report: {run.report}")


def _prediction_json(r) -> dict:
    return {
        "label": r.label,
        "probability": round(r.probability, 6),
        "top_k": [{"label": lab, "probability": round(p, 6)} for lab, p in r.top_k],
    }


def _print_metrics(metrics: dict, title: str) -> None:
    table = Table(title=title, show_header=False)
    table.add_row("accuracy", f"{metrics['accuracy']:.4f}")
    for k, v in metrics["top_k_accuracy"].items():
        table.add_row(f"top-{k} accuracy", f"{v:.4f}")
    table.add_row("macro F1", f"{metrics['macro_f1']:.4f}")
    table.add_row("test examples", str(metrics["examples"]))
    if metrics.get("skipped"):
        table.add_row("skipped files", str(metrics["skipped"]))
    print_table(table)


@handle_errors
def evaluate(
    module: Annotated[str, typer.Argument(help=MODULE_HELP)],
    data: Annotated[Path, typer.Argument(help="Labelled data: a folder or a .csv/.tsv/.jsonl.")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder.")] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels", help="Multi-task images: the labels CSV (file + one column per task)."
        ),
    ] = None,
    text_column: TextColumn = "text",
    track: TrackOption = False,
    tracking_uri: TrackingUri = None,
    tracking_optional: TrackingOptional = False,
) -> None:
    """Evaluate a classifier module on labelled data and write report.html.

    Example: graft evaluate runs/flowers/module data/flowers_test --out eval/flowers
    """
    import graft

    tracker = start_tracking(tracking_uri, track, tracking_optional)
    report = graft.evaluate(module, data, out=out, labels=labels, text_column=text_column)
    if "tasks" in report.metrics:
        table = Table("task", "accuracy", "macro F1", "examples", title=f"Evaluation of {module}")
        for task, m in report.metrics["tasks"].items():
            table.add_row(task, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", str(m["examples"]))
        print_table(table)
    else:
        _print_metrics(report.metrics, f"Evaluation of {module}")
    console.print(f"Report: {report.html}")
    if tracker is not None:
        params = {"module": str(module), "data": Path(data).name}
        run_id = tracker.log_folder(Path(report.html).parent, "graft evaluate", params)
        console.print(f"MLflow run: {run_id}")


@handle_errors
def predict(
    module: Annotated[str, typer.Argument(help=MODULE_HELP)],
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, or texts for text models (--engine ray: folders too)."),
    ],
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Labels per input.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    engine: EngineOption = "local",
    address: AddressOption = None,
    actors: ActorsOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the predictions to this .parquet file (input, label, probability, "
            "top_k_labels, top_k_probabilities) instead of printing them.",
        ),
    ] = None,
) -> None:
    """Predict label names for image files or texts.

    Example: graft predict runs/flowers/module photo1.jpg photo2.png --top-k 3

    Example: graft predict runs/flowers photos/ --engine ray --address auto --out preds.parquet
    """
    import graft
    from graft.batch.features import check_engine
    from graft.errors import InvalidArgumentError, received

    if top_k < 1:
        raise InvalidArgumentError(f"--top-k must be at least 1. {received(top_k=top_k)}")
    check_engine(engine)
    if out is not None:
        from graft.batch.parquet import check_target

        check_target(out)
    if engine == "ray":
        from graft.batch.predict import predict_ray
        from graft.cli.features import verbose

        results = predict_ray(
            module, inputs, top_k, address=address, actors=actors, verbose=verbose()
        )
    else:
        results = graft.predict(module, inputs, top_k=top_k)
    for skipped in results.skipped:
        err_console.print(
            f"[yellow]Skipped[/] {skipped.item}: {skipped.reason}", highlight=False, soft_wrap=True
        )
    if out is not None:
        from graft.batch.predict import write_predictions

        written = write_predictions(out, results)
        console.print(f"{len(results)} predictions written to {written}", highlight=False)
        return
    if as_json:
        for r in results:
            line = {"input": r.item, **_prediction_json(r)}
            if r.tasks:
                line["tasks"] = {name: _prediction_json(t) for name, t in r.tasks.items()}
            typer.echo(json.dumps(line))
        return
    if results and results[0].tasks:
        tasks = list(results[0].tasks)
        table = Table("input", *tasks)
        for r in results:
            cells = [", ".join(f"{lab} ({p:.3f})" for lab, p in r.tasks[t].top_k) for t in tasks]
            table.add_row(r.item, *cells)
        print_table(table)
        return
    table = Table("input", "label", "probability", *(["top-k"] if top_k > 1 else []))
    for r in results:
        extra = [", ".join(f"{lab} ({p:.3f})" for lab, p in r.top_k)] if top_k > 1 else []
        table.add_row(r.item, r.label, f"{r.probability:.4f}", *extra)
    print_table(table)
