"""``graft ensemble``: stack several backbones into one classifier module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graft.cli._common import (
    Alias,
    LabelColumn,
    Register,
    SplitColumn,
    TextColumn,
    TrackingOptional,
    TrackingUri,
    TrackOption,
    TrainingData,
    console,
    finish_tracking,
    handle_errors,
    print_table,
    stage_progress,
    start_tracking,
)


@handle_errors
def ensemble(
    data: TrainingData,
    model: Annotated[
        list[str],
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="A member (give two or more): a feature-vector or text-embedding zoo entry, "
            "module directory or hub handle; for texts also 'tfidf' (word + bigram TF-IDF).",
        ),
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default runs/<time>).")
    ] = None,
    folds: Annotated[
        int, typer.Option(help="Folds of train + validation for the out-of-fold predictions.")
    ] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the split and the folds.")] = 0,
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    split_column: SplitColumn = None,
    track: TrackOption = False,
    tracking_uri: TrackingUri = None,
    tracking_optional: TrackingOptional = False,
    register: Register = None,
    alias: Alias = None,
) -> None:
    """Stack several backbones into ONE module (raw input -> probabilities).

    Each member's head predicts out of fold; a logistic-regression meta-learner or the plain
    mean of the members, whichever scores better out of fold, combines them.

    Example: graft ensemble data/flowers --model efficientnet_lite0.imagenet
    --model efficientnet_lite1.imagenet --out runs/flowers-ens
    """
    import graft

    tracker = start_tracking(tracking_uri, track, tracking_optional, register, alias)
    with stage_progress() as (progress, _):
        run = graft.ensemble(
            data,
            models=model,
            out=out,
            folds=folds,
            seed=seed,
            text_column=text_column,
            label_column=label_column,
            split_column=split_column,
            progress=progress,
        )
    table = Table(
        "model",
        "role",
        f"cross-validated accuracy ({run.config.folds} folds)",
        "test accuracy",
        title=f"Ensemble {run.directory}: members vs their combinations",
    )
    for row in run.members:
        style = "bold" if row["role"] == "ensemble" else None
        table.add_row(
            row["name"],
            row["role"],
            f"{row['oof_accuracy']:.4f}",
            f"{row['test_accuracy']:.4f}",
            style=style,
        )
    print_table(table)
    metrics = run.metrics
    console.print(f"Saved: {run.combination}", highlight=False)
    console.print(f"Test examples: {metrics['examples']}; macro F1 {metrics['macro_f1']:.4f}")
    console.print(f"Module: {run.module_dir}")
    console.print(f"Report: {run.report}")
    finish_tracking(tracker, run.directory, register, alias)
