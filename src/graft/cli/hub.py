"""``graft hub``: run a hub, publish to it, browse it and pull from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from graft.cli._common import console, err_console, handle_errors, print_table

app = typer.Typer(
    help="Self-hosted model hub: serve, push, pull, ls, label, yank, seed.\n\n"
    "Example: graft hub serve --root /srv/graft-hub --port 8080",
    no_args_is_help=True,
)

Url = Annotated[str, typer.Option("--to", "--url", help="The hub: host:port or http(s)://...")]
Token = Annotated[
    str | None,
    typer.Option(help="Write token (default: $GRAFT_HUB_TOKEN).", envvar="GRAFT_HUB_TOKEN"),
]


@app.command("serve")
@handle_errors
def serve(
    root: Annotated[Path, typer.Option(help="Directory for the index, uploads and modules.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    storage: Annotated[
        str | None,
        typer.Option(help="s3://bucket/prefix: keep archives in S3-compatible storage."),
    ] = None,
    s3_endpoint_url: Annotated[
        str | None, typer.Option(help="S3 endpoint, e.g. http://minio:9000.")
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Write tokens, one per line (default ROOT/tokens, made on first run)."),
    ] = None,
    refresh_seconds: Annotated[
        float, typer.Option(help="With --storage: re-read the bucket this often (0: never).")
    ] = 30.0,
) -> None:
    """Run a hub server: REST API under /api/v1, HTML catalog at /, OpenAPI at /openapi.json.

    Example: graft hub serve --root ./hub --port 8080
    """
    from graft.hub.server.run import serve as run

    run(
        root,
        host,
        port,
        storage=storage,
        s3_endpoint_url=s3_endpoint_url,
        token_file=token_file,
        refresh_seconds=refresh_seconds,
    )


@app.command("push")
@handle_errors
def push(
    module: Annotated[
        str, typer.Argument(help="A module directory, or a run folder (its module/ is used).")
    ],
    to: Url,
    name: Annotated[str, typer.Option(help="Name on the hub, e.g. digits.")],
    version: Annotated[int | None, typer.Option(help="Version number (default: next).")] = None,
    label: Annotated[
        list[str] | None, typer.Option(help="Label(s) to point at it, e.g. stable.")
    ] = None,
    token: Token = None,
) -> None:
    """Publish a module to a hub.

    Example: graft hub push runs/digits/module --to localhost:8080 --name digits --label stable
    """
    from graft.hub import push as do_push

    record = do_push(module, to, name, version=version, labels=tuple(label or ()), token=token)
    labels = f" ({', '.join(label)})" if label else ""
    console.print(
        f"Published [bold]{name}@{record['version']}[/]{labels}: {record['size']:,} bytes, "
        f"sha256 {record['sha256'][:16]}…",
        highlight=False,
    )
    console.print(f'Load it with graft.load("hub://{_hostport(to)}/{name}@{record["version"]}")')


def _hostport(url: str) -> str:
    from graft.hub.names import base_url

    return base_url(url).split("://", 1)[1]


@app.command("pull")
@handle_errors
def pull(
    handle: Annotated[str, typer.Argument(help="hub://host:port/name@ref or an archive URL.")],
) -> None:
    """Download a module into the cache (labels are re-resolved) and print its directory.

    Example: graft hub pull hub://localhost:8080/digits@stable
    """
    from graft.hub import pull as do_pull
    from graft.module.manifest import Manifest

    path = do_pull(handle)
    manifest = Manifest.read(path / "manifest.json")
    err_console.print(f"{manifest.name} ({manifest.task}) is in the cache:", highlight=False)
    typer.echo(str(path))


@app.command("ls")
@handle_errors
def ls(
    url: Annotated[str, typer.Argument(help="The hub: host:port or http(s)://...")],
    query: Annotated[str | None, typer.Argument(help="Words to search for.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
    tag: Annotated[str | None, typer.Option(help="Only modules with this tag.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List or search the modules on a hub.

    Example: graft hub ls localhost:8080 digits --task image-classifier
    """
    from graft.hub import HubClient

    with HubClient(url) as client:
        modules = client.list(query=query, task=task, tag=tag)
    if as_json:
        typer.echo(json.dumps(modules, indent=2))
        return
    table = Table(title=f"{len(modules)} modules on {url}", box=box.SIMPLE_HEAD)
    for column in ("name", "task", "latest", "labels", "downloads", "description"):
        table.add_column(column, no_wrap=column != "description")
    for m in modules:
        table.add_row(
            m["name"],
            m["task"] or "",
            str(m["latest_version"]),
            ", ".join(m["labels"]),
            str(m["downloads"]),
            m["description"] or "",
        )
    print_table(table)


@app.command("label")
@handle_errors
def label(
    url: Annotated[str, typer.Argument(help="The hub.")],
    name: Annotated[str, typer.Argument(help="Module name.")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="e.g. stable.")],
    version: Annotated[int, typer.Argument(help="Version the label points at.")],
    token: Token = None,
) -> None:
    """Point a label at a version (creating or moving it).

    Example: graft hub label localhost:8080 digits stable 3
    """
    from graft.hub import HubClient

    with HubClient(url, token=token) as client:
        labels = client.set_label(name, label_name, version)["labels"]
    console.print(", ".join(f"{k} -> {v}" for k, v in labels.items()), highlight=False)


@app.command("yank")
@handle_errors
def yank(
    url: Annotated[str, typer.Argument(help="The hub.")],
    name: Annotated[str, typer.Argument(help="Module name.")],
    version: Annotated[int, typer.Argument(help="Version to yank.")],
    reason: Annotated[str, typer.Option(help="Why (shown to users).")] = "",
    undo: Annotated[bool, typer.Option("--undo", help="Restore the version.")] = False,
    token: Token = None,
) -> None:
    """Yank a version: `latest` skips it; pinned pulls still work with a warning.

    Example: graft hub yank localhost:8080 digits 2 --reason "trained on the wrong split"
    """
    from graft.hub import HubClient

    with HubClient(url, token=token) as client:
        client.yank(name, version, reason, undo=undo)
    console.print(f"{name}@{version} {'restored' if undo else 'yanked'}.", highlight=False)


@app.command("seed")
@handle_errors
def seed(
    to: Url,
    pattern: Annotated[str | None, typer.Argument(help="Only zoo names matching this.")] = None,
    label: Annotated[str, typer.Option(help="Label for each published entry.")] = "stable",
    token: Token = None,
) -> None:
    """Publish the zoo's entries to a hub (those whose weights are on this machine), each
    under its zoo name and zoo version, so seeding twice publishes nothing new.

    Example: graft hub seed --to localhost:8080 'efficientnet_lite*'
    """
    from graft.errors import ConflictError, WeightsError
    from graft.hub import HubClient
    from graft.models import list as list_specs
    from graft.models import materialize

    published = skipped = 0
    with HubClient(to, token=token) as client:
        for spec in list_specs(pattern):
            try:
                path = materialize(spec.name)
            except WeightsError as exc:
                err_console.print(f"[yellow]skip[/] {spec.name}: {exc}", highlight=False)
                skipped += 1
                continue
            try:
                version = int(spec.version) if spec.version.isdigit() else None
                record = client.publish(
                    path, spec.name, version=version, labels=(label,) if label else ()
                )
            except ConflictError:
                console.print(f"{spec.name}: already on the hub", highlight=False)
                continue
            console.print(f"{spec.name}@{record['version']} published", highlight=False)
            published += 1
    console.print(f"{published} published, {skipped} skipped (no weights here).")
