"""``graft features``: compute and cache a backbone's features, locally or on a Ray cluster."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from graft.cli._common import console, err_console, handle_errors

EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: this machine. ray: TFLite actors on a Ray cluster (pip install "
        "'graft\\[ray]'; image models only).",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Ray cluster to join (auto, host:6379 or ray://host:10001); default: a local "
        "in-process one.",
    ),
]
ActorsOption = Annotated[
    int | None,
    typer.Option(
        "--actors",
        help="Ray actors (one TFLite interpreter each, half a CPU reserved); default: one per "
        "cluster CPU.",
    ),
]


def verbose() -> bool:
    """Whether ``--verbose`` / ``GRAFT_VERBOSE`` asked to keep dependencies' logging."""
    return os.environ.get("GRAFT_VERBOSE", "") not in ("", "0")


@handle_errors
def features(
    backbone: Annotated[
        str, typer.Argument(help="A feature-vector module: zoo name, module directory or handle.")
    ],
    data: Annotated[
        list[str],
        typer.Argument(help="Image files or folders (searched recursively); a text file for text."),
    ],
    engine: EngineOption = "local",
    address: AddressOption = None,
    actors: ActorsOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Also write path, sha256 and feature columns to this .parquet file."
        ),
    ] = None,
) -> None:
    """Compute a backbone's features once and cache them where `graft train` looks.

    Then `graft train DATA --model BACKBONE` on this machine computes no feature.

    Example: graft features efficientnet_lite0.imagenet photos/ --engine ray --address auto
    """
    from graft.batch.features import extract_features

    summary = extract_features(
        backbone,
        data,
        engine=engine,
        address=address,
        actors=actors,
        out=out,
        verbose=verbose(),
    )
    for skipped in summary.skipped:
        err_console.print(
            f"[yellow]Skipped[/] {skipped.item}: {skipped.reason}", highlight=False, soft_wrap=True
        )
    rate = f" ({summary.per_second:.1f} per second computed)" if summary.computed else ""
    console.print(
        f"Features ({summary.engine}): {summary.computed} computed, {summary.cached} already "
        f"cached, of {summary.total}, in {summary.seconds:.1f} s{rate}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"Cache: {summary.cache_dir}", highlight=False, soft_wrap=True)
    if summary.out is not None:
        console.print(f"Parquet: {summary.out}", highlight=False, soft_wrap=True)
