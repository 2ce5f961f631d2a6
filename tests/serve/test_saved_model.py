"""SavedModels served as TF Serving serves them: graft's export, and a plain numeric one."""

from __future__ import annotations

import base64

import httpx
import numpy as np

from graft.data.images import image_bytes
from tests.serve.conftest import ServeServer, options


def _half_plus_two(path) -> None:
    """TF Serving's test model: y = x / 2 + 2 on float32 (batch, 1)... and a fixed-shape one."""
    import tensorflow as tf

    class HalfPlusTwo(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x / 2 + 2}

        @tf.function(input_signature=[tf.TensorSpec([2, 2], tf.int32, name="m")])
        def total(self, m):
            return {"sum": tf.reduce_sum(m)}

    module = HalfPlusTwo()
    tf.saved_model.save(
        module, str(path), signatures={"serving_default": module.serve, "total": module.total}
    )


def test_numeric_saved_model_matches_tf_serving(tmp_path):
    _half_plus_two(tmp_path / "models" / "half_plus_two" / "123")
    with ServeServer(options(tmp_path / "models")) as server:
        server.wait_ready()
        url = f"{server.url}/v1/models/half_plus_two"
        rows = httpx.post(f"{url}:predict", json={"instances": [1.0, 2.0, 5.0]})
        assert rows.json() == {"predictions": [2.5, 3.0, 4.5]}
        cols = httpx.post(
            f"{url}/versions/123:predict",
            json={"signature_name": "serving_default", "inputs": [3.0, 4.0]},
        )
        assert cols.json() == {"outputs": [3.5, 4.0]}
        total = httpx.post(
            f"{url}:predict", json={"signature_name": "total", "inputs": [[1, 2], [3, 4]]}
        )
        assert total.json() == {"outputs": 10}
        wrong = httpx.post(f"{url}:predict", json={"instances": ["a"]})
        assert wrong.status_code == 400 and "float32 numbers" in wrong.json()["error"]
        frac = httpx.post(
            f"{url}:predict", json={"signature_name": "total", "inputs": [[1.5, 2], [3, 4]]}
        )
        assert frac.status_code == 400 and "integers" in frac.json()["error"]
        shape = httpx.post(
            f"{url}:predict", json={"signature_name": "total", "inputs": [[1, 2, 3]]}
        )
        assert shape.status_code == 400 and "shape (2, 2)" in shape.json()["error"]
        meta = httpx.get(f"{url}/metadata").json()["metadata"]["signature_def"]["signature_def"]
        assert meta["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
        assert meta["total"]["inputs"]["m"]["tensor_shape"]["dim"][0]["size"] == "2"
        no_classes = httpx.post(f"{url}:classify", json={"examples": [{"x": 1.0}]})
        assert no_classes.status_code == 400 and "not a classifier" in no_classes.json()["error"]


def test_graft_exported_saved_model_serves_labels(
    tiny_module, digit_files, keras_probabilities, tmp_path
):
    from graft.export import export

    export(tiny_module, "saved_model", out=tmp_path / "export")
    version = tmp_path / "models" / "digits" / "1"
    version.parent.mkdir(parents=True)
    (tmp_path / "export" / "saved_model").rename(version)
    with ServeServer(options(tmp_path / "models")) as server:
        server.wait_ready()
        images = [{"b64": base64.b64encode(image_bytes(p)).decode()} for p in digit_files]
        r = httpx.post(f"{server.url}/v1/models/digits:predict", json={"instances": images})
        assert r.status_code == 200
        got = np.array([p["probabilities"] for p in r.json()["predictions"]])
        np.testing.assert_allclose(got, keras_probabilities, atol=1e-4)
        c = httpx.post(
            f"{server.url}/v1/models/digits:classify", json={"examples": [{"inputs": images[4]}]}
        )
        assert c.json()["results"][0][0][0] == str(int(np.argmax(keras_probabilities[4])))
