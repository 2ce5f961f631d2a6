"""`graft hub serve` as a real process, and `graft hub seed` from the zoo."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time

import httpx
from typer.testing import CliRunner

import graft.hub
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.cli.main import app


def test_hub_serve_creates_a_private_token_and_serves(tmp_path, module_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRAFT_HUB_TOKEN")}
    root = tmp_path / "hub"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "graft.cli.main",
            "hub",
            "serve",
            "--root",
            str(root),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        token_file = root / "tokens"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert len(token) >= 32
        record = graft.hub.push(module_dir, url, "digits", token=token)
        assert record["version"] == 1
        assert "digits" in httpx.get(f"{url}/").text
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status says why.
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert f"write tokens from {root / 'tokens'}" in out
    assert token not in out  # the token itself is never printed


def test_seed_publishes_zoo_entries_once(hub):
    runner = CliRunner()
    first = runner.invoke(app, ["hub", "seed", "--to", hub.hostport, "tiny_cnn*"])
    assert first.exit_code == 0, first.output
    assert "tiny_cnn.test@1 published" in first.output and "1 published" in first.output
    again = runner.invoke(app, ["hub", "seed", "--to", hub.hostport, "tiny_cnn*"])
    assert "0 published" in again.output
    detail = httpx.get(f"{hub.url}/api/v1/modules/tiny_cnn.test").json()
    assert detail["labels"] == {"stable": 1} and len(detail["versions"]) == 1
