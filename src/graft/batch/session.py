"""Connecting to Ray and running ``TFLiteWorker`` actors over encoded images (driver side)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np

from graft.errors import InvalidArgumentError, MissingDependencyError, received

ACTOR_CPUS = 0.5  # actors that held every CPU would starve Ray Data's tasks: the job hangs
BATCH = 32
LOCAL_OBJECT_STORE = 512 << 20  # an in-process cluster's object store; it spills past this
WAVE_BYTES = 1 << 30  # encoded images the driver holds and ships at a time (one dataset each)
log = logging.getLogger(__name__)


def import_ray():
    """Imports Ray with usage statistics off.

    Raises:
        MissingDependencyError: Ray is not installed.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"The ray engine needs Ray Data: pip install 'graft[ray]'. {received(engine='ray')}"
        ) from None
    return ray


def check_address(address: str, timeout: float = 5.0) -> str:
    """``address`` if a Ray head could answer there: a ``host:port`` must accept a TCP
    connection within ``timeout`` seconds (``ray.init`` would retry for minutes); ``auto`` and
    ``ray://`` addresses are left to Ray.

    Raises:
        InvalidArgumentError: nothing listens at ``host:port``.
    """
    import socket

    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return address
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise InvalidArgumentError(
            f"No Ray cluster answers at {address} ({exc}). Start one with `ray start --head` "
            "and pass its address (host:6379, or auto on a node of the cluster), or leave "
            f"--address out for a local one. {received(address=address)}"
        ) from None
    return address


@contextlib.contextmanager
def ray_session(address: str | None = None, verbose: bool = False) -> Iterator[object]:
    """Yields the ``ray`` module connected to a cluster: the one already joined in this
    process, the one at ``address`` (``auto``, ``host:port`` or ``ray://host:port``), or else
    a local one started in-process (stopped on exit; only what this started is stopped).

    Raises:
        MissingDependencyError: Ray is not installed.
        InvalidArgumentError: no Ray cluster answers at ``address``.
    """
    ray = import_ray()
    started = False
    if address and not ray.is_initialized():
        check_address(address)  # nothing listening: a clear error now, not Ray's retries
    if not ray.is_initialized():
        quiet = {} if verbose else {"logging_level": logging.ERROR, "log_to_driver": False}
        if not verbose:  # e.g. the token-authentication notice of every local start
            logging.getLogger("ray").setLevel(logging.ERROR)
        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(
                    num_cpus=os.cpu_count() or 1,
                    include_dashboard=False,
                    object_store_memory=LOCAL_OBJECT_STORE,
                    **quiet,
                )
        except (ConnectionError, TimeoutError, ValueError, RuntimeError) as exc:
            raise InvalidArgumentError(
                f"No Ray cluster answers at {address!r} ({type(exc).__name__}: {exc}). Start "
                "one with `ray start --head` and pass its address (host:6379, or auto on a "
                f"node of the cluster), or leave --address out for a local one. "
                f"{received(address=address)}"
            ) from None
        started = True
    if not verbose:
        logging.getLogger("ray").setLevel(logging.ERROR)
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.print_on_execution_start = False
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def cluster_cpus(ray) -> int:
    """The CPUs the cluster offers (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_tflite(
    ray,
    model: bytes,
    size: tuple[int, int],
    blobs: Sequence[bytes],
    actors: int | None = None,
    threads: int = 1,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Runs a TFLite network over encoded images on ``actors`` Ray actors (default: one per
    cluster CPU), yielding ``(indices into blobs, outputs)`` batches as they finish, in any
    order.

    Raises:
        InvalidArgumentError: ``actors`` is below 1.
    """
    from graft.batch.workers import TFLiteWorker

    if actors is not None and actors < 1:
        raise InvalidArgumentError(f"--actors must be at least 1. {received(actors=actors)}")
    if not len(blobs):
        return
    actors = actors or cluster_cpus(ray)
    # One copy in the object store, fetched by each actor. Inside a list: a top-level
    # reference would make it a constructor argument Ray warns about for restartable actors.
    model_ref = [ray.put(model)]
    items = [{"index": i, "data": b} for i, b in enumerate(blobs)]
    blocks = min(len(items), max(actors * 4, len(items) // 256))  # 4+ blocks per actor
    dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        TFLiteWorker,
        fn_constructor_kwargs={"model": model_ref, "size": tuple(size), "threads": threads},
        batch_size=BATCH,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=ACTOR_CPUS,
        batch_format="numpy",
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        yield np.asarray(batch["index"]), np.asarray(batch["output"], np.float32)


def waves(paths: Sequence[str], budget: int | None = None) -> Iterator[np.ndarray]:
    """Consecutive groups of indices into ``paths`` whose files total at most ``budget`` bytes
    (at least one file each), so the driver never holds every encoded image at once."""
    budget = budget or WAVE_BYTES
    start, total = 0, 0
    for i, path in enumerate(paths):
        size = os.path.getsize(path)
        if i > start and total + size > budget:
            yield np.arange(start, i)
            start, total = i, 0
        total += size
    if start < len(paths):
        yield np.arange(start, len(paths))


def run_tflite_files(
    ray,
    model: bytes,
    size: tuple[int, int],
    paths: Sequence[str],
    actors: int | None = None,
    budget: int | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``run_tflite`` over image files read on the driver (``image_bytes``), one Ray dataset
    per wave of about ``budget`` bytes; yields ``(indices into paths, outputs)``."""
    from graft.data.images import read_inputs

    for wave in waves(paths, budget):
        blobs = read_inputs("image", [paths[i] for i in wave])
        for index, outputs in run_tflite(ray, model, size, blobs, actors):
            yield wave[index], outputs
