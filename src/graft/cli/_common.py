"""Shared CLI pieces: the console, option aliases and error handling."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def print_table(table) -> None:
    """Prints a table; when output is piped, wide enough not to cut its columns."""
    if console.is_terminal:
        console.print(table)
    else:
        Console(width=max(console.width, 120)).print(table)


@contextlib.contextmanager
def stage_progress():
    """A progress display with one bar per stage. Yields ``(progress, bar)``: the
    ``progress(stage, done, total)`` callback that ``graft.train``, ``tune`` and ``ensemble``
    take, and the rich ``Progress`` (``bar.console.print`` prints above the bars)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)  # a later pass may count more

        yield progress, bar


def load_splits(
    data, *, out, resume: bool, seed: int, text_column, label_column, split_column, folds: int = 0
):
    """The data split as ``graft.data.load`` splits it, with a one-line summary; ``None`` when
    a run in ``out`` is resumed (it reads its own saved splits)."""
    from graft.data import load

    if resume and out is not None and (out / "splits.json").is_file():
        return None
    kwargs = {"seed": seed}
    if not data.is_dir():
        kwargs.update(text_column=text_column, label_column=label_column, split_column=split_column)
    splits = load(str(data), **kwargs)
    sizes = (
        f"{sum(len(p.items) for p in splits.named().values())} examples in {folds} "
        f"cross-validation folds"
        if folds
        else f"{len(splits.train)} train, {len(splits.val)} validation, {len(splits.test)} test"
    )
    console.print(
        f"Data: {sizes}; {len(splits.class_names)} classes"
        + (
            f"; [yellow]{len(splits.skipped)} unreadable file(s) skipped[/]"
            if splits.skipped
            else ""
        )
    )
    return splits


F = TypeVar("F", bound=Callable)

MODULE_HELP = (
    "A classifier module: its directory, a run folder (its module/ is used), "
    "hub://host:port/name@label, models:/NAME@alias (MLflow registry) or an archive URL."
)
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
TrainingData = Annotated[
    Path, typer.Argument(help="A folder of class subfolders, or a .csv/.tsv/.jsonl of texts.")
]
TextColumn = Annotated[str, typer.Option(help="Text column of a table.")]
LabelColumn = Annotated[str, typer.Option(help="Label column of a table.")]
SplitColumn = Annotated[
    str | None,
    typer.Option(help="Column of a table naming each row's split: train, val or test."),
]


class _NoticeHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"[dim]{record.getMessage()}[/]", highlight=False, soft_wrap=True)


TrackOption = Annotated[
    bool,
    typer.Option(
        "--track",
        help="Log to MLflow: the local store ./mlruns/mlflow.db, unless --tracking-uri or "
        "MLFLOW_TRACKING_URI names another.",
    ),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (http://host:5000, sqlite:///path/mlflow.db); turns tracking "
        "on. Default: MLFLOW_TRACKING_URI.",
    ),
]
TrackingOptional = Annotated[
    bool,
    typer.Option(
        "--tracking-optional",
        help="When the tracking store cannot be reached, go on without tracking (and say so).",
    ),
]
Register = Annotated[
    str | None,
    typer.Option(
        "--register", help="Register the module in the MLflow model registry under this name."
    ),
]
Alias = Annotated[
    str | None, typer.Option("--alias", help="Point this registry alias (e.g. champion) at it.")
]


def start_tracking(tracking_uri, track, optional, register=None, alias=None):
    """The MLflow tracker the options ask for, reached before any work starts (``None`` when
    tracking is off)."""
    from graft.errors import InvalidArgumentError, received

    if alias and not register:
        raise InvalidArgumentError(
            f"--alias points at a registered version: add --register NAME. {received(alias=alias)}"
        )
    from graft.tracking import Tracker

    tracker = Tracker.from_options(tracking_uri, track or bool(register), required=not optional)
    if tracker is None:
        return None
    if not tracker.check():
        if register:
            err_console.print(
                f"[yellow]Not registering {register}[/]: tracking is off.", highlight=False
            )
        return None
    console.print(f"Tracking: MLflow at {tracker.uri}, experiment {tracker.experiment!r}")
    return tracker


def finish_tracking(tracker, folder, register=None, alias=None) -> None:
    """Logs a finished run folder (and registers its module) when tracking is on."""
    if tracker is None:
        return
    logged = tracker.log_run(folder, register=register, alias=alias)
    console.print(f"MLflow run: {logged.run_id}")
    if logged.version is not None:
        handle = f"models:/{register}@{alias}" if alias else f"models:/{register}/{logged.version}"
        console.print(
            f"Registered: {register} version {logged.version}; load it with {handle}",
            highlight=False,
            soft_wrap=True,
        )


def show_notices() -> None:
    """Prints graft's one-time notices (``graft.handles.notice``) on stderr."""
    logger = logging.getLogger("graft.notice")
    if not any(isinstance(h, _NoticeHandler) for h in logger.handlers):
        logger.addHandler(_NoticeHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def option_names(func: Callable) -> dict[str, str]:
    """``{python parameter name: its long CLI option}`` for a typer command function."""
    import inspect
    import typing

    from typer.models import OptionInfo

    names = {}
    hints = typing.get_type_hints(func, include_extras=True)
    for name, parameter in inspect.signature(func).parameters.items():
        metadata = getattr(hints.get(name), "__metadata__", ())
        infos = [m for m in metadata if isinstance(m, OptionInfo)]
        if isinstance(parameter.default, OptionInfo):
            infos.append(parameter.default)
        if not infos:
            continue
        # In Annotated, typer.Option("--class", "-c") keeps its first name in ``default``.
        first = infos[0].default if isinstance(infos[0].default, str) else None
        declared = [d for d in (first, *(infos[0].param_decls or ())) if d and d.startswith("--")]
        names[name] = declared[0].split("/")[0] if declared else "--" + name.replace("_", "-")
    return names


def cli_terms(message: str, options: dict[str, str]) -> str:
    """Rewrites the Python parameter names in a library error (``label_column=``) as the
    command's options (``--label-column``).

    Example:
        >>> cli_terms("Pass label_column= with one. Received: label_column='x'",
        ...           {"label_column": "--label-column"})
        "Pass --label-column with one. Received: --label-column='x'"
    """
    for name, option in options.items():
        message = re.sub(rf"(?<![\w.-]){re.escape(name)}=", f"{option}=", message)
        if "_" in name:  # a bare parameter name (fine_tune_blocks must be ...) is unambiguous
            message = re.sub(rf"(?<![\w.-]){re.escape(name)}\b", option, message)
    return re.sub(r"\b([Pp]ass|[Uu]se) (--[\w-]+)= ", r"\1 \2 ", message)


def handle_errors(func: F) -> F:
    """Turns graft's errors (and file-system errors) into one red line in the CLI's terms and
    exit code 1; tracebacks with ``GRAFT_DEBUG=1``."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from graft.errors import GraftError

        try:
            return func(*args, **kwargs)
        except (GraftError, OSError) as exc:
            if os.environ.get("GRAFT_DEBUG"):
                raise
            text = str(exc) if isinstance(exc, GraftError) else f"{type(exc).__name__}: {exc}"
            message = escape(cli_terms(text, option_names(func)))
            err_console.print(f"[bold red]Error:[/] {message}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err_console.print("Interrupted.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
