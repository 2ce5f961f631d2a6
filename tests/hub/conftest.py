"""Hub fixtures: modules made without Keras, and a real hub server on loopback."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from graft.module.manifest import FileEntry, InputSpec, Manifest, OutputSpec

TOKEN = "test-token-0123456789"


def fake_module(
    directory: Path,
    name: str = "digits",
    size: int = 4096,
    seed: int = 0,
    *,
    task: str = "image-classifier",
    description: str = "handwritten digits",
    tags: tuple[str, ...] = ("vision",),
    metrics: dict[str, float] | None = None,
) -> Path:
    """A valid module directory whose model.keras is ``size`` pseudo-random bytes.

    The hub never opens model.keras, so these exercise every hub path in milliseconds.
    """
    directory.mkdir(parents=True)
    payload = hashlib.shake_256(f"{name}-{seed}".encode()).digest(min(size, 1 << 16))
    payload = (payload * (size // len(payload) + 1))[:size]
    (directory / "model.keras").write_bytes(payload)
    (directory / "assets").mkdir()
    labels = tuple(str(i) for i in range(10))
    (directory / "assets" / "labels.txt").write_text("\n".join(labels) + "\n")
    files = {
        rel: FileEntry(
            sha256=hashlib.sha256((directory / rel).read_bytes()).hexdigest(),
            size=(directory / rel).stat().st_size,
        )
        for rel in ("model.keras", "assets/labels.txt")
    }
    manifest = Manifest(
        name=name,
        task=task,
        description=description,
        inputs=InputSpec(kind="image", encoded=True, size=(224, 224)),
        outputs=OutputSpec(kind="probabilities", dim=10),
        labels=labels,
        metrics=metrics or {"accuracy": 0.933},
        tags=tags,
        files=files,
    )
    (directory / "manifest.json").write_text(manifest.to_json())
    return directory


class HubServer:
    """``graft hub``'s app under uvicorn in a thread, optionally behind test middleware."""

    def __init__(
        self, root: Path, wrap: Callable | None = None, storage=None, max_upload_bytes=None
    ) -> None:
        import uvicorn

        from graft.hub.server.app import create_app
        from graft.hub.server.store import Store

        self.root = root
        self.store = Store(root, storage)
        self.app = create_app(self.store, [TOKEN], max_upload_bytes=max_upload_bytes)
        self.requests: list[tuple[str, str, dict]] = []
        self.delay = 0.0  # seconds to wait before each body chunk of a response
        asgi = wrap(self.app) if wrap else self.app
        config = uvicorn.Config(
            self._record(asgi), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def _record(self, app):
        import asyncio

        async def asgi(scope, receive, send):
            if scope["type"] == "http":
                headers = {k.decode(): v.decode() for k, v in scope["headers"]}
                self.requests.append((scope["method"], scope["path"], headers))

                async def slow_send(message):
                    if self.delay and message["type"] == "http.response.body":
                        await asyncio.sleep(self.delay)
                    await send(message)

                return await app(scope, receive, slow_send)
            return await app(scope, receive, send)

        return asgi

    def archive_gets(self) -> list[dict]:
        return [h for m, p, h in self.requests if m == "GET" and p.endswith("/archive")]

    def __enter__(self) -> HubServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "hub server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.hostport = f"127.0.0.1:{port}"
        self.url = f"http://{self.hostport}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def hub(tmp_path, monkeypatch) -> HubServer:
    monkeypatch.setenv("GRAFT_HUB_TOKEN", TOKEN)
    with HubServer(tmp_path / "hub-root") as server:
        yield server


@pytest.fixture
def module_dir(tmp_path) -> Path:
    return fake_module(tmp_path / "modules" / "digits")


def no_temp_files(root: Path) -> list[Path]:
    """Leftover temporary, partial or lock files under ``root``."""
    return [
        p
        for p in root.rglob("*")
        if p.name.endswith((".tmp", ".incomplete", ".lock", ".part")) or p.name.startswith(".tmp")
    ]


def env_without_offline() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GRAFT_OFFLINE", None)
    return env
