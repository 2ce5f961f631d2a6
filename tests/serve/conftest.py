"""Serve fixtures: a small trained classifier module and ``graft serve`` on loopback."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from graft.serve import BatchingOptions, Limits, ServeOptions, build


@pytest.fixture(scope="session")
def keras_probabilities(tiny_module, digit_files) -> np.ndarray:
    """What the module's own Keras model says about ``digit_files`` (the reference)."""
    from graft.data.images import image_bytes
    from graft.module.io import load

    model = load(tiny_module).model
    return np.asarray(model(np.array([image_bytes(p) for p in digit_files], dtype=object)))


def add_version(root: Path, name: str, version: int, module: Path) -> Path:
    """Copies a module in as ``root/name/version`` the safe way: a hidden copy, then a rename."""
    target = root / name / str(version)
    tmp = root / name / f".tmp-{version}"
    shutil.copytree(module, tmp)
    tmp.rename(target)
    return target


class ServeServer:
    """``graft serve``'s app (lifespan included) under uvicorn in a thread."""

    def __init__(self, options: ServeOptions) -> None:
        import uvicorn

        self.app = build(options.check())
        self.manager = self.app.state.manager
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServeServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        return self

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while httpx.get(self.url + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, httpx.get(self.url + "/readyz").text
            time.sleep(0.05)

    def wait_for(self, predicate, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def options(model_dir: Path | None = None, **kwargs) -> ServeOptions:
    batching = BatchingOptions(**kwargs.pop("batching", {}))
    limits = Limits(**kwargs.pop("limits", {}))
    return ServeOptions(
        model_dir=str(model_dir) if model_dir else None,
        batching=batching,
        limits=limits,
        **{"poll_seconds": 0.1, **kwargs},
    )


@pytest.fixture(scope="module")
def served(tiny_module, tmp_path_factory):
    """One server for read-only API tests: ``digits`` version 1 (the tiny module)."""
    root = tmp_path_factory.mktemp("models")
    add_version(root, "digits", 1, tiny_module)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(tmp_path_factory.mktemp("serve_engines")))
        with ServeServer(options(root)) as server:
            server.wait_ready()
            yield server
