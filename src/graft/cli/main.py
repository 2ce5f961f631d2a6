"""Entry point of the ``graft`` command."""

from __future__ import annotations

import os
import sys

import typer

from graft import __version__
from graft.cli import (
    cache,
    ensemble,
    explain,
    export,
    features,
    hub,
    models,
    registry,
    rl,
    runs,
    serve,
    train,
    tune,
)
from graft.cli._common import show_notices

app = typer.Typer(
    name="graft",
    help="Reuse pretrained models offline: zoo, transfer learning, export, hub and serving.\n\n"
    "TensorFlow's native start-up logging and dependencies' warnings are hidden; add --verbose "
    "(anywhere on the line) or set GRAFT_VERBOSE=1 to see everything.\n\n"
    "Example: graft models list 'efficientnet*'",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(models.app, name="models")
app.add_typer(hub.app, name="hub")
app.add_typer(cache.app, name="cache")
app.add_typer(runs.app, name="runs")
app.add_typer(rl.app, name="rl")
app.command("train")(train.train)
app.command("tune")(tune.tune)
app.command("evaluate")(train.evaluate)
app.command("predict")(train.predict)
app.command("features")(features.features)
app.command("ensemble")(ensemble.ensemble)
app.command("explain")(explain.explain)
app.command("export")(export.export)
app.command("serve")(serve.serve)
app.command("register")(registry.register)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"graft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """graft command line."""
    show_notices()


def main() -> None:
    from graft import _quiet

    if _quiet.verbose_requested(sys.argv):
        os.environ.setdefault("GRAFT_VERBOSE", "1")  # for libraries quieted later (Ray)
    else:
        _quiet.quiet_python()
        _quiet.filter_native_stderr()
    app()


if __name__ == "__main__":
    main()
