"""``graft cache``: what the local cache holds; remove or verify entries."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from graft.cli._common import console, err_console, handle_errors, print_table

app = typer.Typer(
    help="Inspect the local module cache ($GRAFT_HOME).\n\nExample: graft cache ls",
    no_args_is_help=True,
)


def _matches(entry, keys: list[str]) -> bool:
    return any(
        k in (entry.key, f"{entry.name}@{entry.version}")
        or entry.key.startswith(k)
        and len(k) >= 8
        or k in entry.refs
        for k in keys
    )


@app.command("ls")
@handle_errors
def ls(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List cached modules: hub downloads (with the handles pointing at them) and zoo entries.

    Example: graft cache ls
    """
    from graft import config
    from graft.hub.cache import entries

    found = entries()
    if as_json:
        rows = [{**e.__dict__, "path": str(e.path), "refs": list(e.refs)} for e in found]
        typer.echo(json.dumps(rows, indent=2))
        return
    total = sum(e.size for e in found)
    table = Table(
        title=f"{len(found)} modules, {total / 1e6:.1f} MB in {config.graft_home()}",
        box=box.SIMPLE_HEAD,
    )
    for column in ("kind", "key", "name", "version", "MB", "handles"):
        table.add_column(column, no_wrap=column != "handles")
    for e in found:
        key = e.key[:16] if e.kind == "hub" else e.key
        table.add_row(e.kind, key, e.name, e.version, f"{e.size / 1e6:.1f}", "\n".join(e.refs))
    print_table(table)


@app.command("rm")
@handle_errors
def rm(
    keys: Annotated[
        list[str] | None,
        typer.Argument(help="sha256 (or its first 8+ characters), name@version, or a handle."),
    ] = None,
    remove_all: Annotated[bool, typer.Option("--all", help="Remove every module.")] = False,
) -> None:
    """Remove cached modules.

    Example: graft cache rm hub://localhost:8080/digits@stable
    """
    from graft.errors import InvalidArgumentError, received
    from graft.hub.cache import entries, remove

    if not keys and not remove_all:
        raise InvalidArgumentError(
            "Name the entries to remove (see `graft cache ls`) or pass --all. "
            + received(keys=keys)
        )
    chosen = [e for e in entries() if remove_all or _matches(e, keys or [])]
    if not chosen:
        raise InvalidArgumentError(
            f"No cached module matches; `graft cache ls` lists them. {received(keys=keys)}"
        )
    for e in chosen:
        remove(e)
        console.print(f"removed {e.kind} {e.name}@{e.version} ({e.key[:16]})", highlight=False)


@app.command("verify")
@handle_errors
def verify() -> None:
    """Check every cached module's files against its manifest; exit 1 if any is damaged.

    Example: graft cache verify
    """
    from graft.hub.cache import entries
    from graft.module.io import verify as verify_module

    bad = 0
    found = entries()
    for e in found:
        try:
            verify_module(e.path)
        except (OSError, ValueError) as exc:
            bad += 1
            err_console.print(f"[red]damaged[/] {e.kind} {e.key[:16]}: {exc}", highlight=False)
    if bad:
        err_console.print(f"{bad} of {len(found)} damaged: remove them with `graft cache rm KEY`.")
        raise typer.Exit(1)
    console.print(f"{len(found)} modules verified.")
