"""Shared CLI pieces: the console, option aliases and error handling."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console

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
            bar.update(tasks[stage], completed=done)

        yield progress, bar


def load_splits(data, *, out, resume: bool, seed: int, text_column, label_column, split_column):
    """The data split as ``graft.data.load`` splits it, with a one-line summary; ``None`` when
    a run in ``out`` is resumed (it reads its own saved splits)."""
    from graft.data import load

    if resume and out is not None and (out / "splits.json").is_file():
        return None
    kwargs = {"seed": seed}
    if not data.is_dir():
        kwargs.update(text_column=text_column, label_column=label_column, split_column=split_column)
    splits = load(str(data), **kwargs)
    console.print(
        f"Data: {len(splits.train)} train, {len(splits.val)} validation, "
        f"{len(splits.test)} test; {len(splits.class_names)} classes"
        + (
            f"; [yellow]{len(splits.skipped)} unreadable file(s) skipped[/]"
            if splits.skipped
            else ""
        )
    )
    return splits


F = TypeVar("F", bound=Callable)

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


def handle_errors(func: F) -> F:
    """Turns graft's errors into one red line and exit code 1 (tracebacks with GRAFT_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from graft.errors import GraftError

        try:
            return func(*args, **kwargs)
        except GraftError as exc:
            if os.environ.get("GRAFT_DEBUG"):
                raise
            err_console.print(f"[bold red]Error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
