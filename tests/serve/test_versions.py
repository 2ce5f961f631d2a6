"""Versions: hot swaps under load with no failed request, broken versions, policies, labels."""

from __future__ import annotations

import base64
import threading
from collections import Counter

import httpx
import pytest

from graft.data.images import image_bytes
from graft.serve import ServeOptions
from tests.serve.conftest import ServeServer, add_version, options


def _status(server, name="digits") -> dict[int, dict]:
    entries = httpx.get(f"{server.url}/v1/models/{name}").json()["model_version_status"]
    return {int(e["version"]): e for e in entries}


def _state(server, version: int) -> str | None:
    entry = _status(server).get(version)
    return entry["state"] if entry else None


def test_swap_under_load_answers_every_request(tiny_module, digit_files, tmp_path):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[3])).decode()}]}
    statuses: Counter = Counter()
    versions: Counter = Counter()
    stop = threading.Event()
    lock = threading.Lock()

    with ServeServer(options(root)) as server:
        server.wait_ready()

        def client():
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    r = http.post(f"{server.url}/v1/models/digits:predict", json=body)
                    with lock:
                        statuses[r.status_code] += 1
                        versions[r.headers.get("x-model-version")] += 1

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        server.wait_for(lambda: sum(statuses.values()) >= 500)
        add_version(root, "digits", 2, tiny_module)  # v1 must keep answering until v2 is ready
        server.wait_for(lambda: _state(server, 1) == "END")
        server.wait_for(lambda: sum(statuses.values()) >= 2000 and versions["2"] >= 300)
        stop.set()
        for t in threads:
            t.join()
        status = _status(server)

    assert sum(statuses.values()) >= 2000
    assert statuses == Counter({200: sum(statuses.values())}), statuses
    assert versions["1"] >= 500 and versions["2"] >= 300, versions
    assert status[2]["state"] == "AVAILABLE"
    assert status[1] == {
        "version": "1",
        "state": "END",
        "status": {"error_code": "OK", "error_message": ""},
    }


def test_broken_version_keeps_the_old_one_serving(tiny_module, digit_files, tmp_path):
    root = tmp_path / "models"
    add_version(root, "digits", 1, tiny_module)
    body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[0])).decode()}]}
    with ServeServer(options(root)) as server:
        server.wait_ready()
        broken = add_version(root, "digits", 2, tiny_module)
        (broken / "model.keras").write_bytes(b"not a keras file")
        server.wait_for(lambda: _state(server, 2) == "END")
        entry = _status(server)[2]
        assert entry["status"]["error_code"] == "DATA_LOSS"
        assert "model.keras" in entry["status"]["error_message"]
        assert _state(server, 1) == "AVAILABLE"
        r = httpx.post(f"{server.url}/v1/models/digits:predict", json=body)
        assert r.status_code == 200 and r.headers["x-model-version"] == "1"
        assert httpx.get(f"{server.url}/readyz").status_code == 200

        # repairing the files is noticed (they changed) and the version loads
        (broken / "model.keras").write_bytes((tiny_module / "model.keras").read_bytes())
        server.wait_for(lambda: _state(server, 1) == "END")
        r = httpx.post(f"{server.url}/v1/models/digits:predict", json=body)
        assert r.status_code == 200 and r.headers["x-model-version"] == "2"


def test_model_config_file_policies_and_labels(tiny_module, digit_files, tmp_path):
    base = tmp_path / "models" / "digits"
    for v in (1, 2, 3):
        add_version(base.parent, "digits", v, tiny_module)
    config = tmp_path / "models.config"
    config.write_text(
        """
        # TF Serving's format
        model_config_list {
          config {
            name: 'digits'
            base_path: 'models/digits'
            model_platform: "tensorflow"
            model_version_policy { specific { versions: 1 versions: 3 } }
            version_labels { key: 'stable' value: 1 }
            version_labels { key: 'canary' value: 3 }
          }
        }
        """
    )
    body = {"instances": [{"b64": base64.b64encode(image_bytes(digit_files[0])).decode()}]}
    opts = ServeOptions(model_config_file=str(config), poll_seconds=0.1)
    with ServeServer(opts) as server:
        server.wait_for(lambda: {_state(server, 1), _state(server, 3)} == {"AVAILABLE"})
        assert _state(server, 2) is None  # outside the policy: never loaded
        for label, version in (("stable", "1"), ("canary", "3")):
            r = httpx.post(f"{server.url}/v1/models/digits/labels/{label}:predict", json=body)
            assert r.status_code == 200 and r.headers["x-model-version"] == version
            status = httpx.get(f"{server.url}/v1/models/digits/labels/{label}").json()
            assert status["model_version_status"][0]["version"] == version
        latest = httpx.post(f"{server.url}/v1/models/digits:predict", json=body)
        assert latest.headers["x-model-version"] == "3"

        # the config is re-read when it changes: keep only the latest version
        config.write_text(
            "model_config_list { config { name: 'digits' base_path: 'models/digits' "
            "model_version_policy { latest { num_versions: 1 } } } }"
        )
        server.wait_for(lambda: _state(server, 1) == "END")
        assert _state(server, 3) == "AVAILABLE"


def test_bad_config_files_name_the_problem(tmp_path):
    from graft.errors import InvalidArgumentError
    from graft.serve.config import read_model_config

    cases = {
        "model_config_list { config { name: 'x' base_path: '/m' }": "missing '}'",
        "model_config_list { config { name: 'a b' base_path: '/m' } }": "model name",
        "model_config_list { config { base_path: '/m' } }": "needs `name` and `base_path`",
        "model_config_list { config { name: 'x' base_path: '/m' model_platform: 'pt' } }": (
            "model_platform"
        ),
        "model_config_list { config { name: 'x' base_path: '/m' } config { name: 'x' "
        "base_path: '/n' } }": "unique",
        "model_config_list { config { name: 'x' $ } }": "cannot read",
    }
    for text, needle in cases.items():
        path = tmp_path / "models.config"
        path.write_text(text)
        with pytest.raises(InvalidArgumentError, match="Received") as info:
            read_model_config(path)
        assert needle in str(info.value), (text, str(info.value))
    with pytest.raises(InvalidArgumentError, match="--model-dir must be a directory"):
        options(tmp_path / "missing").check()
