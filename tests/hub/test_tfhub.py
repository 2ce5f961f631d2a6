"""TF Hub's protocol on graft hub: the real ``tensorflow_hub`` package against a real
``graft hub serve`` process on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error

import httpx
import numpy as np
import pytest

import graft.hub
from tests.hub.conftest import TOKEN


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path_factory.mktemp("hub")
    tokens = root / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    log = open(tmp_path_factory.mktemp("log") / "hub.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "graft.cli.main", "hub", "serve", "--root", str(root)]
        + ["--port", str(port), "--token-file", str(tokens)],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/healthz")
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline and proc.poll() is None, log.read()
            time.sleep(0.1)
    try:
        yield url, root, log
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


@pytest.fixture
def tfhub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub_cache"))
    monkeypatch.delenv("TFHUB_MODEL_LOAD_FORMAT", raising=False)
    return tmp_path / "tfhub_cache"


def test_hub_load_gets_the_image_classifier(hub_process, tfhub_cache, tiny_module, digit_files):
    import tensorflow as tf
    import tensorflow_hub as hub

    from graft.data.images import image_bytes, load_images
    from graft.module.io import load

    url, root, _ = hub_process
    graft.hub.push(tiny_module, url, "digits", labels=("stable",), token=TOKEN)
    handle = f"{url}/tfhub/digits/stable"
    obj = hub.load(handle)

    module = load(tiny_module)
    blobs = [image_bytes(p) for p in digit_files[:6]]
    expected = np.asarray(module.model(np.array(blobs, dtype=object)))
    size = tuple(module.manifest.inputs.size)
    pixels = load_images([str(p) for p in digit_files[:6]], size)  # float RGB in [0, 1]
    np.testing.assert_allclose(obj(tf.constant(pixels)).numpy(), expected, atol=1e-5)
    served = obj.signatures["serving_default"](inputs=tf.constant(blobs))
    np.testing.assert_allclose(served["outputs"].numpy(), expected, atol=1e-5)
    layer = hub.KerasLayer(handle)  # the Keras path of existing code
    np.testing.assert_allclose(np.asarray(layer(pixels)), expected, atol=1e-5)

    # hub.resolve: a local SavedModel folder; the .tar.gz was made once and kept in storage
    local = hub.resolve(f"{url}/tfhub/digits/1")
    assert os.path.isfile(os.path.join(local, "saved_model.pb"))
    pointers = list((root / "objects" / "tfhub").glob("*.json"))
    assert len(pointers) == 1
    r = httpx.get(f"{url}/tfhub/digits/1", params={"tf-hub-format": "compressed"})
    assert r.status_code == 200 and r.headers["etag"].strip('"') == r.headers["x-graft-sha256"]
    import hashlib

    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-graft-sha256"]
    # three downloads (label, number, number again), one conversion
    assert len(list((root / "objects" / "tfhub").rglob("*.tar.gz"))) == 1


def test_hub_load_gets_minilm_strings_in(hub_process, tfhub_cache, zoo_home):
    import tensorflow as tf
    import tensorflow_hub as hub

    import graft

    url, _, _ = hub_process
    graft.hub.push("minilm_l6.sentence", url, "minilm", token=TOKEN)
    obj = hub.load(f"{url}/tfhub/minilm/latest")
    texts = ["the striker scored twice", "", "graft reuses pretrained models offline"]
    got = obj(tf.constant(texts)).numpy()
    expected = graft.load("minilm_l6.sentence").predict(tf.constant(texts), verbose=0)
    assert got.shape == (3, 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_wrong_refs_are_404_and_the_client_raises(hub_process, tfhub_cache, tiny_module):
    import tensorflow_hub as hub

    url, _, _ = hub_process
    graft.hub.push(tiny_module, url, "wrongref", token=TOKEN)
    with pytest.raises(urllib.error.HTTPError) as info:
        hub.load(f"{url}/tfhub/wrongref/9")
    assert info.value.code == 404
    r = httpx.get(f"{url}/tfhub/nosuch/1", params={"tf-hub-format": "compressed"})
    assert r.status_code == 404 and "nosuch" in r.json()["error"]
    r = httpx.get(f"{url}/tfhub/wrongref/1", params={"tf-hub-format": "uncompressed"})
    assert r.status_code == 400 and "Received: tf-hub-format='uncompressed'" in r.json()["error"]
    page = httpx.get(f"{url}/tfhub/wrongref/1")
    assert page.status_code == 303 and page.headers["location"] == "/modules/wrongref?version=1"
    assert not list((tfhub_cache).glob("*")) or all(
        not p.name.endswith(".lock") for p in tfhub_cache.rglob("*")
    )
