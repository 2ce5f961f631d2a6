"""Prometheus metrics of graft serve: scraped from a real server on loopback, parsed with
prometheus_client's own parser; counts go up by exactly the requests made."""

from __future__ import annotations

import base64

import httpx

from graft.data.images import image_bytes
from graft.serve import ServeOptions
from tests.serve.conftest import ServeServer, add_version, options

PATH = "/monitoring/prometheus/metrics"


def scrape(server) -> dict:
    """``{family name: {(sample name, sorted labels): value}}`` and the family types."""
    from prometheus_client.parser import text_string_to_metric_families

    r = httpx.get(server.url + PATH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {"_types": {}, "_text": r.text}
    for family in text_string_to_metric_families(r.text):
        out["_types"][family.name] = family.type
        out[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return out


def value(metrics: dict, family: str, sample: str, **labels) -> float:
    return metrics[family].get((sample, tuple(sorted(labels.items()))), 0.0)


def _b64(path) -> dict:
    return {"b64": base64.b64encode(image_bytes(path)).decode()}


def test_counts_go_up_by_exactly_the_requests_made(served, digit_files):
    server = served  # this module's own server: its counts start here
    count = ":tensorflow:serving:request_count"
    before = scrape(server)
    url = f"{server.url}/v1/models/digits"
    ok = [
        httpx.post(f"{url}:predict", json={"instances": [_b64(digit_files[0])]}),
        httpx.post(f"{url}:predict", json={"instances": [_b64(p) for p in digit_files[1:3]]}),
        httpx.post(f"{url}/versions/1:predict", json={"inputs": [_b64(digit_files[3])]}),
        httpx.post(f"{url}:classify", json={"examples": [{"inputs": _b64(digit_files[4])}]}),
    ]
    assert [r.status_code for r in ok] == [200] * 4
    bad = [
        httpx.post(f"{url}:predict", content=b"instances = [1]"),  # JSON Parse error
        httpx.post(f"{url}:predict", json={"instances": [[0.5]]}),  # wrong shape
        httpx.post(f"{url}/versions/9:predict", json={"instances": [_b64(digit_files[0])]}),
        httpx.post(f"{server.url}/v1/models/nope:predict", json={"instances": [1]}),
    ]
    assert [r.status_code for r in bad] == [400, 400, 404, 404]
    after = scrape(server)

    def delta(**labels) -> float:
        return value(after, count, count + "_total", **labels) - value(
            before, count, count + "_total", **labels
        )

    m = {"model_name": "digits"}
    assert delta(**m, version="1", API="Predict", status="OK") == 3
    assert delta(**m, version="1", API="Classify", status="OK") == 1
    assert delta(**m, version="", API="Predict", status="INVALID_ARGUMENT") == 1
    assert delta(**m, version="1", API="Predict", status="INVALID_ARGUMENT") == 1
    assert delta(**m, version="", API="Predict", status="NOT_FOUND") == 1
    # an unknown model is counted without its name (label values stay bounded)
    assert delta(model_name="", version="", API="Predict", status="NOT_FOUND") == 1
    assert after["_types"][count] == "counter"
    # TF Serving's own form: no _total on the wire
    assert f'{count}{{model_name="digits",version="1",API="Predict",status="OK"}}' in after["_text"]

    latency = ":tensorflow:serving:request_latency"
    assert after["_types"][latency] == "histogram"
    labels = {**m, "version": "1", "API": "Predict", "entrypoint": "REST"}
    added = value(after, latency, latency + "_count", **labels) - value(
        before, latency, latency + "_count", **labels
    )
    assert added == 4  # every answered request of version 1: 3 OK and the wrong shape
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in after[latency].items()
        if k[0] == latency + "_bucket"
        and dict(k[1])["API"] == "Predict"
        and dict(k[1])["version"] == "1"
    )
    assert len(buckets) == 34 and buckets[0][0] == 10.0  # TF Serving's 33 buckets, then +Inf
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))
    assert buckets[-1][1] == value(after, latency, latency + "_count", **labels)

    size = ":tensorflow:serving:batching:processed_batch_size"
    rows = value(after, size, size + "_sum", model_name="digits", version="1") - value(
        before, size, size + "_sum", model_name="digits", version="1"
    )
    assert rows == 5  # 1 + 2 + 1 predicted rows and 1 classified
    state = ":graft:serving:model_version_state"
    assert value(after, state, state, **m, version="1", state="AVAILABLE", error_code="OK") == 1
    assert (
        value(after, ":graft:serving:queue_depth", ":graft:serving:queue_depth", **m, version="1")
        == 0
    )
    assert value(after, ":graft:serving:config_ok", ":graft:serving:config_ok") == 1
    loads = ":tensorflow:cc:saved_model:load_attempt_count"
    assert sum(v for k, v in after[loads].items() if dict(k[1])["status"] == "success") == 1


def test_no_monitoring_serves_no_metrics(tiny_module, tmp_path):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    with ServeServer(options(root, monitoring=False)) as server:
        assert httpx.get(server.url + PATH).status_code == 404


def test_broken_config_edit_and_broken_version_show_in_readyz_and_metrics(
    tiny_module, digit_files, tmp_path
):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    config = tmp_path / "models.config"
    good = f"model_config_list {{ config {{ name: 'digits' base_path: '{root / 'digits'}' }} }}"
    config.write_text(good)
    with ServeServer(ServeOptions(model_config_file=str(config), poll_seconds=0.1)) as server:
        server.wait_ready()
        config.write_text("model_config_list { config { name: 'digits' ")  # a broken edit
        server.wait_for(lambda: "config_error" in httpx.get(server.url + "/readyz").json())
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 200  # the previous config keeps serving
        assert "missing '}'" in ready.json()["config_error"]
        assert value(scrape(server), ":graft:serving:config_ok", ":graft:serving:config_ok") == 0
        body = {"instances": [_b64(digit_files[0])]}
        assert httpx.post(f"{server.url}/v1/models/digits:predict", json=body).status_code == 200

        broken = add_version(root, "digits", 2, tiny_module)  # a version that cannot load
        (broken / "model.keras").write_bytes(b"not a keras file")
        config.write_text(good)
        server.wait_for(
            lambda: (
                httpx.get(f"{server.url}/v1/models/digits/versions/2").status_code == 200
                and httpx.get(f"{server.url}/v1/models/digits/versions/2").json()[
                    "model_version_status"
                ][0]["state"]
                == "END"
            )
        )
        assert "config_error" not in httpx.get(server.url + "/readyz").json()
        metrics = scrape(server)
        assert value(metrics, ":graft:serving:config_ok", ":graft:serving:config_ok") == 1
        state = ":graft:serving:model_version_state"
        ended = [dict(k[1]) for k, v in metrics[state].items() if v == 1]
        assert {"model_name": "digits", "version": "2", "state": "END"}.items() <= next(
            e for e in ended if e["version"] == "2"
        ).items()
        assert next(e for e in ended if e["version"] == "2")["error_code"] != "OK"
        loads = ":tensorflow:cc:saved_model:load_attempt_count"
        failed = {
            dict(k[1])["model_path"]: v
            for k, v in metrics[loads].items()
            if dict(k[1])["status"] == "fail"
        }
        assert failed == {str(broken): 1}
