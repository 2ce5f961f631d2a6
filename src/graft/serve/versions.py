"""Versions: the model directories are polled; new versions load in the background, are warmed
up, and take traffic only once AVAILABLE. The policy (latest N, all, specific) decides which
versions should be served; a version leaving it is unloaded only once another one is
AVAILABLE (TF Serving's availability-preserving policy), so a broken new version leaves the
old one serving, with the failure shown in the status endpoint.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from graft.serve.batching import Batcher, BatchingOptions
from graft.serve.config import ModelConfig
from graft.serve.metrics import ServingMetrics
from graft.serve.servables import Servable, load_version
from graft.serve.status import ServingError, code_for

log = logging.getLogger(__name__)


@dataclass
class Version:
    """One version's life: START -> LOADING -> AVAILABLE -> UNLOADING -> END (or LOADING ->
    END with an error)."""

    model: str
    version: int
    path: Path
    state: str = "START"
    error_code: str = "OK"
    error_message: str = ""
    fingerprint: tuple = ()
    servable: Servable | None = None
    batcher: Batcher | None = None

    def status(self) -> dict:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error_message},
        }


@dataclass(frozen=True)
class Served:
    """What a request uses, taken under the manager's lock: an unload cannot pull it away
    halfway (a stopped batcher answers ``Retired`` and the request looks again)."""

    version: int
    servable: Servable
    batcher: Batcher


@dataclass
class Model:
    config: ModelConfig
    versions: dict[int, Version] = field(default_factory=dict)

    def labelled(self, label: str) -> int:
        """The version ``label`` points to.

        Raises:
            ServingError: NOT_FOUND for an unknown label.
        """
        if label not in self.config.labels:
            raise ServingError(
                "NOT_FOUND",
                f"Unrecognized servable version label: {label}. Labels of "
                f"{self.config.name}: {sorted(self.config.labels)}. Received: label={label!r}",
            )
        return self.config.labels[label]

    def available(self) -> list[Version]:
        return sorted(
            (v for v in self.versions.values() if v.state == "AVAILABLE"),
            key=lambda v: v.version,
        )


def fingerprint(path: Path) -> tuple:
    """Sizes and modification times of every file: changes when a version is rewritten."""
    out = []
    for root, _, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


class Manager:
    """Keeps the served versions in line with the disk.

    Args:
        source: returns the model configs (called on every poll, so a config file may change).
        batching: options for every version's batcher.
        poll_seconds: how often the directories are listed (0: only at start).
        runtime: how graft image modules run (``auto``, ``tflite``, ``keras``).
        load_threads: versions loading at once.
    """

    def __init__(
        self,
        source: Callable[[], list[ModelConfig]],
        batching: BatchingOptions | None = None,
        poll_seconds: float = 1.0,
        runtime: str = "auto",
        load_threads: int = 1,
    ) -> None:
        self.source = source
        self.batching = batching or BatchingOptions()
        self.poll_seconds = poll_seconds
        self.runtime = runtime
        self.models: dict[str, Model] = {}
        self._lock = threading.RLock()
        self._loader = ThreadPoolExecutor(load_threads, thread_name_prefix="graft-load")
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.metrics = ServingMetrics()
        self.config_error = ""  # why the last config read failed (the previous one serves)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.poll()
        if self.poll_seconds > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="graft-poll", daemon=True)
            self._poller.start()

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll()
            except Exception:  # keep serving whatever happens to one poll
                log.exception("polling the model directories failed")

    def stop(self) -> None:
        """Stops polling and loading; queued requests finish first."""
        self._stop.set()
        if self._poller:
            self._poller.join(10)
        self._loader.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            versions = [v for m in self.models.values() for v in m.versions.values()]
        for v in versions:
            if v.batcher:
                v.batcher.stop()

    # -- polling ----------------------------------------------------------------------------
    def poll(self) -> None:
        try:
            configs = self.source()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            if error != self.config_error:
                log.error("model config not reloaded (the previous one keeps serving): %s", exc)
            self.config_error = error
            self.metrics.config(error)
            return
        if self.config_error:
            log.info("model config read again")
        self.config_error = ""
        self.metrics.config()
        with self._lock:
            for config in configs:
                model = self.models.setdefault(config.name, Model(config))
                model.config = config
                self._reconcile(model)

    def _reconcile(self, model: Model) -> None:
        on_disk = model.config.list_versions()
        aspired = model.config.aspired(list(on_disk))
        for number in sorted(aspired):
            path = on_disk[number]
            current = model.versions.get(number)
            if current is not None and current.state in ("LOADING", "AVAILABLE", "UNLOADING"):
                continue
            stamp = fingerprint(path)
            if current is not None and current.state == "END" and current.fingerprint == stamp:
                continue  # failed or unloaded, unchanged since: do not retry
            version = Version(model.config.name, number, path, "LOADING", fingerprint=stamp)
            model.versions[number] = version
            if self._stop.is_set():
                return
            self._loader.submit(self._load, model, version)
        if any(model.versions[n].state == "AVAILABLE" for n in aspired if n in model.versions):
            for version in list(model.versions.values()):
                if version.version not in aspired and version.state == "AVAILABLE":
                    self._unload(version)

    def _load(self, model: Model, version: Version) -> None:
        start = time.monotonic()
        try:
            servable = load_version(version.path, self.runtime)
            if servable.warmup is not None:
                servable.warmup()
            batcher = Batcher(
                self.batching,
                f"{version.model}/{version.version}",
                on_batch=functools.partial(self.metrics.batch, version.model, version.version),
            )
        except Exception as exc:
            log.error("version %s of %s failed to load: %s", version.version, version.model, exc)
            self.metrics.load(str(version.path), ok=False)
            with self._lock:
                version.state = "END"
                version.error_code = code_for(exc)
                version.error_message = f"{type(exc).__name__}: {exc}"[:2000]
            return
        self.metrics.load(str(version.path), ok=True)
        with self._lock:
            version.servable, version.batcher = servable, batcher
            version.state = "AVAILABLE"
            log.info(
                "version %s of %s is AVAILABLE (%.1f s)",
                version.version,
                version.model,
                time.monotonic() - start,
            )
            self._reconcile(model)

    def _unload(self, version: Version) -> None:
        version.state = "UNLOADING"
        batcher = version.batcher

        def finish() -> None:
            if batcher:
                batcher.stop()  # requests already queued still get their answers
            with self._lock:
                version.state = "END"
                version.servable = version.batcher = None
            log.info("version %s of %s unloaded", version.version, version.model)

        threading.Thread(target=finish, name="graft-unload", daemon=True).start()

    # -- lookups ----------------------------------------------------------------------------
    def _model(self, name: str) -> Model:
        model = self.models.get(name)
        if model is None:
            raise ServingError(
                "NOT_FOUND",
                f"Servable not found for request: Latest({name}). Served models: "
                f"{sorted(self.models)}. Received: model={name!r}",
            )
        return model

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Served:
        """The AVAILABLE version a request goes to: the given one, the label's, or the highest.

        Raises:
            ServingError: NOT_FOUND for unknown models, versions and labels; UNAVAILABLE while
                the model has no version ready yet.
        """
        with self._lock:
            model = self._model(name)
            if label is not None:
                version = model.labelled(label)
            if version is not None:
                found = model.versions.get(version)
                if found is None or found.state != "AVAILABLE":
                    state = found.state if found else "not on disk or not in the version policy"
                    raise ServingError(
                        "NOT_FOUND",
                        f"Servable not found for request: Specific({name}, {version}); its state "
                        f"is {state}. Available: {[v.version for v in model.available()]}. "
                        f"Received: version={version}",
                    )
                return Served(found.version, found.servable, found.batcher)
            available = model.available()
            if not available:
                loading = any(v.state == "LOADING" for v in model.versions.values())
                raise ServingError(
                    "UNAVAILABLE" if loading else "NOT_FOUND",
                    f"Servable not found for request: Latest({name}): "
                    + ("a version is still loading" if loading else "no version loaded")
                    + f" (see GET /v1/models/{name}). Received: model={name!r}",
                    retry_after=1 if loading else None,
                )
            latest = available[-1]
            return Served(latest.version, latest.servable, latest.batcher)

    def status(self, name: str, version: int | None = None, label: str | None = None) -> list:
        """``model_version_status`` entries, newest first.

        Raises:
            ServingError: NOT_FOUND for unknown models, versions and labels.
        """
        with self._lock:
            model = self._model(name)
            if label is not None:
                version = model.labelled(label)
            if version is not None:
                if version not in model.versions:
                    raise ServingError(
                        "NOT_FOUND",
                        f"Could not find version {version} of model {name}. Known versions: "
                        f"{sorted(model.versions)}. Received: version={version}",
                    )
                return [model.versions[version].status()]
            if not model.versions:
                raise ServingError(
                    "NOT_FOUND",
                    f"Could not find any versions of model {name} under "
                    f"{model.config.base_path}. Received: model={name!r}",
                )
            return [v.status() for v in sorted(model.versions.values(), key=lambda v: -v.version)]

    def metrics_text(self, inflight: int = 0) -> str:
        """The Prometheus exposition of the server (``metrics.ServingMetrics.render``)."""
        with self._lock:
            versions = [v for m in self.models.values() for v in m.versions.values()]
            states = [(v.model, v.version, v.state, v.error_code) for v in versions]
            queues = [(v.model, v.version, v.batcher.queued) for v in versions if v.batcher]
        return self.metrics.render(states, queues, inflight)

    def ready(self) -> tuple[bool, dict[str, str]]:
        """Whether every model has an AVAILABLE version; per model, what it is waiting for."""
        with self._lock:
            detail = {}
            for name, model in sorted(self.models.items()):
                available = model.available()
                detail[name] = (
                    f"version {available[-1].version} AVAILABLE"
                    if available
                    else ", ".join(f"{v.version}: {v.state}" for v in model.versions.values())
                    or "no versions on disk"
                )
            ok = bool(self.models) and all(m.available() for m in self.models.values())
            return ok, detail
