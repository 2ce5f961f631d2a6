"""``graft serve`` as users run it: a process that answers, then drains on SIGTERM."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from graft.data.images import image_bytes
from tests.serve.conftest import add_version
from tests.test_quiet import native_lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(root, tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``graft serve`` in its own process, once /readyz says every model is AVAILABLE."""
    port = _free_port()
    env = {**os.environ, "GRAFT_HOME": str(tmp_path / "home")}
    cmd = [
        sys.executable, "-m", "graft.cli.main", "serve", "--model-dir", str(root),
        "--host", "127.0.0.1", "--port", str(port), *extra,
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()
        try:
            if httpx.get(url + "/readyz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("graft serve did not become ready")
        time.sleep(0.2)


def test_sigterm_lets_requests_in_flight_finish(tiny_module, digit_files, tmp_path):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    proc, url = _start(root, tmp_path, "--batch-timeout-ms", "1500", "--max-batch-size", "64")
    try:
        body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[5])).decode()}]}
        results: list = []

        def client():
            r = httpx.post(f"{url}/v1/models/digits:predict", json=body, timeout=30)
            results.append((r.status_code, time.monotonic()))

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the requests wait 1.5 s for a fuller batch: still in flight
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        code = proc.wait(30)
        output = proc.stdout.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [status for status, _ in results] == [200, 200, 200], output
    assert all(done > sent for _, done in results)  # answered after the signal
    # uvicorn re-raises the signal once shut down, so the exit status says "terminated"
    assert code in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert f"REST API at {url}/v1/models/digits" in output  # the served names
    assert native_lines(output) == []  # a quiet start-up
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/healthz")


def test_several_workers_all_answer(tiny_module, digit_files, tmp_path):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    proc, url = _start(root, tmp_path, "--workers", "2")
    body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[2])).decode()}]}
    try:
        deadline = time.monotonic() + 120
        codes = []
        while len(codes) < 20 or codes[-20:] != [200] * 20:  # both workers ready
            r = httpx.post(f"{url}/v1/models/digits:predict", json=body, timeout=30)
            assert r.status_code in (200, 503), r.text
            codes.append(r.status_code)
            assert time.monotonic() < deadline
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        output = proc.stdout.read().decode()
    assert output.count("Started server process") == 2, output


def test_cli_refuses_bad_options(tmp_path):
    from typer.testing import CliRunner

    from graft.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "--model-dir must be a directory" in result.output
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 1 and "exactly one of --model-dir" in result.output
    result = runner.invoke(app, ["serve", "--model-dir", str(tmp_path), "--runtime", "gpu"])
    assert result.exit_code == 1 and "Received: --runtime='gpu'" in result.output
