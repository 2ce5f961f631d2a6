"""Experiment tracking and a model registry on MLflow.

Tracking is on when a tracking URI is given (``--tracking-uri``, or ``MLFLOW_TRACKING_URI`` in
the environment) or when ``--track`` asks for the local store: SQLite in ``./mlruns/mlflow.db``
with the artifacts beside it in ``./mlruns/artifacts`` (never MLflow's file store). A finished
run folder of ``graft train``, ``tune`` or ``ensemble`` (and the folders of ``evaluate`` and
``export``) becomes one MLflow run: the whole config as parameters, per-epoch metrics with
their steps and times, timings, test metrics, tags (backbone, data fingerprint, graft version)
and the files; the module is logged as an MLflow pyfunc model, which ``--register NAME``
registers. MLflow's telemetry is off unless ``MLFLOW_DISABLE_TELEMETRY`` says otherwise.

Example:
    >>> from graft.tracking import Tracker
    >>> tracker = Tracker.from_options(track=True)  # doctest: +SKIP
    >>> tracker.log_run("runs/flowers", register="flowers")  # doctest: +SKIP
"""

from graft.tracking.tracker import Logged, Tracker, local_store_uri, tracking_uri

__all__ = ["Logged", "Tracker", "local_store_uri", "tracking_uri"]
