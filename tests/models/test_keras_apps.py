"""keras.applications entries: the real download path against a loopback server, local files,
offline errors, and the [0, 1] input contract."""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import WeightsError
from graft.models import keras_apps

SMALL = "mobilenet_v3_small"
NOTOP = "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"


def write_legacy_h5(model, path: Path) -> None:
    """Writes weights in the legacy HDF5 layout keras.applications files use."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory) -> tuple[Path, object]:
    """A randomly initialised MobileNetV3Small (no top) saved like the official file."""
    import keras

    keras.utils.set_random_seed(3)
    model = keras.applications.MobileNetV3Small(weights=None, include_top=False, pooling="avg")
    folder = tmp_path_factory.mktemp("served") / "tensorflow/keras-applications/mobilenet_v3"
    folder.mkdir(parents=True)
    write_legacy_h5(model, folder / NOTOP)
    return folder / NOTOP, model


@pytest.fixture
def expect_fake_hash(fake_weights, monkeypatch):
    """The official md5 cannot match a file made here: expect the served file's md5 instead."""
    path, _ = fake_weights
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    app = keras_apps.APPS[SMALL]
    monkeypatch.setitem(
        keras_apps.APPS, SMALL, replace(app, notop_file=(NOTOP, app.notop_file[1], md5))
    )
    return md5


@pytest.fixture
def server(fake_weights):
    """A real HTTP server on loopback serving the weights under Keras' URL layout."""
    root = fake_weights[0].parents[3]
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()
    httpd.server_close()


def test_download_verify_and_build(server, fake_weights, expect_fake_hash, monkeypatch, graft_home):
    url, requests = server
    monkeypatch.setenv("GRAFT_WEIGHTS_BASE_URL", url)
    model = graft.load(f"{SMALL}.imagenet")
    assert any(NOTOP in r for r in requests)
    downloads = sorted(p.name for p in (graft_home / "downloads").iterdir())
    assert NOTOP in downloads and not [d for d in downloads if d.endswith(".part")]
    # The zoo model on [0, 1] input equals Keras' own model with the same weights on 0-255.
    _, reference = fake_weights
    x = np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), reference.predict(x * 255.0, verbose=0), atol=1e-4
    )
    prov = model.graft_manifest.provenance
    assert prov.converted_from == NOTOP and len(prov.source_sha256) == 64
    # A second load uses the cache: no new request.
    count = len(requests)
    graft.load(f"{SMALL}.imagenet")
    assert len(requests) == count


def test_wrong_hash_leaves_nothing(server, fake_weights, monkeypatch, graft_home):
    url, _ = server
    monkeypatch.setenv("GRAFT_WEIGHTS_BASE_URL", url)  # official md5 cannot match this file
    with pytest.raises(WeightsError, match=r"has md5 .*expected 8768d4c2|expected d3e8ec80"):
        graft.models.materialize(f"{SMALL}.imagenet")
    leftovers = [p for p in graft_home.rglob("*") if p.is_file() and not p.suffix == ".lock"]
    assert leftovers == []


def test_http_error(server, monkeypatch):
    url, _ = server
    monkeypatch.setenv("GRAFT_WEIGHTS_BASE_URL", url + "missing/")
    with pytest.raises(WeightsError, match=r"answered HTTP 404.*graft models fetch"):
        graft.models.materialize(f"{SMALL}.imagenet")


def test_offline_without_file_says_how_to_provide_it(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a socket was opened while GRAFT_OFFLINE=1")

    monkeypatch.setenv("GRAFT_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    with pytest.raises(WeightsError) as info:
        graft.load("resnet50.imagenet")
    message = str(info.value)
    assert "GRAFT_OFFLINE is set" in message
    assert "graft models fetch resnet50.imagenet --weights-file PATH" in message
    assert "GRAFT_WEIGHTS_DIR" in message
    assert message.endswith(
        "Received: filename='resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'"
    )


def test_weights_dir_is_used_offline(fake_weights, expect_fake_hash, monkeypatch):
    monkeypatch.setenv("GRAFT_OFFLINE", "1")
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(fake_weights[0].parent))
    assert graft.load(f"{SMALL}.imagenet").output_shape == (None, 576)


def test_cli_fetch_with_weights_file(fake_weights, expect_fake_hash, monkeypatch, graft_home):
    from typer.testing import CliRunner

    from graft.cli.main import app

    monkeypatch.setenv("GRAFT_OFFLINE", "1")
    result = CliRunner().invoke(
        app, ["models", "fetch", f"{SMALL}.imagenet", "--weights-file", str(fake_weights[0])]
    )
    assert result.exit_code == 0, result.output
    assert "Cached" in result.output
    assert (graft_home / "downloads" / NOTOP).is_file()
    assert graft.models.is_materialized(f"{SMALL}.imagenet")


def test_cli_fetch_rejects_a_wrong_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from graft.cli.main import app

    bogus = tmp_path / "w.h5"
    bogus.write_bytes(b"not weights")
    result = CliRunner().invoke(
        app, ["models", "fetch", "resnet50.imagenet", "--weights-file", str(bogus)]
    )
    assert result.exit_code == 1
    assert "expected 4d473c1dd8becc155b73f8504c6f6626" in result.output


@pytest.mark.parametrize(
    "arch, include_top",
    [
        ("mobilenet_v2", False),  # needs keras.applications.mobilenet_v2.preprocess_input
        ("mobilenet_v3_small", True),  # classifier form; preprocessing inside Keras' model
        ("efficientnet_b0", False),  # preprocessing inside Keras' model
    ],
)
def test_entries_equal_keras_with_its_preprocessing(arch, include_top, tmp_path, monkeypatch):
    """Each entry on [0, 1] input equals keras.applications on 0-255 input + preprocess_input."""
    import keras

    app = keras_apps.APPS[arch]
    keras.utils.set_random_seed(5)
    kwargs = {"include_top": True} if include_top else {"include_top": False, "pooling": "avg"}
    reference = getattr(keras.applications, app.keras_name)(weights=None, **kwargs)
    filename, url_path, _ = app.top_file if include_top else app.notop_file
    write_legacy_h5(reference, tmp_path / filename)
    md5 = hashlib.md5((tmp_path / filename).read_bytes()).hexdigest()
    field = "top_file" if include_top else "notop_file"
    monkeypatch.setitem(keras_apps.APPS, arch, replace(app, **{field: (filename, url_path, md5)}))
    monkeypatch.setenv("GRAFT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("GRAFT_OFFLINE", "1")
    tag = "imagenet_classifier" if include_top else "imagenet"
    model = graft.load(f"{arch}.{tag}")
    x = np.random.default_rng(2).random((2, 224, 224, 3), dtype=np.float32)
    pixels = x * 255.0
    if arch == "mobilenet_v2":
        pixels = keras.applications.mobilenet_v2.preprocess_input(pixels)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), reference.predict(pixels, verbose=0), atol=1e-4
    )
    if include_top:
        assert model.graft_manifest.labels[985] == "daisy"
        assert model.count_params() == app.params_top
    else:
        assert model.output_shape == (None, app.feature_dim)


def test_resnet_caffe_preprocessing_matches_keras():
    import keras

    from graft.models.keras_apps import _CAFFE_MEAN
    from graft.models.layers import ImageNormalization

    x = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    layer = ImageNormalization([255.0] * 3, [-m for m in _CAFFE_MEAN], reverse_channels=True)
    expected = keras.applications.resnet50.preprocess_input(x * 255.0)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-4)


@pytest.mark.parametrize("arch", sorted(keras_apps.APPS))
def test_group_keys_cover_weighted_layers(arch):
    import keras

    from graft.models.transfer import assign_groups

    app = keras_apps.APPS[arch]
    model = getattr(keras.applications, app.keras_name)(weights=None, include_top=True)
    assert model.count_params() == app.params_top
    groups = assign_groups(model.layers, keras_apps.group_key)
    names = [g.name for g in groups]
    assert names[-1] == "head" and "stem" in names[:2]
    assert len(set(names)) == len(names)
    grouped = {n for g in groups for n in g.layers}
    assert {layer.name for layer in model.layers if layer.weights} <= grouped
