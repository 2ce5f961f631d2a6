"""``graft runs``: the run folders on this machine, one run in detail, several side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from graft.cli._common import console, handle_errors, print_table

app = typer.Typer(
    help="List, show and compare run folders of graft train, tune and ensemble.\n\n"
    "Example: graft runs ls runs",
    no_args_is_help=True,
)

_STATUS = {"finished": "green", "resumable": "yellow", "killed": "red"}


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _duration(seconds: float | None) -> str:
    if not seconds:
        return "—"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


@app.command("ls")
@handle_errors
def ls(
    root: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """List the runs under ROOT, newest first: name, date, backbone, data, result (test
    accuracy, or an rl run's mean return), time,
    status (finished, resumable: --resume continues from its last checkpoint, killed: stopped
    before its first checkpoint).

    Example: graft runs ls runs
    """
    from graft.runs import find_runs

    runs = find_runs(root)
    if as_json:
        for run in runs:
            typer.echo(json.dumps(run.summary()))
        return
    if not runs:
        console.print(f"No run folders under {root}.")
        return
    table = Table(
        "run", "date", "kind", "backbone", "data", "result", "time", "status", box=box.SIMPLE
    )
    for run in runs:
        status = f"[{_STATUS[run.status]}]{run.status}[/]"
        if run.progress:
            status += f" ({run.progress})"
        table.add_row(
            run.name,
            time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started)),
            run.kind,
            run.backbone,
            run.data,
            run.result,
            _duration(run.seconds),
            status,
        )
    print_table(table)


@app.command("show")
@handle_errors
def show(
    run: Annotated[Path, typer.Argument(help="A run folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one run: status, data, backbone, results, what was kept and why, its config.

    Example: graft runs show runs/flowers
    """
    from graft.runs import headline, read_run

    info = read_run(run)
    if as_json:
        typer.echo(
            json.dumps(
                {**info.summary(), "results": headline(info), "config": info.config},
                indent=2,
                default=str,
            )
        )
        return
    table = Table(show_header=False, box=box.SIMPLE, title=f"Run {info.path}")
    for key, value in info.summary().items():
        if key not in ("name", "path") and value not in ("", None):
            if key == "seconds":
                table.add_row("time", _duration(value))
            else:
                table.add_row(key, _fmt(value))
    for key, value in headline(info).items():
        if key not in ("status", "accuracy", "seconds", "mean return") and value is not None:
            table.add_row(key, _fmt(value))
    reason = (info.run.get("selection") or {}).get("reason")
    if reason:
        table.add_row("why", reason)
    print_table(table)
    config = Table("setting", "value", box=box.SIMPLE, title="config.json")
    settings = info.config.get("config", info.config) if info.kind == "rl" else info.config
    for key, value in settings.items():
        config.add_row(key, json.dumps(value))
    print_table(config)
    if (info.path / "report.html").is_file():
        console.print(f"Report: {info.path / 'report.html'}")


@app.command("compare")
@handle_errors
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Two or more run folders.")],
    everything: Annotated[
        bool, typer.Option("--all", help="Show every setting, not only those that differ.")
    ] = False,
) -> None:
    """Compare runs side by side: the settings that differ, then their results.

    Example: graft runs compare runs/flowers runs/flowers-ft
    """
    from graft.runs import compare as compare_runs
    from graft.runs import read_run

    infos = [read_run(r, str(r)) for r in runs]
    config_rows, result_rows = compare_runs(infos, everything=everything)
    names = [i.name for i in infos]
    title = "settings" if everything else "settings that differ"
    table = Table(title, *names, box=box.SIMPLE_HEAD)
    for key, *values in config_rows:
        table.add_row(key, *(v if isinstance(v, str) else json.dumps(v) for v in values))
    if not config_rows:
        table.add_row("(none)", *("" for _ in names))
    print_table(table)
    results = Table("results", *names, box=box.SIMPLE_HEAD)
    for key, *values in result_rows:
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        lower_is_better = ("seconds", "test examples", "sd of return", "steps")
        best = max(numbers) if numbers and key not in lower_is_better else None
        show = (lambda v: _duration(v)) if key == "seconds" else _fmt
        cells = [f"[bold]{show(v)}[/]" if v == best is not None else show(v) for v in values]
        results.add_row(key, *cells)
    print_table(results)
