"""Headless Chromium for tests of pages graft writes (Debian's chromium package)."""

from __future__ import annotations

import os
import shutil
import subprocess
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
