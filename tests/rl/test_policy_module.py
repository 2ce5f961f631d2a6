"""A DQN policy module exported (SavedModel, TFLite, ONNX) and served: same actions as Keras."""

import json

import httpx
import numpy as np
import pytest

from graft.module.io import load
from tests.serve.conftest import ServeServer, add_version, options


@pytest.fixture(scope="module")
def observations():
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 1.0, 0.1, 1.0], np.float32)  # CartPole's usual ranges
    return (rng.normal(size=(300, 4)) * scale).astype(np.float32)


@pytest.fixture(scope="module")
def keras_out(runs, observations):
    out = load(runs["whole"] / "module").model(observations)
    return np.asarray(out["q_values"]), np.asarray(out["action"])


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    import graft

    out = tmp_path_factory.mktemp("export") / "cartpole"
    report = graft.export(runs["whole"], "saved_model,tflite,onnx", quantize="float", out=out)
    return out, report


def test_export_report_measures_every_artifact_against_keras(exported):
    out, report = exported
    assert report.metric == "mean return"
    rows = {(r.format, r.quantization): r for r in report.rows}
    assert set(rows) == {("keras", "float"), ("saved_model", "float"), ("tflite", "float"),
                         ("onnx", "float")}  # fmt: skip
    keras_return = rows["keras", "float"].accuracy
    for row in rows.values():
        assert row.top1_agreement == 1.0 and row.max_abs_diff < 1e-3
        assert row.accuracy == keras_return  # same actions, same episodes, same returns
    data = json.loads((out / "export_report.json").read_text())
    assert data["metric"] == "mean return" and "greedy episodes" in data["evaluated_on"]
    assert "mean return" in (out / "report.html").read_text()


def test_exported_policies_choose_the_keras_actions(exported, observations, keras_out):
    import onnxruntime as ort
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    out, _ = exported
    q_keras, action_keras = keras_out
    np.testing.assert_array_equal(action_keras, q_keras.argmax(1))

    fn = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
    result = fn(observation=tf.constant(observations))
    np.testing.assert_array_equal(result["action"].numpy(), action_keras)
    np.testing.assert_allclose(result["q_values"].numpy(), q_keras, rtol=1e-5, atol=1e-5)

    it = Interpreter(model_path=str(out / "model.tflite"))
    it.resize_tensor_input(it.get_input_details()[0]["index"], list(observations.shape))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], observations)
    it.invoke()
    by_dtype = {d["dtype"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    np.testing.assert_array_equal(by_dtype[np.int32], action_keras)
    np.testing.assert_allclose(by_dtype[np.float32], q_keras, rtol=1e-4, atol=1e-4)

    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {session.get_inputs()[0].name: observations}),
                       strict=True))  # fmt: skip
    action = next(v for k, v in outputs.items() if "action" in k)
    np.testing.assert_array_equal(action, action_keras)


def test_graft_serve_returns_q_values_and_actions(runs, tmp_path, observations, keras_out):
    q_keras, action_keras = keras_out
    add_version(tmp_path, "cartpole", 1, runs["whole"] / "module")
    with ServeServer(options(tmp_path)) as server:
        server.wait_ready()
        url = server.url + "/v1/models/cartpole:predict"
        rows = httpx.post(url, json={"instances": observations[:20].tolist()}).json()
        assert [p["action"] for p in rows["predictions"]] == action_keras[:20].tolist()
        np.testing.assert_allclose(
            [p["q_values"] for p in rows["predictions"]], q_keras[:20], rtol=1e-5, atol=1e-5
        )
        columns = httpx.post(url, json={"inputs": {"observation": observations.tolist()}}).json()
        assert columns["outputs"]["action"] == action_keras.tolist()
        bad = httpx.post(url, json={"instances": [[0.0, 1.0, 2.0]]})
        assert bad.status_code == 400 and "shape (?, 4)" in bad.json()["error"]
        meta = httpx.get(server.url + "/v1/models/cartpole/metadata").json()
        sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
        assert sig["outputs"]["action"]["dtype"] == "DT_INT32"
        assert sig["inputs"]["observation"]["tensor_shape"]["dim"][1]["size"] == "4"
