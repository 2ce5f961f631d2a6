"""The hub on S3-compatible storage: a real S3 server on loopback (moto's server mode)."""

from __future__ import annotations

import time

import httpx
import pytest

import graft.hub
from tests.hub.conftest import TOKEN, HubServer, fake_module

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def s3(monkeypatch):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="models")
    yield endpoint
    server.stop()


def test_two_hub_servers_share_one_bucket(s3, tmp_path, graft_home):
    from graft.hub.server.storage import S3Storage

    storage = S3Storage("s3://models/graft", endpoint_url=s3)
    module = fake_module(tmp_path / "m", size=3 << 20)
    with HubServer(tmp_path / "root-a", storage=storage) as a:
        record = graft.hub.push(module, a.url, "digits", labels=("stable",), token=TOKEN)
        assert record["version"] == 1
    keys = sorted(
        o["Key"]
        for o in boto3.client("s3", endpoint_url=s3).list_objects_v2(Bucket="models")["Contents"]
    )
    assert keys == [
        f"graft/blobs/{record['sha256']}.tar",
        "graft/modules/digits/1.json",
        "graft/modules/digits/labels/stable.json",
    ]

    # A second server with its own (empty) index finds everything in the bucket.
    with HubServer(tmp_path / "root-b", storage=S3Storage("s3://models/graft", s3)) as b:
        detail = httpx.get(f"{b.url}/api/v1/modules/digits").json()
        assert detail["labels"] == {"stable": 1}
        url = f"{b.url}/api/v1/modules/digits/versions/1/archive"
        part = httpx.get(url, headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and len(part.content) == 1000
        path = graft.hub.pull(f"hub://{b.hostport}/digits@stable")
        assert (path / "model.keras").read_bytes() == (module / "model.keras").read_bytes()
        # The version is claimed in the bucket, not only in this server's index.
        assert not storage.put_bytes("modules/digits/1.json", b"{}", exclusive=True)
        # Server b re-reads the bucket, so what a publishes appears there too.
        b.store.refresh_every(0.2)
        with HubServer(tmp_path / "root-a", storage=storage) as a:
            graft.hub.push(fake_module(tmp_path / "m2", seed=2), a.url, "digits", token=TOKEN)
        deadline = time.monotonic() + 10
        while httpx.get(f"{b.url}/api/v1/modules/digits/versions/latest").json()["version"] != 2:
            assert time.monotonic() < deadline, "server b never saw version 2"
            time.sleep(0.1)
        r = httpx.post(
            f"{b.url}/api/v1/modules/digits/versions",
            params={"version": 1},
            content=b"x",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 409


def test_two_servers_racing_label_moves_lose_none(s3, tmp_path, graft_home):
    """50 label moves on each of two servers at once, on one bucket: every move is kept (a
    label table read, changed and written back lost about half of them)."""
    from concurrent.futures import ThreadPoolExecutor

    from graft.hub.server.storage import S3Storage

    def storage():
        return S3Storage("s3://models/graft", endpoint_url=s3)

    with HubServer(tmp_path / "a", storage=storage()) as a:
        for seed in (1, 2):
            graft.hub.push(fake_module(tmp_path / f"m{seed}", seed=seed), a.url, "m", token=TOKEN)
    with (
        HubServer(tmp_path / "a", storage=storage()) as a,
        HubServer(tmp_path / "b", storage=storage()) as b,
    ):
        auth = {"Authorization": f"Bearer {TOKEN}"}
        expected = {f"{server}{i}": 1 + (i % 2) for server in "ab" for i in range(50)}

        def moves(server, url):
            with httpx.Client(headers=auth) as client:
                for i in range(50):
                    label = f"{server}{i}"
                    r = client.put(
                        f"{url}/api/v1/modules/m/labels/{label}", json={"version": expected[label]}
                    )
                    assert r.status_code == 200, r.text

        with ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(moves, "a", a.url), pool.submit(moves, "b", b.url)]:
                future.result()
    with HubServer(tmp_path / "fresh", storage=storage()) as fresh:  # index built from the bucket
        labels = httpx.get(f"{fresh.url}/api/v1/modules/m").json()["labels"]
    assert labels == expected


def test_missing_bucket_address_is_a_clear_error():
    from graft.errors import InvalidArgumentError
    from graft.hub.server.storage import S3Storage

    with pytest.raises(InvalidArgumentError, match=r"s3://bucket\[/prefix\].*Received: storage="):
        S3Storage("models/graft")
