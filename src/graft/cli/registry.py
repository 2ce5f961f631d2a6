"""``graft register``: put a module into the MLflow model registry."""

from __future__ import annotations

from typing import Annotated

import typer

from graft.cli._common import MODULE_HELP, TrackingUri, console, handle_errors


@handle_errors
def register(
    module: Annotated[str, typer.Argument(help=MODULE_HELP)],
    name: Annotated[str, typer.Argument(help="Registered model name, e.g. digits.")],
    alias: Annotated[
        str | None, typer.Option("--alias", help="Point this alias (e.g. champion) at it.")
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Register a module as a new version of an MLflow registered model.

    The version is also a pyfunc model: mlflow.pyfunc.load_model("models:/NAME@ALIAS")
    predicts label names.

    The registry is --tracking-uri, else MLFLOW_TRACKING_URI, else the local store
    ./mlruns/mlflow.db.

    Example: graft register runs/digits digits --alias champion
    """
    from graft.tracking import Tracker

    tracker = Tracker.from_options(tracking_uri, track=True)
    tracker.check()
    version = tracker.register(module, name, alias)
    handle = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
    console.print(
        f"Registered {name} version {version} at {tracker.uri}; load it with "
        f'graft.load("{handle}")',
        highlight=False,
    )
