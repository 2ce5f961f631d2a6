"""Dynamic batching: requests that arrive together run as one batch.

One worker thread per served version takes the oldest request, waits up to ``timeout_ms`` for
more rows of the same signature and shape (never past ``max_batch_size`` rows), runs them as
one batch and hands each request its rows. While a batch runs, new requests queue and form
the next one. The queue is bounded: beyond ``max_enqueued`` waiting requests, ``submit``
answers UNAVAILABLE (503, as TF Serving's full batch queue does) instead of letting latency
grow without limit.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from graft.serve.status import ServingError

log = logging.getLogger(__name__)
_unique = itertools.count()


class Retired(Exception):
    """The batcher was stopped (its version was unloaded); resolve the version again."""


@dataclass(frozen=True)
class BatchingOptions:
    """Args:
    max_batch_size: rows per batch (a larger single request runs alone).
    timeout_ms: how long the oldest request waits for others.
    max_enqueued: waiting requests per version before UNAVAILABLE.
    """

    max_batch_size: int = 32
    timeout_ms: float = 1.0
    max_enqueued: int = 256


@dataclass
class _Task:
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    arrays: dict[str, np.ndarray]
    key: tuple
    rows: int
    enqueued: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)


def _key(signature: str, batchable: bool, arrays: dict[str, np.ndarray]) -> tuple:
    if not batchable:
        return (signature, next(_unique))
    return (signature, tuple((k, a.dtype.str, a.shape[1:]) for k, a in sorted(arrays.items())))


def model_error(exc: BaseException) -> ServingError:
    """A model failure as a TF Serving error: TensorFlow's argument errors are the request's
    fault (400), anything else INTERNAL."""
    if isinstance(exc, ServingError):
        return exc
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if type(exc).__name__ in ("InvalidArgumentError", "OutOfRangeError") or isinstance(
        exc, ValueError | TypeError
    ):
        return ServingError(
            "INVALID_ARGUMENT",
            f"The model rejected the input: {text}. Received: {type(exc).__name__}",
        )
    return ServingError("INTERNAL", f"The model failed: {text}. Received: {type(exc).__name__}")


class Batcher:
    """Batches requests for one served version on its own thread.

    Example:
        >>> b = Batcher(BatchingOptions(), "double")
        >>> double = lambda x: {"y": x["x"] * 2}
        >>> b.submit("serving_default", True, {"x": np.ones((1, 2))}, double).result()["y"]
        array([[2., 2.]])
        >>> b.stop()
    """

    def __init__(
        self,
        options: BatchingOptions,
        name: str,
        on_batch: Callable[[int, list[float]], None] | None = None,
    ) -> None:
        self.options = options
        self.name = name
        self.on_batch = on_batch  # (rows, seconds each request queued), for the metrics
        self._queue: deque[_Task] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name=f"batcher-{name}", daemon=True)
        self._thread.start()

    def submit(
        self,
        signature: str,
        batchable: bool,
        arrays: dict[str, np.ndarray],
        run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    ) -> Future:
        """Queues one request; the future gives its outputs (rows in request order).

        Raises:
            Retired: the batcher is stopping.
            ServingError: UNAVAILABLE when the queue is full.
        """
        rows = len(next(iter(arrays.values())))
        task = _Task(run, arrays, _key(signature, batchable, arrays), rows)
        with self._cond:
            if self._stopping:
                raise Retired(self.name)
            if len(self._queue) >= self.options.max_enqueued:
                raise ServingError(
                    "UNAVAILABLE",
                    "The batch scheduling queue to which this task was submitted is full: "
                    f"{len(self._queue)} requests are waiting for {self.name}. Retry later or "
                    "raise --max-enqueued. "
                    f"Received: queued={len(self._queue)}, "
                    f"max_enqueued={self.options.max_enqueued}",
                    retry_after=1,
                )
            self._queue.append(task)
            self._cond.notify()
        return task.future

    @property
    def queued(self) -> int:
        """Requests waiting (not yet in a running batch)."""
        return len(self._queue)

    def stop(self, wait: bool = True) -> None:
        """Takes no new requests; the ones queued still run."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    # -- worker -----------------------------------------------------------------------------
    def _next_batch(self) -> list[_Task] | None:
        opts = self.options
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            first = self._queue[0]
            deadline = first.enqueued + opts.timeout_ms / 1000
            batchable = isinstance(first.key[1], tuple)
            while batchable and not self._stopping:
                rows = sum(t.rows for t in self._queue if t.key == first.key)
                remaining = deadline - time.monotonic()
                if rows >= opts.max_batch_size or remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch, rest, total = [], deque(), 0
            for task in self._queue:
                fits = not batch or total + task.rows <= opts.max_batch_size
                if task.key == first.key and fits:
                    batch.append(task)
                    total += task.rows
                else:
                    rest.append(task)
            self._queue = rest
            return batch

    def _loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._run(batch)
            except Exception as exc:  # the worker must outlive any batch
                log.exception("batch failed on %s", self.name)
                for task in batch:
                    if not task.future.done():
                        task.future.set_exception(model_error(exc))

    def _run(self, batch: list[_Task]) -> None:
        tasks = [t for t in batch if t.future.set_running_or_notify_cancel()]
        if not tasks:
            return
        if self.on_batch is not None:
            now = time.monotonic()
            try:
                self.on_batch(sum(t.rows for t in tasks), [now - t.enqueued for t in tasks])
            except Exception:  # metrics never fail a batch
                log.exception("recording a batch of %s failed", self.name)
        try:
            if len(tasks) == 1:
                outputs = tasks[0].run(tasks[0].arrays)
            else:
                names = tasks[0].arrays.keys()
                joined = {n: np.concatenate([t.arrays[n] for t in tasks]) for n in names}
                outputs = tasks[0].run(joined)
        except Exception as exc:
            if len(tasks) > 1:  # find the request at fault; the others still get answers
                for task in tasks:
                    self._run_alone(task)
                return
            tasks[0].future.set_exception(model_error(exc))
            return
        if len(tasks) == 1:  # whole outputs: non-batchable signatures may have no batch axis
            tasks[0].future.set_result(outputs)
            return
        start = 0
        for task in tasks:
            end = start + task.rows
            task.future.set_result({k: v[start:end] for k, v in outputs.items()})
            start = end

    def _run_alone(self, task: _Task) -> None:
        try:
            task.future.set_result(task.run(task.arrays))
        except Exception as exc:
            task.future.set_exception(model_error(exc))
