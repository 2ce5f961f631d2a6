"""``graft models``: list, inspect and fetch zoo entries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from graft.cli._common import console, handle_errors, print_table

app = typer.Typer(
    help="Browse the model zoo and fetch entries into the local cache.",
    no_args_is_help=True,
)


def _human(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


@app.command("list")
@handle_errors
def list_models(
    pattern: Annotated[
        str | None, typer.Argument(help="Shell pattern or substring, e.g. 'efficientnet*'.")
    ] = None,
    task: Annotated[
        str | None,
        typer.Option(help="image-feature-vector, image-classifier, text-embedding, ..."),
    ] = None,
) -> None:
    """List zoo entries.

    Example: graft models list 'efficientnet*' --task image-feature-vector
    """
    from graft.models import is_materialized
    from graft.models import list as list_specs

    specs = list_specs(pattern, task)
    table = Table(title=f"graft zoo ({len(specs)} entries)", box=box.SIMPLE_HEAD)
    for column in ("name", "task", "input", "dim", "params", "cached"):
        table.add_column(column, no_wrap=True, justify="right" if column == "params" else "left")
    for s in specs:
        size = "text" if s.inputs.kind == "text" else f"{s.inputs.size[0]}px"
        table.add_row(
            s.name,
            s.task,
            size,
            str(s.outputs.dim),
            _human(s.params),
            "yes" if is_materialized(s.name) else "",
        )
    print_table(table)


@app.command("info")
@handle_errors
def info(name: Annotated[str, typer.Argument(help="A zoo name, arch.tag.")]) -> None:
    """Show an entry's metadata, provenance and parameter count.

    Example: graft models info efficientnet_lite0.imagenet
    """
    from graft.models import get
    from graft.models.zoo import module_path
    from graft.module.manifest import Manifest

    spec = get(name)
    table = Table(show_header=False, title=spec.name)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("description", spec.description),
        ("task", spec.task),
        ("input", _describe_input(spec.inputs)),
        ("output", f"{spec.outputs.kind}, {spec.outputs.dim}-d"),
        ("parameters", f"{spec.params:,}"),
        ("license", spec.license),
        ("source", spec.source),
    ]
    path = module_path(spec)
    if (path / "manifest.json").is_file():
        manifest = Manifest.read(path / "manifest.json")
        prov = manifest.provenance
        size = sum(f.size for f in manifest.files.values())
        rows += [
            ("converted from", prov.converted_from if prov else ""),
            ("source sha256", prov.source_sha256 if prov else ""),
            ("checked against", prov.reference if prov and prov.reference else "-"),
            (
                "layer groups",
                f"{len(manifest.groups)}: " + ", ".join(g.name for g in manifest.groups),
            ),
            ("labels", f"{len(manifest.labels)} classes" if manifest.labels else "-"),
            ("cached at", f"{path} ({size / 1e6:.1f} MB)"),
        ]
    else:
        rows.append(("cached at", f"not yet: run `graft models fetch {spec.name}`"))
    for key, value in rows:
        table.add_row(key, value)
    print_table(table)


def _describe_input(inputs) -> str:
    if inputs.kind == "text":
        return f"strings; {inputs.normalization}"
    low, high = inputs.value_range
    h, w = inputs.size
    return f"float32 images {h}x{w}x3 in [{low:g}, {high:g}]; {inputs.normalization}"


@app.command("fetch")
@handle_errors
def fetch(
    name: Annotated[str, typer.Argument(help="A zoo name, arch.tag.")],
    weights_file: Annotated[
        Path | None,
        typer.Option(help="An already-downloaded weights file (keras.applications entries)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild even if already cached.")] = False,
) -> None:
    """Materialise an entry into the local cache (convert weights once).

    Example: graft models fetch mobilenet_v2.imagenet --weights-file ~/Downloads/w.h5
    """
    from graft.models import get, materialize

    spec = get(name)
    if weights_file is not None:
        from graft.errors import InvalidArgumentError, received
        from graft.models.keras_apps import weights_file as expected_file
        from graft.models.weights import install_weights_file

        if not spec.builder.startswith("graft.models.keras_apps:"):
            raise InvalidArgumentError(
                f"--weights-file applies to keras.applications entries; {spec.name} ships its "
                f"weights in a Python package. {received(name=spec.name)}"
            )
        filename, _, expected_hash = expected_file(spec)
        install_weights_file(weights_file.expanduser(), filename, expected_hash)
    with console.status(f"Building {spec.name} ..."):
        path = materialize(name, force=force)
    console.print(f"[green]Cached[/] {spec.name} at {path}")
