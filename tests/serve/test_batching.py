"""Dynamic batching and overload: batches form across requests, queues are bounded, one bad
request does not fail its batch, and overload answers 429/503 rather than waiting forever."""

from __future__ import annotations

import base64
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from graft.data.images import image_bytes
from graft.serve.batching import Batcher, BatchingOptions, Retired
from graft.serve.status import ServingError
from tests.serve.conftest import ServeServer, add_version, options


def _double(calls: list):
    def run(batch):
        calls.append(len(batch["x"]))
        time.sleep(0.02)
        if (batch["x"] < 0).any():
            raise ValueError("negative input")
        return {"y": batch["x"] * 2}

    return run


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    calls: list[int] = []
    batcher = Batcher(BatchingOptions(max_batch_size=8, timeout_ms=5), "t")
    run = _double(calls)
    futures = [
        batcher.submit("s", True, {"x": np.full((1 + i % 2, 3), float(i))}, run) for i in range(20)
    ]
    results = [f.result(10)["y"] for f in futures]
    batcher.stop()
    for i, y in enumerate(results):
        np.testing.assert_array_equal(y, np.full((1 + i % 2, 3), 2.0 * i))
    assert sum(calls) == 30
    assert len(calls) < 20 and max(calls) <= 8


def test_different_shapes_never_share_a_batch():
    calls: list[int] = []
    batcher = Batcher(BatchingOptions(max_batch_size=32, timeout_ms=20), "t")
    run = _double(calls)
    a = batcher.submit("s", True, {"x": np.ones((1, 3))}, run)
    b = batcher.submit("s", True, {"x": np.ones((1, 4))}, run)
    assert a.result(5)["y"].shape == (1, 3) and b.result(5)["y"].shape == (1, 4)
    batcher.stop()
    assert calls == [1, 1]


def test_a_bad_request_fails_alone():
    batcher = Batcher(BatchingOptions(max_batch_size=8, timeout_ms=30), "t")
    run = _double([])
    good = [batcher.submit("s", True, {"x": np.ones((1, 2))}, run) for _ in range(3)]
    bad = batcher.submit("s", True, {"x": -np.ones((1, 2))}, run)
    assert all(f.result(5)["y"].tolist() == [[2.0, 2.0]] for f in good)
    with pytest.raises(ServingError) as info:
        bad.result(5)
    assert info.value.code == "INVALID_ARGUMENT" and "negative input" in info.value.message
    batcher.stop()


def test_full_queue_is_unavailable_and_stop_drains():
    gate = threading.Event()

    def blocked(batch):
        gate.wait(10)
        return {"y": batch["x"]}

    batcher = Batcher(BatchingOptions(max_batch_size=1, timeout_ms=0, max_enqueued=2), "t")
    running = batcher.submit("s", True, {"x": np.ones((1, 1))}, blocked)
    time.sleep(0.1)  # the worker holds the first; two may wait
    queued = [batcher.submit("s", True, {"x": np.ones((1, 1))}, blocked) for _ in range(2)]
    with pytest.raises(ServingError) as info:
        batcher.submit("s", True, {"x": np.ones((1, 1))}, blocked)
    assert info.value.code == "UNAVAILABLE" and info.value.http_status == 503
    assert "queue" in info.value.message and "Received: queued=2" in info.value.message
    stopper = threading.Thread(target=batcher.stop)
    stopper.start()
    time.sleep(0.05)
    with pytest.raises(Retired):
        batcher.submit("s", True, {"x": np.ones((1, 1))}, blocked)
    gate.set()
    stopper.join(10)
    assert [f.result(1)["y"].tolist() for f in [running, *queued]] == [[[1.0]]] * 3


@pytest.fixture
def slow_server(tiny_module, tmp_path):
    """``digits`` with a model slowed to 0.3 s per batch, batches of 1, two queue places and
    four requests in flight at most (one running, two queued, one too many for the queue)."""
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    opts = options(
        root,
        batching={"max_batch_size": 1, "timeout_ms": 0, "max_enqueued": 2},
        limits={"max_concurrent_requests": 4},
    )
    with ServeServer(opts) as server:
        server.wait_ready()
        for sig in server.manager.models["digits"].versions[1].servable.signatures.values():
            fast = sig.run
            sig.run = lambda batch, fast=fast: (time.sleep(0.3), fast(batch))[1]
        yield server


def test_overload_answers_429_and_503_with_retry_after(slow_server, digit_files):
    body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[0])).decode()}]}
    url = f"{slow_server.url}/v1/models/digits:predict"
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: httpx.post(url, json=body, timeout=30), range(8)))
    codes = sorted(r.status_code for r in responses)
    assert 200 in codes and set(codes) <= {200, 429, 503}, codes
    refused = [r for r in responses if r.status_code != 200]
    assert refused and all(r.headers["retry-after"] == "1" for r in refused)
    assert {r.status_code for r in refused} == {429, 503}
    for r in refused:
        assert ("Too many requests" in r.json()["error"]) == (r.status_code == 429)
    # the server recovers: one request at a time succeeds
    assert httpx.post(url, json=body, timeout=30).status_code == 200
