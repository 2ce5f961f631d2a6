"""The hub's REST API against a real uvicorn server on loopback."""

from __future__ import annotations

import http.client
import threading
import time

import httpx
import pytest

from graft.hub.archive import pack
from tests.hub.conftest import TOKEN, fake_module

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _publish(hub, module, name="digits", params=None, headers=None, tmp=None):
    archive = (tmp or module.parent) / f"{module.name}.tar"
    sha, size = pack(module, archive)
    return httpx.post(
        f"{hub.url}/api/v1/modules/{name}/versions",
        params=params or {},
        content=archive.read_bytes(),
        headers={"X-Graft-Sha256": sha, **(AUTH if headers is None else headers)},
    )


def test_publish_needs_a_valid_token(hub, module_dir):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = _publish(hub, module_dir, headers=headers)
        assert r.status_code == 401, r.text
        assert "valid token" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(f"{hub.url}/api/v1/modules").json() == {"modules": []}
    assert list((hub.root / "tmp").iterdir()) == []


def test_versions_are_numbered_immutable_and_labelled(hub, tmp_path):
    one = fake_module(tmp_path / "one", seed=1)
    two = fake_module(tmp_path / "two", seed=2, metrics={"accuracy": 0.95})
    r = _publish(hub, one, params={"label": "stable"})
    assert r.status_code == 201 and r.json()["version"] == 1
    assert _publish(hub, two).json()["version"] == 2
    r = _publish(hub, two, params={"version": 2})
    assert r.status_code == 409 and "exists" in r.json()["error"]
    r = _publish(hub, two, params={"version": 7, "label": "latest"})
    assert r.status_code == 400 and "not 'latest'" in r.json()["error"]

    detail = httpx.get(f"{hub.url}/api/v1/modules/digits").json()
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    assert detail["labels"] == {"stable": 1}
    assert detail["versions"][0]["manifest"]["metrics"] == {"accuracy": 0.95}
    get = lambda ref: httpx.get(f"{hub.url}/api/v1/modules/digits/versions/{ref}")  # noqa: E731
    assert get("latest").json()["version"] == 2
    assert get("stable").json()["version"] == 1

    r = httpx.put(
        f"{hub.url}/api/v1/modules/digits/labels/stable", json={"version": 2}, headers=AUTH
    )
    assert r.json()["labels"] == {"stable": 2}
    r = httpx.put(
        f"{hub.url}/api/v1/modules/digits/labels/stable", json={"version": 9}, headers=AUTH
    )
    assert r.status_code == 404 and "no version 9" in r.json()["error"]
    r = httpx.post(
        f"{hub.url}/api/v1/modules/digits/versions/2/yank",
        json={"reason": "bad split"},
        headers=AUTH,
    )
    assert r.json()["yanked"] is True
    assert get("latest").json()["version"] == 1
    assert get("2").json()["yank_reason"] == "bad split"
    assert (
        httpx.delete(f"{hub.url}/api/v1/modules/digits/versions/2/yank", headers=AUTH).json()[
            "yanked"
        ]
        is False
    )
    assert get("latest").json()["version"] == 2
    r = get("nolabel")
    assert r.status_code == 404 and "no label 'nolabel' (labels: stable)" in r.json()["error"]
    assert httpx.get(f"{hub.url}/api/v1/modules/nothing").status_code == 404


def test_search_by_text_task_and_tag(hub, tmp_path):
    _publish(hub, fake_module(tmp_path / "a", "digits", tags=("vision", "mnist")))
    _publish(
        hub,
        fake_module(
            tmp_path / "b",
            "reviews",
            task="text-classifier",
            description="movie review sentiment",
            tags=("nlp",),
        ),
        "reviews",
    )

    def names(**query):
        found = httpx.get(f"{hub.url}/api/v1/modules", params=query).json()["modules"]
        return [m["name"] for m in found]

    assert names() == ["digits", "reviews"]
    assert names(q="sentiment movie") == ["reviews"]
    assert names(q="HANDWRITTEN") == ["digits"]
    assert names(task="text-classifier") == ["reviews"]
    assert names(tag="mnist") == ["digits"]
    assert names(q="nothing-like-this") == []


def test_archive_download_has_etag_range_and_conditional_requests(hub, module_dir, tmp_path):
    record = _publish(hub, module_dir).json()
    url = f"{hub.url}/api/v1/modules/digits/versions/1/archive"
    archive = (tmp_path / "modules" / "digits.tar").read_bytes()
    full = httpx.get(url)
    assert full.status_code == 200 and full.content == archive
    assert full.headers["etag"] == f'"{record["sha256"]}"'
    assert full.headers["x-graft-sha256"] == record["sha256"]
    assert full.headers["accept-ranges"] == "bytes"
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == archive[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(archive)}"
    assert httpx.get(url, headers={"Range": "bytes=-10"}).content == archive[-10:]
    assert httpx.get(url, headers={"Range": "bytes=500-"}).content == archive[500:]
    stale = httpx.get(url, headers={"Range": "bytes=500-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == archive
    bad = httpx.get(url, headers={"Range": f"bytes={len(archive)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(archive)}"
    assert httpx.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(archive))
    assert httpx.get(f"{hub.url}/api/v1/modules/digits/versions/2/archive").status_code == 404


def test_damaged_or_mislabelled_uploads_are_refused_and_nothing_is_kept(hub, module_dir, tmp_path):
    archive = tmp_path / "a.tar"
    sha, _ = pack(module_dir, archive)
    data = bytearray(archive.read_bytes())
    url = f"{hub.url}/api/v1/modules/digits/versions"
    r = httpx.post(url, content=bytes(data), headers={**AUTH, "X-Graft-Sha256": "0" * 64})
    assert r.status_code == 400 and "damaged" in r.json()["error"]
    data[data.find((module_dir / "model.keras").read_bytes()[:64]) + 100] ^= 0xFF
    r = httpx.post(url, content=bytes(data), headers=AUTH)
    assert r.status_code == 400 and "model.keras in the archive differs" in r.json()["error"]
    r = httpx.post(url, content=bytes(data[:3000]), headers=AUTH)
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    r = httpx.post(url, content=b"", headers=AUTH)
    assert r.status_code == 400 and "no body" in r.json()["error"]
    assert httpx.get(f"{hub.url}/api/v1/modules").json()["modules"] == []
    assert list((hub.root / "tmp").iterdir()) == []
    assert not (hub.root / "objects" / "blobs").exists()


def test_upload_size_limit_answers_413_before_reading(tmp_path, module_dir):
    from tests.hub.conftest import HubServer

    with HubServer(tmp_path / "root", max_upload_bytes=2000) as hub:
        conn = http.client.HTTPConnection(hub.hostport, timeout=10)
        conn.putrequest("POST", "/api/v1/modules/digits/versions")
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", str(1 << 40))  # a terabyte that is never sent
        conn.endheaders()
        response = conn.getresponse()
        assert response.status == 413
        assert b"at most 2000 bytes" in response.read()

        def chunks():  # no Content-Length: the cap applies while reading
            yield from (b"x" * 1000 for _ in range(5))

        r = httpx.post(f"{hub.url}/api/v1/modules/digits/versions", content=chunks(), headers=AUTH)
        assert r.status_code == 413
        assert list((hub.root / "tmp").iterdir()) == []


RAW_PATHS = [
    "/api/v1/modules/../../etc/passwd",
    "/api/v1/modules/%2e%2e/versions/1/archive",
    "/api/v1/modules/%2e%2e%2f%2e%2e%2fetc/versions/1",
    "/api/v1/modules/%252e%252e/versions/1/archive",
    "/api/v1/modules/..%5c..%5cetc/versions/1",
    "/api/v1/modules/..\\..\\etc/versions/1",
    "/api/v1/modules/digits/versions/..%2f..%2f..%2ftokens/archive",
    "/api/v1/modules/digits/versions/%2e%2e/archive",
    "/modules/%2e%2e",
]


@pytest.mark.parametrize("path", RAW_PATHS)
def test_path_traversal_is_refused_with_4xx(hub, module_dir, path):
    _publish(hub, module_dir)
    conn = http.client.HTTPConnection(hub.hostport, timeout=10)
    conn.putrequest("GET", path, skip_accept_encoding=True)
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    assert 400 <= response.status < 500, (response.status, body[:200])
    assert b"root:" not in body and TOKEN.encode() not in body


@pytest.mark.parametrize("name", ["%2e%2e", "..%2f..%2fevil", "%252e%252e", "..%5cevil"])
def test_publish_under_a_traversal_name_writes_nothing_outside(hub, module_dir, tmp_path, name):
    archive = tmp_path / "a.tar"
    pack(module_dir, archive)
    conn = http.client.HTTPConnection(hub.hostport, timeout=10)
    body = archive.read_bytes()
    conn.request(
        "POST",
        f"/api/v1/modules/{name}/versions",
        body=body,
        headers={**AUTH, "Content-Type": "application/x-tar"},
    )
    response = conn.getresponse()
    response.read()
    assert 400 <= response.status < 500
    assert not list(hub.root.parent.glob("evil*"))
    assert sorted(p.name for p in hub.root.iterdir()) == sorted(
        ["objects", "tmp", "index.sqlite", "index.sqlite-wal", "index.sqlite-shm"]
    )
    assert list((hub.root / "objects").rglob("*")) == []


def test_server_answers_while_a_large_publish_streams_in(hub, tmp_path):
    big = fake_module(tmp_path / "big", "big", size=40 << 20)
    archive = tmp_path / "big.tar"
    sha, size = pack(big, archive)
    progress = {"sent": 0}

    def slow_body():
        with open(archive, "rb") as f:
            while block := f.read(1 << 20):
                progress["sent"] += len(block)
                time.sleep(0.05)  # about 2 s for the whole upload
                yield block

    result = {}

    def upload():
        result["r"] = httpx.post(
            f"{hub.url}/api/v1/modules/big/versions",
            content=slow_body(),
            headers={**AUTH, "X-Graft-Sha256": sha, "Content-Length": str(size)},
            timeout=60,
        )

    thread = threading.Thread(target=upload)
    thread.start()
    latencies = []
    while progress["sent"] < 4 << 20:
        time.sleep(0.01)
    while thread.is_alive() and progress["sent"] < size - (4 << 20):
        start = time.perf_counter()
        assert httpx.get(f"{hub.url}/api/v1/modules", timeout=5).status_code == 200
        assert httpx.get(f"{hub.url}/healthz", timeout=5).json() == {"status": "ok"}
        latencies.append(time.perf_counter() - start)
        time.sleep(0.05)
    thread.join(60)
    assert result["r"].status_code == 201, result["r"].text
    assert len(latencies) >= 5, "the upload finished before other requests were tried"
    assert max(latencies) < 1.0, latencies


def test_openapi_documents_the_api(hub):
    spec = httpx.get(f"{hub.url}/openapi.json").json()
    paths = spec["paths"]
    assert {"get"} <= set(paths["/api/v1/modules"])
    assert {"get", "head"} <= set(paths["/api/v1/modules/{name}/versions/{ref}/archive"])
    assert "post" in paths["/api/v1/modules/{name}/versions"]
    assert "put" in paths["/api/v1/modules/{name}/labels/{label}"]
    assert "post" in paths["/api/v1/modules/{name}/versions/{version}/yank"]
    assert (
        "application/x-tar"
        in paths["/api/v1/modules/{name}/versions"]["post"]["requestBody"]["content"]
    )


def test_a_label_table_of_earlier_versions_is_read_and_migrated(tmp_path, module_dir):
    import json

    from graft.hub.server.store import Store, Upload

    archive = tmp_path / "m.tar"
    sha, size = pack(module_dir, archive)
    store = Store(tmp_path / "root")
    store.publish("digits", Upload(archive, sha, size))
    store.close()
    objects = tmp_path / "root" / "objects" / "modules" / "digits"
    (objects / "labels.json").write_text(json.dumps({"stable": 1, "prod": 1}))
    store = Store(tmp_path / "root")
    try:
        assert store.module("digits")["labels"] == {"prod": 1, "stable": 1}
        assert sorted(p.name for p in (objects / "labels").iterdir()) == [
            "prod.json",
            "stable.json",
        ]
        assert not (objects / "labels.json").exists()
        assert store.delete_label("digits", "prod") == {"stable": 1}
        assert not (objects / "labels" / "prod.json").exists()
    finally:
        store.close()
