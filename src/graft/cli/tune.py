"""``graft tune``: hyperparameter search, then the best configuration trained and saved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
    load_splits,
    stage_progress,
    start_tracking,
)
from graft.cli.train import ModelOption


def _params(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


@handle_errors
def tune(
    data: TrainingData,
    model: ModelOption = "efficientnet_lite0.imagenet",
    trials: Annotated[
        int, typer.Option(help="Finished trials to reach (resumed ones count).")
    ] = 20,
    timeout: Annotated[
        float | None, typer.Option(help="Start no new trial after this many seconds.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Run folder (default runs/tune-<time>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the search in --out; finished trials are kept.")
    ] = False,
    fine_tune: Annotated[
        bool,
        typer.Option(help="Also search fine-tuning depth (0-3 top blocks) and learning rate."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of the split, folds, sampler, training.")] = 0,
    text_column: TextColumn = "text",
    label_column: LabelColumn = "label",
    split_column: SplitColumn = None,
    track: TrackOption = False,
    tracking_uri: TrackingUri = None,
    tracking_optional: TrackingOptional = False,
    register: Register = None,
    alias: Alias = None,
) -> None:
    """Search head (and fine-tuning) settings with Optuna, then train and save the best.

    Trials train heads on cached features and are scored by 5-fold cross-validated accuracy
    on train+val; graft's default configuration is trial 0. The study is RUN/study.db
    (optuna-dashboard RUN/study.db shows it); a killed search continues with --resume.

    Example: graft tune data/flowers --model efficientnet_lite0.imagenet --trials 30
    --out runs/flowers-tuned
    """
    import graft
    from graft.cli.train import _print_metrics
    from graft.errors import InvalidArgumentError, received

    if trials < 1:
        raise InvalidArgumentError(f"--trials must be at least 1. {received(trials=trials)}")
    tracker = start_tracking(tracking_uri, track, tracking_optional, register, alias)
    splits = load_splits(
        data,
        out=out,
        resume=resume,
        seed=seed,
        text_column=text_column,
        label_column=label_column,
        split_column=split_column,
    )
    with stage_progress() as (progress, bar):

        def on_trial(r: dict) -> None:
            value = f"{r['value']:.4f}" if r["value"] is not None else "-"
            bar.console.print(
                f"trial {r['number']}{' (default)' if r['default'] else ''}: "
                f"{r['state'].lower()} {value} in {r['seconds']:.1f}s  {_params(r['params'])}"
            )

        result = graft.tune(
            splits if splits is not None else data,
            model,
            out=out,
            trials=trials,
            timeout=timeout,
            resume=resume,
            fine_tune=fine_tune,
            seed=seed,
            progress=progress,
            on_trial=on_trial,
        )
    console.print(
        f"Best: trial {result.best_number}, cross-validated accuracy "
        f"[bold]{result.best_value:.4f}[/] ({_params(result.best_params)})"
    )
    if result.selection:
        console.print(result.selection)
    default = next((t for t in result.trials if t["default"] and t["value"] is not None), None)
    if default:
        console.print(f"Default configuration (trial {default['number']}): {default['value']:.4f}")
    _print_metrics(result.run.metrics, f"Best configuration, test split of {result.directory}")
    console.print(f"Module: {result.module_dir}")
    console.print(f"Report: {result.report}")
    console.print(f"Trials: {result.directory / 'trials.csv'}; best settings in run.json")
    console.print(f"Study: optuna-dashboard {result.directory / 'study.db'}")
    finish_tracking(tracker, result.directory, register, alias)
