"""Prometheus metrics of ``graft serve`` at ``/monitoring/prometheus/metrics`` (TF Serving's path).

TF Serving's metric names are kept where they exist, so dashboards and alerts written for it
keep working; their labels gain ``version`` (and ``API`` for the request count):

- ``:tensorflow:serving:request_count{model_name,version,API,status}``: counter; ``status`` is
  TF Serving's error code (``OK``, ``INVALID_ARGUMENT``, ``NOT_FOUND`` ...).
- ``:tensorflow:serving:request_latency{model_name,version,API,entrypoint}``: histogram in
  microseconds with TF Serving's buckets (10 us x 1.8^i, 33 buckets).
- ``:tensorflow:serving:batching:processed_batch_size`` and ``...:queuing_latency``
  (microseconds): per batch the batcher ran.
- ``:tensorflow:cc:saved_model:load_attempt_count{model_path,status}``: version loads
  (``success`` / ``fail``).

graft's own: ``:graft:serving:queue_depth`` (requests waiting per version),
``:graft:serving:requests_in_flight``, ``:graft:serving:model_version_state`` (1 for each
version's current state, with its error code), ``:graft:serving:config_ok`` (0 while the last
edit of ``models.config`` could not be read; the previous config keeps serving).

Counters are written in TF Serving's form (``name`` without ``_total``, TYPE counter), which
``prometheus_client``'s writer would rename; histograms and gauges go through it. With
``--workers N`` each worker process keeps its own figures (a scrape sees the worker answering).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

LATENCY_BUCKETS_US = tuple(10 * 1.8**i for i in range(33))  # TF Serving's request_latency
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Histogram:
    __slots__ = ("buckets", "counts", "total", "count")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1


class ServingMetrics:
    """What the server records; ``render`` writes the Prometheus text format.

    Example:
        >>> m = ServingMetrics()
        >>> m.request("digits", 1, "Predict", "OK", 0.004)
        >>> ':tensorflow:serving:request_count{model_name="digits",version="1",API="Predict",\
status="OK"} 1' in m.render()
        True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str, str]] = Counter()
        self.latency: dict[tuple[str, str, str, str], _Histogram] = {}
        self.batch_size: dict[tuple[str, str], _Histogram] = {}
        self.queuing: dict[tuple[str, str], _Histogram] = {}
        self.loads: Counter[tuple[str, str]] = Counter()
        self.config_error: str = ""

    # -- recording --------------------------------------------------------------------------
    def request(
        self, model: str, version: int | None, api: str, status: str, seconds: float
    ) -> None:
        """One inference request (``version`` None when it never reached a version)."""
        v = "" if version is None else str(version)
        with self._lock:
            self.requests[(model, v, api, status)] += 1
            key = (model, v, api, "REST")
            hist = self.latency.get(key) or self.latency.setdefault(
                key, _Histogram(LATENCY_BUCKETS_US)
            )
            hist.observe(seconds * 1e6)

    def batch(self, model: str, version: int, rows: int, waits: Iterable[float]) -> None:
        """One batch the batcher ran: its rows, and how long each request in it queued (s)."""
        key = (model, str(version))
        with self._lock:
            self.batch_size.setdefault(key, _Histogram(BATCH_BUCKETS)).observe(rows)
            queuing = self.queuing.setdefault(key, _Histogram(LATENCY_BUCKETS_US))
            for wait in waits:
                queuing.observe(wait * 1e6)

    def load(self, path: str, ok: bool) -> None:
        with self._lock:
            self.loads[(path, "success" if ok else "fail")] += 1

    def config(self, error: str = "") -> None:
        """The outcome of the last config read: why it failed, or empty."""
        with self._lock:
            self.config_error = error

    # -- the text format --------------------------------------------------------------------
    def render(self, states: Iterable[tuple] = (), queues: Iterable[tuple] = (), inflight=0) -> str:
        """The Prometheus text exposition (format 0.0.4).

        Args:
            states: ``(model, version, state, error_code)`` of every version the server knows.
            queues: ``(model, version, waiting requests)`` of every version with a batcher.
            inflight: requests being answered.
        """
        from prometheus_client import CollectorRegistry, generate_latest

        with self._lock:
            counters = _counter(
                ":tensorflow:serving:request_count",
                "The total number of requests.",
                ("model_name", "version", "API", "status"),
                self.requests,
            )
            counters += _counter(
                ":tensorflow:cc:saved_model:load_attempt_count",
                "The number of times a SavedModel (a graft module version) was loaded.",
                ("model_path", "status"),
                self.loads,
            )
            families = [
                _histogram(
                    ":tensorflow:serving:request_latency",
                    "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                    ("model_name", "version", "API", "entrypoint"),
                    self.latency,
                ),
                _histogram(
                    ":tensorflow:serving:batching:processed_batch_size",
                    "Rows per batch the dynamic batcher ran.",
                    ("model_name", "version"),
                    self.batch_size,
                ),
                _histogram(
                    ":tensorflow:serving:batching:queuing_latency",
                    "Time (in microseconds) requests waited in the batching queue.",
                    ("model_name", "version"),
                    self.queuing,
                ),
            ]
            config_ok = 0.0 if self.config_error else 1.0
        families += _gauges(states, queues, inflight, config_ok)

        class _Collector:
            def collect(self):
                yield from families

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector())
        return counters + generate_latest(registry).decode("utf-8")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: tuple[str, ...], values: tuple) -> str:
    return ",".join(f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True))


def _counter(name: str, doc: str, names: tuple[str, ...], values) -> str:
    """A counter as TF Serving writes it: ``name{labels} value``, no ``_total``."""
    lines = [f"# HELP {name} {doc}", f"# TYPE {name} counter"]
    lines += [f"{name}{{{_labels(names, key)}}} {n}" for key, n in sorted(values.items())]
    return "\n".join(lines) + "\n"


def _histogram(name: str, doc: str, names: tuple[str, ...], hists: dict):
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, doc, labels=names)
    for key, hist in sorted(hists.items()):
        cumulative, buckets = 0, []
        for bound, n in zip(hist.buckets, hist.counts, strict=True):
            cumulative += n
            buckets.append((repr(float(bound)), cumulative))
        buckets.append(("+Inf", hist.count))
        family.add_metric([str(k) for k in key], buckets, hist.total)
    return family


def _gauges(states, queues, inflight, config_ok):
    from prometheus_client.core import GaugeMetricFamily

    state = GaugeMetricFamily(
        ":graft:serving:model_version_state",
        "1 for each model version's current state (START, LOADING, AVAILABLE, UNLOADING, END); "
        "error_code is not OK when its load failed.",
        labels=("model_name", "version", "state", "error_code"),
    )
    for model, version, current, code in states:
        state.add_metric([model, str(version), current, code], 1.0)
    depth = GaugeMetricFamily(
        ":graft:serving:queue_depth",
        "Requests waiting in a version's batching queue.",
        labels=("model_name", "version"),
    )
    for model, version, waiting in queues:
        depth.add_metric([model, str(version)], float(waiting))
    flight = GaugeMetricFamily(
        ":graft:serving:requests_in_flight", "Inference requests being answered.", value=inflight
    )
    config = GaugeMetricFamily(
        ":graft:serving:config_ok",
        "1 when the model config was read at its last change; 0 while the edit is broken (the "
        "previous config keeps serving; /readyz says why).",
        value=config_ok,
    )
    return [state, depth, flight, config]
