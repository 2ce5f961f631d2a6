"""The TF Serving REST API on a served module: clients written for TF Serving work unchanged."""

from __future__ import annotations

import base64
import json

import httpx
import numpy as np
import requests

from graft.data.images import image_bytes, load_images


def b64(path) -> dict:
    return {"b64": base64.b64encode(image_bytes(path)).decode()}


def test_seed_tutorial_client_gets_the_modules_predictions(
    served, digit_files, keras_probabilities
):
    # The seed tutorial's client, unchanged except for the port: decoded images as lists.
    x_test = load_images(digit_files, (16, 16))
    data = x_test[0:1].tolist()
    predict_request = json.dumps({"instances": data})
    headers = {"content-type": "application/json"}
    response = requests.post(
        f"http://localhost:{served.port}/v1/models/digits:predict",
        data=predict_request,
        headers=headers,
    )
    predictions = json.loads(response.text)["predictions"]

    assert response.status_code == 200
    assert len(predictions) == 1
    np.testing.assert_allclose(predictions[0]["probabilities"], keras_probabilities[0], atol=1e-4)
    best = int(np.argmax(keras_probabilities[0]))
    assert predictions[0]["classes"][0] == str(best)
    assert predictions[0]["scores"][0] == max(predictions[0]["probabilities"])


def test_b64_rows_and_columns_agree_with_keras(served, digit_files, keras_probabilities):
    instances = [b64(p) for p in digit_files]
    rows = httpx.post(f"{served.url}/v1/models/digits:predict", json={"instances": instances})
    cols = httpx.post(
        f"{served.url}/v1/models/digits/versions/1:predict", json={"inputs": instances}
    )
    assert rows.status_code == cols.status_code == 200
    assert rows.headers["x-model-version"] == "1"
    got = np.array([p["probabilities"] for p in rows.json()["predictions"]])
    np.testing.assert_allclose(got, keras_probabilities, atol=1e-4)
    np.testing.assert_allclose(cols.json()["outputs"]["probabilities"], got, atol=1e-6)
    assert len(cols.json()["outputs"]["classes"]) == 10


def test_classify_returns_label_names_best_first(served, digit_files, keras_probabilities):
    examples = [{"inputs": b64(p)} for p in digit_files[:3]]
    response = httpx.post(f"{served.url}/v1/models/digits:classify", json={"examples": examples})
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    for result, probabilities in zip(results, keras_probabilities[:3], strict=True):
        labels = [label for label, _ in result]
        scores = [score for _, score in result]
        assert labels[0] == str(int(np.argmax(probabilities)))
        assert scores == sorted(scores, reverse=True)
        assert len(result) == 5
    # one feature per example may use any name; context is merged in
    alt = httpx.post(
        f"{served.url}/v1/models/digits:classify",
        json={"context": {"image": b64(digit_files[0])}, "examples": [{}]},
    )
    assert alt.status_code == 200
    assert alt.json()["results"][0] == results[0]


def test_status_and_metadata_have_tf_servings_shape(served):
    status = httpx.get(f"{served.url}/v1/models/digits").json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert httpx.get(f"{served.url}/v1/models/digits/versions/1").json() == status
    meta = httpx.get(f"{served.url}/v1/models/digits/metadata").json()
    assert meta["model_spec"] == {"name": "digits", "signature_name": "", "version": "1"}
    sigs = meta["metadata"]["signature_def"]["signature_def"]
    default = sigs["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert default["inputs"]["inputs"]["dtype"] == "DT_STRING"
    assert default["outputs"]["probabilities"]["tensor_shape"]["dim"][1]["size"] == "10"
    pixels = sigs["serving_pixels"]["inputs"]["inputs"]
    assert [d["size"] for d in pixels["tensor_shape"]["dim"]] == ["-1", "16", "16", "3"]
    assert httpx.get(f"{served.url}/healthz").status_code == 200
    ready = httpx.get(f"{served.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["models"] == {"digits": "version 1 AVAILABLE"}


def _error(response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    for needle in needles:
        assert needle in message, message
    return message


def test_bad_requests_get_tf_serving_errors(served, digit_files):
    url = f"{served.url}/v1/models/digits:predict"
    post = lambda body, **kw: httpx.post(url, content=body, **kw)  # noqa: E731
    _error(post(b""), 400, "document is empty")
    _error(post(b"instances = [1, 2]"), 400, "JSON Parse error")
    _error(post(b"[1, 2]"), 400, "must be a JSON object")
    _error(post(b'{"instances": [NaN]}'), 400, "NaN is not valid JSON")
    _error(post(b'{"instances": ' + b"[" * 100 + b"]" * 100 + b"}"), 400, "nesting", "depth=101")
    _error(post(b'{"instances": [1], "inputs": [1]}'), 400, "exactly one")
    _error(post(b'{"instances": [[0.5, 0.5]]}'), 400, "shape (?, 16, 16, 3)", "(1, 2)")
    _error(post(b'{"instances": [{"b64": "!!"}]}'), 400, "not valid base64")
    _error(post(b'{"inputs": []}'), 400, "at least one image")
    _error(post(b'{"instances": [{"b64": "AAAA"}]}'), 400, "item 0 is not an image")
    _error(post(b'{"instances": [[[[0.5, 0.5, 0.5]]]], "extra": 1}'), 400, "Received: keys=")
    _error(post(b'{"instances": [1], "signature_name": 3}'), 400, "must be a string")
    text = json.dumps({"instances": [b64(digit_files[0]), "plain text"]}).encode()
    _error(post(text), 400, "item 1 is not an image")
    _error(
        httpx.post(f"{served.url}/v1/models/nope:predict", json={"instances": [1]}),
        404,
        "Servable not found for request: Latest(nope)",
    )
    _error(
        httpx.post(f"{served.url}/v1/models/digits/versions/7:predict", json={"instances": [1]}),
        404,
        "Specific(digits, 7)",
    )
    _error(
        httpx.post(f"{served.url}/v1/models/digits/versions/x:predict", json={"instances": [1]}),
        400,
        "Failed to convert version",
    )
    _error(
        httpx.post(f"{served.url}/v1/models/digits/labels/stable:predict", json={"instances": [1]}),
        404,
        "Unrecognized servable version label: stable",
    )
    _error(httpx.get(f"{served.url}/v1/models/nope"), 404, "nope")
    _error(httpx.get(f"{served.url}/v1/models/digits/versions/9"), 404, "version 9")
    _error(httpx.get(f"{served.url}/v1/models/digits:predict"), 400, "Malformed request")
    _error(
        httpx.post(f"{served.url}/v1/models/digits:classify", json={"instances": [1]}),
        400,
        "examples",
    )


def test_body_limit_refuses_before_reading(served):
    import socket

    limit = 64 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", served.port)) as sock:
        head = (
            "POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n"
        )
        sock.sendall(head.encode())  # no body follows: the answer must not wait for it
        sock.settimeout(10)
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "Request body too large" in reply and f"content_length={limit + 1}" in reply

    def chunks():
        yield b'{"instances": ["'
        for _ in range(65):
            yield b"x" * (1024 * 1024)
        yield b'"]}'

    response = httpx.post(f"{served.url}/v1/models/digits:predict", content=chunks())
    _error(response, 413, "Request body too large")
