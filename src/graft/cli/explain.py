"""``graft explain``: HiResCAM, Grad-CAM or SHAP explanations of a classifier's predictions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from graft.cli._common import MODULE_HELP, console, err_console, handle_errors, print_table


@handle_errors
def explain(
    module: Annotated[str, typer.Argument(help=MODULE_HELP)],
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files or folders of images, or texts for text models."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Folder for the overlays (images), index.html and explanations.json.",
        ),
    ] = Path("explanations"),
    method: Annotated[
        str,
        typer.Option(help="auto (HiResCAM for images, SHAP for texts), hirescam, gradcam or shap."),
    ] = "auto",
    label: Annotated[
        str | None,
        typer.Option(
            "--class", help="Explain this label for every input (default: the predicted one)."
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Deletion check: does hiding the top 20% most-attributed parts lower the "
            "probability more than hiding a random 20%?",
        ),
    ] = False,
    max_evals: Annotated[
        int | None, typer.Option(help="SHAP: model evaluations per input (300 images, 200 texts).")
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            help="Grad-CAM/HiResCAM: a layer of the backbone (default: its last 4-D one; "
            "HiResCAM: the end of the stage before)."
        ),
    ] = None,
    task: Annotated[
        str | None, typer.Option(help="A multi-task module: the task to explain (default: first).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Explain why a classifier predicts what it does: where an image model looked, which
    words moved a text model.

    Example: graft explain runs/digits/module data/digits/3 --out why --check
    """
    import graft

    results = graft.explain(
        module,
        inputs,
        out=out,
        method=method,
        label=label,
        check=check,
        max_evals=max_evals,
        layer=layer,
        task=task,
    )
    for skipped in results.skipped:
        err_console.print(
            f"[yellow]Skipped[/] {skipped.item}: {skipped.reason}", highlight=False, soft_wrap=True
        )
    if as_json:
        for e in results:
            typer.echo(json.dumps(e.to_dict() | ({"file": str(out / e.file)} if e.file else {})))
        if results.check:
            typer.echo(json.dumps({"deletion_check": results.check.to_dict()}))
        return
    text = not results[0].file
    table = Table("input", "explained", "p", "predicted", "top words" if text else "overlay")
    for e in results:
        detail = (
            ", ".join(f"{w} ({v:+.3f})" for w, v in e.top_words(3)) if text else str(out / e.file)
        )
        table.add_row(
            e.item if len(e.item) <= 60 else e.item[:57] + "...",
            e.label,
            f"{e.probability:.3f}",
            e.predicted,
            detail,
        )
    print_table(table)
    if results.check:
        console.print(results.check.describe(), highlight=False)
    console.print(f"Gallery: {out / 'index.html'}", highlight=False)
