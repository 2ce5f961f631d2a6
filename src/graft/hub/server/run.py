"""Starting the hub server: tokens, storage, uvicorn."""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from graft.errors import InvalidArgumentError, received

log = logging.getLogger(__name__)


def load_tokens(root: Path, token_file: str | Path | None = None) -> tuple[list[str], Path | None]:
    """The write tokens: ``GRAFT_HUB_TOKENS`` (comma-separated), else ``token_file`` (one per
    line), else ``ROOT/tokens``, created with one random token (mode 0600) on first start.

    Returns:
        The tokens and the file they came from (None for the environment).
    """
    env = os.environ.get("GRAFT_HUB_TOKENS", "")
    if env.strip():
        return [t.strip() for t in env.split(",") if t.strip()], None
    path = Path(token_file) if token_file else root / "tokens"
    if token_file and not path.is_file():
        raise InvalidArgumentError(
            f"The token file does not exist. {received(token_file=str(token_file))}"
        )
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    tokens = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return tokens, path


def build(
    root: str | Path,
    *,
    storage: str | None = None,
    s3_endpoint_url: str | None = None,
    token_file: str | Path | None = None,
    refresh_seconds: float = 30.0,
):
    """The ASGI app for a hub rooted at ``root`` (index, temporary uploads, local objects).

    Args:
        root: a local directory.
        storage: ``s3://bucket/prefix`` to keep archives and records in S3-compatible storage.
        s3_endpoint_url: the S3 endpoint (MinIO, Ceph ...); boto3's defaults otherwise.
        token_file: see ``load_tokens``.
        refresh_seconds: with S3 storage, how often to re-read the bucket for what other
            servers published (0: only at start-up).
    """
    from graft.hub.server.app import create_app
    from graft.hub.server.storage import S3Storage
    from graft.hub.server.store import Store

    root = Path(root)
    backend = S3Storage(storage, endpoint_url=s3_endpoint_url) if storage else None
    store = Store(root, backend)
    if backend is not None and refresh_seconds > 0:
        store.refresh_every(refresh_seconds)
    tokens, source = load_tokens(root, token_file)
    app = create_app(store, tokens)
    app.state.token_source = source
    return app


def serve(
    root: str | Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    storage: str | None = None,
    s3_endpoint_url: str | None = None,
    token_file: str | Path | None = None,
    refresh_seconds: float = 30.0,
    log_level: str = "info",
) -> None:
    """Runs the hub until interrupted (uvicorn)."""
    import uvicorn

    app = build(
        root,
        storage=storage,
        s3_endpoint_url=s3_endpoint_url,
        token_file=token_file,
        refresh_seconds=refresh_seconds,
    )
    store = app.state.store
    source = app.state.token_source
    print(f"graft hub: {store.storage.describe()}, index {store.root / 'index.sqlite'}")
    print(f"graft hub: write tokens from {source or 'GRAFT_HUB_TOKENS'}")
    print(f"graft hub: catalog at http://{host}:{port}/  API at http://{host}:{port}/api")
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=10)
