"""TF.js graph models written by graft, run in a real browser: TF.js 4.22 (cpu and wasm
backends) in Debian's chromium driven by puppeteer-core, served over loopback HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from graft.errors import InvalidArgumentError
from tests.browser import drive, loopback, predict_in_browser


def _in_browser(folder: Path, x: np.ndarray, tmp_path: Path) -> dict:
    answer = predict_in_browser(folder, x, tmp_path)
    assert answer.pop("errors") == []
    return answer


def _depthwise_model():
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.Conv2D(16, 1, use_bias=True)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(5, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BatchNorm statistics far from the identity
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(size=n),
                    rng.normal(size=n),
                    rng.uniform(0.5, 2, n),
                ]
            )
    return model


def test_depthwise_batchnorm_model_matches_keras_in_the_browser(tmp_path):
    import tensorflow as tf

    from graft.export import tfjs

    model = _depthwise_model()
    function = tf.function(lambda images: {"probabilities": model(images, training=False)})
    concrete = function.get_concrete_function(
        tf.TensorSpec([None, 32, 32, 3], tf.float32, "images")
    )
    folder = tfjs.write_graph_model(concrete, tmp_path / "dw", shard_bytes=512)
    document = json.loads((folder / "model.json").read_text())
    assert document["format"] == "graph-model"
    manifest = document["weightsManifest"][0]
    shards = [folder / p for p in manifest["paths"]]
    assert len(shards) > 1 and all(p.stat().st_size <= 512 for p in shards)
    assert manifest["paths"][0] == f"group1-shard1of{len(shards)}.bin"
    ops = {node["op"] for node in document["modelTopology"]["node"]}
    assert {"DepthwiseConv2dNative", "Conv2D", "Relu6"} <= ops <= tfjs.supported_ops()
    assert document["signature"]["inputs"]["images"]["dtype"] == "DT_FLOAT"

    x = np.random.default_rng(1).random((4, 32, 32, 3), dtype=np.float32)
    reference = model.predict_on_batch(x)
    back = tfjs.read_graph_model(folder)(x)["probabilities"]
    assert np.abs(back - reference).max() < 1e-6
    answer = _in_browser(folder, x, tmp_path)
    for backend in ("cpu", "wasm"):
        assert answer[backend]["backend"] == backend
        got = np.asarray(answer[backend]["outputs"]["probabilities"])
        assert got.shape == (4, 5)
        assert np.abs(got - reference).max() < 1e-4, backend


def test_lite0_digits_module_runs_in_the_browser(digits_run, tmp_path):
    """The graft train module, written as `graft export --format tfjs` writes it (the CLI and
    its re-measurement run on the tiny module in test_export.py)."""
    from graft.export import tfjs
    from graft.export.graphs import load_exportable

    ex = load_exportable(digits_run.module_dir)
    folder = tmp_path / "web" / "tfjs"
    tfjs.write(ex, folder)
    files = sorted(p.name for p in folder.iterdir())
    shards = [f for f in files if f.startswith("group1-shard")]
    assert files == sorted(["index.html", "labels.txt", "model.json", *shards])
    assert all((folder / s).stat().st_size <= 4 * 1024 * 1024 for s in shards)
    assert (folder / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    metadata = json.loads((folder / "model.json").read_text())["userDefinedMetadata"]
    assert metadata["imageSize"] == [224, 224] and len(metadata["labels"]) == 10

    with open(digits_run.directory / "predictions.csv") as f:
        items = [line.split(",")[0] for line in f.read().splitlines()[1:]][:6]
    x = ex.prepare(items[:3])
    reference = ex.core.predict_on_batch(x)
    back = tfjs.Runner(folder)(x)  # the written files, read back in TensorFlow
    assert np.abs(back - reference).max() < 1e-5
    answer = _in_browser(folder, x, tmp_path)
    for backend in ("cpu", "wasm"):
        got = np.asarray(answer[backend]["outputs"]["probabilities"])
        assert np.abs(got - reference).max() < 1e-4, backend

    # The demo page: pick a file -> its label, as graft predict says (decoded by the browser).
    import graft

    expected = [p.label for p in graft.predict(digits_run.module_dir, items)]
    with loopback({"/web": folder}) as base:
        request = {
            "mode": "page",
            "base": base,
            "page": "/web/index.html?backend=wasm",
            "files": [str(Path(i).resolve()) for i in items],
        }
        answer = drive(request, tmp_path / "profile-page")
    assert answer["errors"] == [] and answer["backend"] == "wasm"
    assert [r["label"] for r in answer["results"]] == expected
    assert all(len(r["items"]) == 5 and "ms, wasm" in r["status"] for r in answer["results"])


def test_ops_tfjs_lacks_and_text_modules_are_refused(tmp_path):
    import tensorflow as tf

    from graft.export import tfjs
    from graft.export.graphs import Exportable

    function = tf.function(
        lambda images: tf.image.resize(images, (8, 8), antialias=True)  # ScaleAndTranslate
    ).get_concrete_function(tf.TensorSpec([None, 16, 16, 3], tf.float32, "images"))
    with pytest.raises(InvalidArgumentError, match=r"cannot run these ops.*ScaleAndTranslate"):
        tfjs.write_graph_model(function, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    text = Exportable(raw=None, core=None, labels=("a",), kind="text", size=None, name="t")
    with pytest.raises(InvalidArgumentError, match=r"image modules.*Received: format='tfjs'"):
        tfjs.write(text, tmp_path / "text")
    assert not (tmp_path / "text").exists()
