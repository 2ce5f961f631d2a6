"""Logging graft's run folders to MLflow, and registering their modules.

A run is logged once its folder is complete (its files are the record: nothing is logged that
the folder does not hold, and a killed run is logged when ``--resume`` finishes it). Per-epoch
metrics keep their epoch as the step and their wall-clock time (from the epoch durations the
run recorded).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from graft.errors import InvalidArgumentError, TrackingError, received

LOCAL_DIR = "mlruns"
EXPERIMENT = "graft"
# Files of a run folder (or an evaluate / export folder) logged as artifacts.
RUN_FILES = (
    "report.html",
    "metrics.json",
    "run.json",
    "config.json",
    "confusion_matrix.png",
    "confusion_matrix.csv",
    "curves.png",
    "selection.png",
    "misclassified.csv",
    "predictions.csv",
    "tune.json",
    "trials.csv",
    "export_report.json",
)


def canonical(uri: str) -> str:
    """One spelling per store: relative ``sqlite:///`` paths made absolute (cache keys).

    Example:
        >>> canonical("sqlite:////tmp/a/../b/mlflow.db")
        'sqlite:////tmp/b/mlflow.db'
    """
    if uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def local_store_uri(root: str | os.PathLike | None = None) -> str:
    """The local store: ``sqlite:///<root>/mlflow.db`` (``root`` defaults to ``./mlruns``).

    Example:
        >>> local_store_uri("/tmp/x")
        'sqlite:////tmp/x/mlflow.db'
    """
    return f"sqlite:///{Path(root or LOCAL_DIR).resolve() / 'mlflow.db'}"


def tracking_uri(uri: str | None = None, track: bool = False) -> str | None:
    """The store to log to: ``uri``, else ``MLFLOW_TRACKING_URI``, else the local store when
    ``track``; ``None`` means tracking is off."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return local_store_uri() if track else None


def _mlflow(uri: str):
    """mlflow, telemetry off unless asked for (its global URIs untouched)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # graft says it once
    try:
        import mlflow
    except ImportError:
        from graft.errors import MissingDependencyError

        raise MissingDependencyError(
            "Tracking needs MLflow: pip install 'graft[tracking]' (mlflow-skinny with SQLite "
            f"support). {received(tracking_uri=uri)}"
        ) from None
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return mlflow


@contextlib.contextmanager
def pointed(uri: str):
    """mlflow's fluent API (log_model, register_model, download_artifacts) pointed at ``uri``
    for the duration only: ``mlflow.set_tracking_uri`` also exports MLFLOW_TRACKING_URI, which
    would turn tracking on for everything the process does afterwards."""
    mlflow = _mlflow(uri)
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (tracking_utils._tracking_uri, registry_utils._registry_uri)
    with _environment_restored("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield mlflow
        finally:
            mlflow.set_tracking_uri(saved[0])  # None unsets it (and mlflow's tracer state)
            registry_utils._registry_uri = saved[1]


@contextlib.contextmanager
def _environment_restored(*keys: str):
    """Puts the environment variables ``keys`` back as they were (absent ones removed)."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _fail_fast():
    """No retries and a short timeout: a dead server is reported in seconds, not minutes."""
    with _environment_restored("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
        os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "10"
        yield


@contextlib.contextmanager
def _hush():
    """MLflow's own chatter off (``Successfully registered model``, signature warnings):
    graft says what was logged and registered."""
    import warnings

    from mlflow.utils.logging_utils import MLFLOW_LOGGING_STREAM

    was = MLFLOW_LOGGING_STREAM.enabled
    MLFLOW_LOGGING_STREAM.enabled = False
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)
        MLFLOW_LOGGING_STREAM.enabled = was


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 240:
        text = text[:240].rsplit(" ", 1)[0] + " ..."
    return f"{type(exc).__name__}: {text}"


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _metric_key(key: str) -> str:
    import re

    return re.sub(r"[^\w\-. /]", "_", key)


@dataclass(frozen=True)
class Logged:
    """What ``log_run`` created: the MLflow run, and the registered version (if any)."""

    run_id: str
    version: int | None = None


@dataclass
class Tracker:
    """Where runs are logged: an MLflow tracking URI and an experiment.

    Attributes:
        uri: the tracking (and registry) URI.
        experiment: the experiment's name (``MLFLOW_EXPERIMENT_NAME``, default ``graft``).
        required: whether an unreachable store stops the command (else tracking turns off).
        enabled: ``False`` once an optional store turned out unreachable.
    """

    uri: str
    experiment: str = EXPERIMENT
    required: bool = True
    enabled: bool = True

    @classmethod
    def from_options(
        cls,
        tracking_uri_option: str | None = None,
        track: bool = False,
        required: bool = True,
        experiment: str | None = None,
    ) -> Tracker | None:
        """The tracker the command line asks for, or ``None`` when tracking is off."""
        uri = tracking_uri(tracking_uri_option, track)
        if uri is None:
            return None
        name = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT
        return cls(uri, name, required)

    # -- the store -------------------------------------------------------------------------

    def client(self):
        mlflow = _mlflow(self.uri)
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def experiment_id(self, client) -> str:
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///"):  # the local store: artifacts beside the database
            root = Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts"
            location = (root / self.experiment).resolve().as_uri()
        return client.create_experiment(self.experiment, artifact_location=location)

    def check(self) -> bool:
        """Reaches the store before any work starts.

        Returns:
            ``True`` when tracking is on; ``False`` when the store is unreachable and not
            ``required`` (the command goes on untracked and says so).

        Raises:
            TrackingError: the store is unreachable and ``required``.
        """
        try:
            with _fail_fast():
                self.experiment_id(self.client())
        except Exception as exc:  # mlflow raises MlflowException, requests' errors, sqlite's
            if isinstance(exc, InvalidArgumentError | ImportError):
                raise
            reason = f"Cannot reach the MLflow tracking store at {self.uri} ({_short(exc)})."
            if self.required:
                raise TrackingError(
                    f"{reason} Start the server, correct --tracking-uri or MLFLOW_TRACKING_URI, "
                    f"or add --tracking-optional to go on without tracking. "
                    f"{received(tracking_uri=self.uri)}"
                ) from None
            from graft.handles import notice

            self.enabled = False
            notice(f"Tracking is off for this command (--tracking-optional): {reason}")
            return False
        return True

    # -- logging ---------------------------------------------------------------------------

    def _start(self, client, name: str, tags: dict, start: float | None = None, parent=None):
        from graft import __version__

        tags = {"graft.version": __version__, **{k: str(v) for k, v in tags.items() if v}}
        if parent is not None:
            tags["mlflow.parentRunId"] = parent
        run = client.create_run(
            self.experiment_id(client),
            run_name=name,
            tags=tags,
            start_time=int((start or time.time()) * 1000),
        )
        return run.info.run_id

    def _log(self, client, run_id: str, params: dict, metrics: list[tuple]) -> None:
        from mlflow.entities import Metric, Param

        entries = [
            Param(_metric_key(k)[:250], json.dumps(v) if not isinstance(v, str) else v[:6000])
            for k, v in params.items()
        ]
        for i in range(0, len(entries), 100):
            client.log_batch(run_id, params=entries[i : i + 100])
        now = int(time.time() * 1000)
        rows = [
            Metric(_metric_key(key), value, int(stamp * 1000) if stamp else now, step)
            for key, value, step, stamp in metrics
            if _number(value) is not None
        ]
        for i in range(0, len(rows), 1000):
            client.log_batch(run_id, metrics=rows[i : i + 1000])

    def _files(self, client, run_id: str, folder: Path) -> None:
        for name in RUN_FILES:
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))

    def log_run(
        self,
        folder: str | os.PathLike,
        *,
        register: str | None = None,
        alias: str | None = None,
    ) -> Logged:
        """Logs a finished run folder of ``graft train``, ``tune`` or ``ensemble`` as one
        MLflow run (tune trials as nested runs); the module is logged as a
        pyfunc model and, with ``register``, registered (``alias`` pointed at the version).

        Raises:
            InvalidArgumentError: the folder is not a finished run.
            TrackingError: the store refused or could not be reached.
        """
        from graft.runs import read_run

        info = read_run(folder)
        if info.status != "finished":
            raise InvalidArgumentError(
                f"{info.path} is a {info.status} run: only finished runs are logged "
                f"(finish it with --resume first). {received(run=str(info.path))}"
            )
        manifest = json.loads((info.path / "module" / "manifest.json").read_text())
        tags = {
            "graft.command": f"graft {info.kind}",
            "graft.run_folder": str(info.path.resolve()),
            "backbone": info.backbone,
            "data": info.data,
            "data_fingerprint": (manifest.get("provenance") or {}).get("source_sha256", ""),
            "selection.kept": (info.run.get("selection") or {}).get("kept", ""),
        }
        metrics = self._run_metrics(info)
        try:
            client = self.client()
            run_id = self._start(client, info.path.name, tags, info.started)
            self._log(client, run_id, info.config, metrics)
            self._files(client, run_id, info.path)
            if info.kind == "tune":
                self._trials(client, run_id, info)
            version = self._model(run_id, info.path / "module", register, alias)
            client.set_terminated(run_id, "FINISHED")
        except (InvalidArgumentError, ImportError):
            raise
        except Exception as exc:
            raise TrackingError(
                f"MLflow refused the run {info.path} ({_short(exc)}). "
                f"{received(tracking_uri=self.uri)}"
            ) from exc
        return Logged(run_id, version)

    @staticmethod
    def _run_metrics(info) -> list[tuple]:
        """``(key, value, step, timestamp)`` rows: test metrics, timings, per-epoch curves,
        ensemble members."""
        rows: list[tuple] = []
        run_metrics = info.run.get("metrics") or {}
        for key, value in run_metrics.items():
            rows.append((key, value, 0, None))
        if not run_metrics:
            rows.append(("test_accuracy", info.metrics.get("accuracy"), 0, None))
        from graft.runs import flatten

        for key, value in flatten(info.run.get("timings") or {}).items():
            if key.endswith("_s"):
                rows.append((f"time.{key}", value, 0, None))
        state_path = info.path / "state.json"
        state = json.loads(state_path.read_text()) if state_path.is_file() else {}
        clock = info.started
        for stage, record in state.items():
            history = (record or {}).get("history") or {}
            seconds = history.get("seconds") or []
            for key, values in history.items():
                if key == "seconds":
                    continue
                stamp = clock
                for epoch, value in enumerate(values, 1):
                    if epoch - 1 < len(seconds):
                        stamp += seconds[epoch - 1]
                    rows.append((f"{stage}.{key}", value, epoch, stamp))
            clock += sum(seconds)
        for member in info.run.get("members") or []:
            for key in ("oof_accuracy", "test_accuracy"):
                if key in member:
                    rows.append((f"member.{member['name']}.{key}", member[key], 0, None))
        return rows

    def _trials(self, client, parent: str, info) -> None:
        trials_path = info.path / "trials.json"
        if not trials_path.is_file():
            return
        for trial in json.loads(trials_path.read_text()):
            child = self._start(
                client,
                f"trial {trial['number']}",
                {"graft.trial": trial["number"], "graft.trial_state": trial.get("state")},
                info.started,
                parent=parent,
            )
            self._log(
                client,
                child,
                trial.get("params") or {},
                [
                    ("cv_accuracy", trial.get("value"), 0, None),
                    ("time.trial_s", trial.get("seconds"), 0, None),
                ],
            )
            client.set_terminated(child, "FINISHED")

    def _model(
        self, run_id: str, module_dir: Path, register: str | None, alias: str | None
    ) -> int | None:
        """Logs the module as a pyfunc model of the run; registers it when asked."""
        from graft import __version__

        code = Path(__file__).with_name("pyfunc_model.py")
        with pointed(self.uri) as mlflow:
            with _hush(), mlflow.start_run(run_id=run_id, log_system_metrics=False):
                info = mlflow.pyfunc.log_model(
                    name="model",
                    python_model=str(code),
                    artifacts={"module": str(module_dir)},
                    pip_requirements=[f"graft=={__version__}"],
                )
            if register is None:
                return None
            with _hush():
                version = mlflow.register_model(info.model_uri, register)
        if alias:
            self.client().set_registered_model_alias(register, alias, version.version)
        return int(version.version)

    def register(self, module_dir: str | os.PathLike, name: str, alias: str | None = None) -> int:
        """Registers a module that no tracked run produced: a small MLflow run logs it (as a
        pyfunc model) and the version is created from it. Returns the version number."""
        from graft.handles import resolve

        module_dir = resolve(module_dir)
        manifest = json.loads((module_dir / "manifest.json").read_text())
        client = self.client()
        run_id = self._start(
            client,
            f"register {name}",
            {"graft.command": "graft register", "graft.module": str(module_dir)},
        )
        self._log(client, run_id, {"module": str(module_dir), "task": manifest.get("task")}, [])
        version = self._model(run_id, module_dir, name, alias)
        client.set_terminated(run_id, "FINISHED")
        return int(version)

    def log_folder(self, folder: str | os.PathLike, command: str, params: dict) -> str:
        """Logs the folder of ``graft evaluate`` or ``graft export``: its metrics (per
        exported artifact for export) and files."""
        folder = Path(folder)
        rows: list[tuple] = []
        metrics_path = folder / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            rows.append(("test_examples", metrics.get("examples"), 0, None))
            for key in ("accuracy", "macro_f1"):
                rows.append((f"test_{key}", metrics.get(key), 0, None))
            for k, value in (metrics.get("top_k_accuracy") or {}).items():
                rows.append((f"test_top{k}_accuracy", value, 0, None))
        report_path = folder / "export_report.json"
        if report_path.is_file():
            report = json.loads(report_path.read_text())
            for row in report.get("artifacts", []):
                prefix = f"{row['format']}.{row['quantization']}"
                for key in ("accuracy", "accuracy_change", "top1_agreement", "size_bytes",
                            "latency_p50_ms", "throughput"):  # fmt: skip
                    rows.append((f"{prefix}.{key}", row.get(key), 0, None))
        client = self.client()
        name = f"{command.split()[-1]} {folder.name}"
        run_id = self._start(client, name, {"graft.command": command})
        self._log(client, run_id, params, rows)
        self._files(client, run_id, folder)
        client.set_terminated(run_id, "FINISHED")
        return run_id


def cache_key(uri: str) -> str:
    """A short, stable folder name for a tracking URI in graft's cache."""
    return hashlib.sha256(canonical(uri).encode()).hexdigest()[:16]
