"""Starting ``graft serve``: options, the app, uvicorn (one or several worker processes) and a
graceful drain on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from graft.errors import InvalidArgumentError, received
from graft.serve.batching import BatchingOptions
from graft.serve.limits import Limits

log = logging.getLogger(__name__)
ENV = "GRAFT_SERVE_OPTIONS"  # how worker processes get their options


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``graft serve`` is configured with.

    Args:
        model_dir: TF Serving's base-path layout ``DIR/<model>/<version>/`` (or one model's
            ``DIR/<version>/``, or a single module).
        model_config_file: TF Serving's ``models.config`` instead of ``model_dir`` (version
            policies and labels), re-read when it changes.
        model_name: the name for a ``model_dir`` that is one model.
        poll_seconds: how often the directories are checked for new versions.
        runtime: ``auto`` (TFLite/XNNPACK for graft image modules), ``tflite`` or ``keras``.
        monitoring: Prometheus metrics at ``/monitoring/prometheus/metrics``.
    """

    model_dir: str | None = None
    model_config_file: str | None = None
    model_name: str | None = None
    poll_seconds: float = 1.0
    runtime: str = "auto"
    batching: BatchingOptions = field(default_factory=BatchingOptions)
    limits: Limits = field(default_factory=Limits)
    monitoring: bool = True

    def check(self) -> ServeOptions:
        if (self.model_dir is None) == (self.model_config_file is None):
            raise InvalidArgumentError(
                "Give exactly one of --model-dir and --model-config-file. "
                f"{received(model_dir=self.model_dir, model_config_file=self.model_config_file)}"
            )
        from graft._engines import check_runtime

        check_runtime(self.runtime)
        b = self.batching
        if b.max_batch_size < 1 or b.timeout_ms < 0 or b.max_enqueued < 1:
            raise InvalidArgumentError(
                "Batching needs max_batch_size >= 1, timeout_ms >= 0 and max_enqueued >= 1. "
                f"{received(**asdict(b))}"
            )
        if self.limits.max_body_bytes < 1 or self.limits.max_concurrent_requests < 1:
            raise InvalidArgumentError(
                f"Limits must be positive. {received(**asdict(self.limits))}"
            )
        if self.model_dir is not None:
            from graft.serve.config import discover

            discover(self.model_dir, self.model_name)  # fails early on a bad directory
        else:
            from graft.serve.config import read_model_config

            read_model_config(self.model_config_file)
        return self

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        raw = json.loads(text)
        raw["batching"] = BatchingOptions(**raw["batching"])
        raw["limits"] = Limits(**raw["limits"])
        return cls(**raw)


def _source(options: ServeOptions):
    from graft.serve.config import discover, read_model_config

    if options.model_config_file:
        path = Path(options.model_config_file)
        cache: dict = {}

        def from_file():
            stamp = path.stat().st_mtime_ns
            if cache.get("stamp") != stamp:
                cache["configs"] = read_model_config(path)
                cache["stamp"] = stamp
            return cache["configs"]

        return from_file
    return lambda: discover(options.model_dir, options.model_name)


def build(options: ServeOptions):
    """The ASGI app for ``options`` (models load when the app starts)."""
    from graft.serve.app import create_app
    from graft.serve.versions import Manager

    manager = Manager(
        _source(options),
        options.batching,
        poll_seconds=options.poll_seconds,
        runtime=options.runtime,
    )
    return create_app(manager, options.limits, monitoring=options.monitoring)


def app_from_env():
    """uvicorn factory for worker processes: the options come in ``GRAFT_SERVE_OPTIONS``."""
    return build(ServeOptions.from_json(os.environ[ENV]))


def check_port_free(host: str, port: int) -> None:
    """Fails before any model loads when ``host:port`` cannot be listened on.

    Raises:
        InvalidArgumentError: the port is taken (or not ours to take).
    """
    import socket

    from graft.errors import InvalidArgumentError, received

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidArgumentError(
                f"Cannot listen on {host}:{port} ({exc.strerror}): another server (graft serve, "
                f"TF Serving) may hold the port; stop it or pick another --port. "
                f"{received(port=port)}"
            ) from None


def serve(
    options: ServeOptions,
    host: str = "0.0.0.0",
    port: int = 8501,
    workers: int = 1,
    drain_seconds: float = 30.0,
    log_level: str = "info",
) -> None:
    """Runs until SIGTERM/SIGINT, then stops accepting connections and lets requests in flight
    finish (up to ``drain_seconds``) before unloading the models."""
    import uvicorn

    from graft.serve import app as app_module

    options.check()
    check_port_free(host, port)
    logging.basicConfig(format="%(asctime)s graft %(levelname)s %(message)s")
    logging.getLogger("graft").setLevel(log_level.upper())

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame):
            app_module.draining.set()
            super().handle_exit(sig, frame)

    os.environ[ENV] = options.to_json()
    config = uvicorn.Config(
        "graft.serve.run:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=drain_seconds,
        access_log=False,
    )
    server = DrainingServer(config)
    where = options.model_dir or options.model_config_file
    try:
        names = sorted({c.name for c in _source(options)()}) or ["<name>"]
    except Exception:  # the manager reports a broken source itself once it starts
        names = ["<name>"]
    urls = ", ".join(f"http://{host}:{port}/v1/models/{n}" for n in names[:5])
    print(f"graft serve: models from {where}, REST API at {urls}")
    if workers > 1:  # each worker process runs its own uvicorn Server, and drains the same way
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run()
