"""Headless Chromium for tests of pages graft writes (Debian's chromium package)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Path of the browser; in CI its absence fails the test, elsewhere it skips it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is missing: `make test` installs it with apt-get (Debian).")
    pytest.skip("chromium is not installed (apt-get install chromium)")


def _run(browser: str, args: list[str], profile: Path) -> str:
    out = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def dump_dom(browser: str, page: Path, tmp: Path) -> str:
    """The DOM after Chromium has loaded and rendered ``page``."""
    return _run(browser, ["--dump-dom", page.resolve().as_uri()], tmp / "profile-dom")


def dump_url(browser: str, url: str, tmp: Path) -> str:
    """The DOM of a page served over HTTP, after Chromium has loaded it."""
    return _run(browser, ["--dump-dom", url], tmp / "profile-url")


def screenshot(browser: str, page: Path | str, png: Path) -> Path:
    target = page if isinstance(page, str) else page.resolve().as_uri()
    _run(
        browser,
        ["--window-size=1200,2400", f"--screenshot={png}", target],
        png.parent / "profile-shot",
    )
    return png


JS = Path(__file__).parent / "js"


def node_modules() -> Path:
    """tests/js/node_modules (``make test`` runs ``npm ci`` there); missing fails in CI."""
    modules = JS / "node_modules"
    if (modules / "puppeteer-core").is_dir() and shutil.which("node"):
        return modules
    if os.environ.get("CI"):
        pytest.fail("tests/js/node_modules is missing: `make test` installs it (npm ci).")
    pytest.skip("TF.js test packages missing: npm ci --prefix tests/js")


@contextlib.contextmanager
def loopback(routes: dict[str, Path]):
    """A real HTTP server on 127.0.0.1 serving folders: ``{"/export": dir, ...}`` maps
    ``/export/a.json`` to ``dir/a.json``; ``/npm/`` is tests/js/node_modules. Yields the base
    URL."""
    routes = {"/npm": node_modules(), **routes}

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            path = urllib.parse.unquote(path.split("?", 1)[0])
            if path == "/blank.html":
                return str(JS / "blank.html")
            for prefix, folder in routes.items():
                if path.startswith(prefix + "/"):
                    return str(Path(folder) / path[len(prefix) + 1 :])
            return str(JS / "missing")

        def end_headers(self) -> None:  # as the CDN does (the wasm binary is fetched)
            self.send_header("Access-Control-Allow-Origin", "*")
            super().end_headers()

        def log_message(self, *args) -> None:
            pass

    Handler.extensions_map = {**Handler.extensions_map, ".wasm": "application/wasm"}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def drive(request: dict, profile: Path, timeout: float = 300) -> dict:
    """Runs tests/js/tfjs_driver.mjs (puppeteer-core on Debian's chromium) on one request."""
    env = {**os.environ, "CHROMIUM": chromium()}
    out = subprocess.run(
        ["node", str(JS / "tfjs_driver.mjs"), json.dumps({**request, "profile": str(profile)})],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=JS,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def predict_in_browser(
    folder: Path, x, work: Path, backends=("cpu", "wasm"), timing: bool = False
) -> dict:
    """Runs the TF.js graph model in ``folder`` on the float32 batch ``x`` in Chromium, per
    backend: ``{backend: {"backend", "outputs": {name: rows}, "ms_p50"}, "errors": [...]}``
    (``ms_p50``: one example's latency, measured when ``timing``)."""
    import numpy as np

    data = work / "input"
    data.mkdir(parents=True, exist_ok=True)
    (data / "input.bin").write_bytes(np.ascontiguousarray(x, np.float32).tobytes())
    with loopback({"/export": folder, "/data": data}) as base:
        request = {
            "mode": "predict",
            "base": base,
            "model": "/export/model.json",
            "input": "/data/input.bin",
            "shape": list(x.shape),
            "backends": list(backends),
            "timing": timing,
        }
        return drive(request, work / "profile", timeout=900)
