"""The hub's HTML catalog, rendered by a real browser (headless Chromium)."""

from __future__ import annotations

import html

import httpx

import graft.hub
from tests.browser import chromium, dump_url, screenshot
from tests.hub.conftest import fake_module


def test_catalog_lists_searches_and_shows_a_module(hub, tmp_path):
    browser = chromium()
    graft.hub.push(
        fake_module(tmp_path / "a", "digits", seed=1, metrics={"accuracy": 0.9}), hub.url, "digits"
    )
    graft.hub.push(
        fake_module(tmp_path / "b", "digits", seed=2, metrics={"accuracy": 0.9330167597765363}),
        hub.url,
        "digits",
        labels=("stable",),
    )
    graft.hub.push(
        fake_module(
            tmp_path / "c",
            "reviews",
            task="text-classifier",
            description="movie <b>review</b> sentiment",
        ),
        hub.url,
        "reviews",
    )

    index = dump_url(browser, f"{hub.url}/", tmp_path)
    assert 'id="count">2 modules' in index
    assert 'href="/modules/digits"' in index and 'href="/modules/reviews"' in index
    assert "movie &lt;b&gt;review&lt;/b&gt; sentiment" in index  # escaped, not markup

    found = dump_url(browser, f"{hub.url}/?q=sentiment", tmp_path)
    assert "1 module matching" in found and "/modules/reviews" in found
    assert "/modules/digits" not in found
    by_task = dump_url(browser, f"{hub.url}/?task=image-classifier", tmp_path)
    assert "/modules/digits" in by_task and "/modules/reviews" not in by_task

    page = dump_url(browser, f"{hub.url}/modules/digits", tmp_path)
    text = html.unescape(page)
    assert f'graft.load("hub://{hub.hostport}/digits@stable")' in text
    assert f"graft hub pull hub://{hub.hostport}/digits@stable" in text
    assert "<td>accuracy</td><td>0.9330</td>" in page  # metrics of the stable version, rounded
    assert '"task": "image-classifier"' in text  # the manifest
    assert page.count('href="/modules/digits?version=') == 2
    older = html.unescape(dump_url(browser, f"{hub.url}/modules/digits?version=1", tmp_path))
    assert "<td>accuracy</td><td>0.9000</td>" in older

    missing = httpx.get(f"{hub.url}/modules/nothing")
    assert missing.status_code == 404 and "no module named" in missing.text
    api = dump_url(browser, f"{hub.url}/api", tmp_path)
    assert "/api/v1/modules/{name}/versions/{ref}/archive" in api

    shot = screenshot(browser, f"{hub.url}/modules/digits", tmp_path / "module.png")
    assert shot.stat().st_size > 10_000
