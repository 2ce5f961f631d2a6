"""Shared CLI pieces: the console, option aliases and error handling."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
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


F = TypeVar("F", bound=Callable)

Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]


def quiet_tensorflow() -> None:
    """Silences TensorFlow's C++ start-up chatter for CLI output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
