"""Tracking and the registry against a real ``mlflow server`` on loopback (SQLite backend,
proxied artifacts), the local SQLite store, and ``mlflow models serve``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

import graft
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.cli.main import app

MLFLOW = Path(sys.executable).with_name("mlflow")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [
            MLFLOW,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(url + "/health", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def data(tmp_path_factory, digits_dir) -> Path:
    root = tmp_path_factory.mktemp("tracked") / "digits3"
    for label in ("0", "1", "2"):
        (root / label).mkdir(parents=True)
        for f in sorted((digits_dir / label).glob("*.png"))[:40]:
            shutil.copy(f, root / label / f.name)
    return root


def _train(data: Path, out: Path, *options: str):
    args = ["train", str(data), "--model", "tiny_cnn.test", "--head", "sgd", "--epochs", "2"]
    return CliRunner().invoke(app, [*args, "--out", str(out), *options])


def _api(server: str, path: str, **params):
    r = httpx.get(f"{server}/api/2.0/mlflow/{path}", params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _runs(server: str) -> list[dict]:
    r = httpx.post(
        f"{server}/api/2.0/mlflow/runs/search",
        json={"experiment_ids": [e["experiment_id"] for e in _experiments(server)]},
        timeout=30,
    )
    return r.json().get("runs", [])


def _experiments(server: str) -> list[dict]:
    r = httpx.post(f"{server}/api/2.0/mlflow/experiments/search", json={"max_results": 100})
    return r.json().get("experiments", [])


@pytest.fixture(scope="module")
def tracked(server, data, tmp_path_factory):
    """One tracked, registered run (as a user runs it with --tracking-uri)."""
    out = tmp_path_factory.mktemp("runs") / "tracked"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = _train(
            data, out, "--tracking-uri", server, "--register", "tiny", "--alias", "champion"
        )
        # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: graft must not leave it behind
        # (it would turn tracking on for everything the process does next).
        assert "MLFLOW_TRACKING_URI" not in os.environ
        assert "MLFLOW_REGISTRY_URI" not in os.environ
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_run_shows_up_with_params_curves_tags_and_files(server, tracked):
    out, output = tracked
    run_id = output.split("MLflow run: ")[1].split()[0]
    run = _api(server, "runs/get", run_id=run_id)["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    config = json.loads((out / "config.json").read_text())
    assert params["model"] == "tiny_cnn.test" and params["epochs"] == "2"
    assert set(params) == set(config)  # the whole config
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy"] == pytest.approx(
        json.loads((out / "metrics.json").read_text())["accuracy"]
    )
    assert any(k.startswith("time.") for k in metrics)
    history = _api(server, "metrics/get-history", run_id=run_id, metric_key="head.val_accuracy")
    steps = [m["step"] for m in history["metrics"]]
    state = json.loads((out / "state.json").read_text())
    assert steps == [1, 2]
    assert [m["value"] for m in history["metrics"]] == pytest.approx(
        state["head"]["history"]["val_accuracy"]
    )
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    manifest = json.loads((out / "module" / "manifest.json").read_text())
    assert tags["backbone"] == "tiny_cnn.test" and tags["graft.version"] == graft.__version__
    assert tags["data_fingerprint"] == manifest["provenance"]["source_sha256"]
    files = {f["path"] for f in _api(server, "artifacts/list", run_id=run_id)["files"]}
    assert {"report.html", "metrics.json", "config.json", "confusion_matrix.png"} <= files
    assert "Registered: tiny version 1; load it with models:/tiny@champion" in output


def test_registered_module_loads_and_predicts_like_the_original(
    server, tracked, digit_files, monkeypatch
):
    out, _ = tracked
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    files = [str(f) for f in digit_files[:3]]
    original = graft.predict(out / "module", files)
    for handle in ("models:/tiny@champion", "models:/tiny/1"):
        again = graft.predict(handle, files)
        assert [p.label for p in again] == [p.label for p in original]
        np.testing.assert_allclose(
            [p.probability for p in again], [p.probability for p in original], rtol=1e-6
        )
    cached = graft.handles.resolve("models:/tiny@champion")
    assert cached.is_relative_to(Path(os.environ["GRAFT_HOME"]) / "mlflow")
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]  # no half files

    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/tiny@champion")
    frame = pd.DataFrame({"input": [files[0], Path(files[1]).read_bytes(), files[2]]})
    answer = model.predict(frame)
    assert list(answer["label"]) == [p.label for p in original]
    np.testing.assert_allclose(answer["probability"], [p.probability for p in original], 1e-5)
    assert set(answer.columns) >= {"label", "probability", "0", "1", "2"}


def test_unknown_registry_names_are_clear(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    result = CliRunner().invoke(app, ["predict", "models:/nothing@champion", "x.png"])
    assert result.exit_code == 1 and "has no nothing@champion" in result.output


def test_mlflow_models_serve_answers_with_labels(server, tracked, digit_files):
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": server, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env["PATH"] = f"{MLFLOW.parent}{os.pathsep}{env.get('PATH', '')}"  # an activated venv
    proc = subprocess.Popen(
        [
            MLFLOW,
            "models",
            "serve",
            "-m",
            "models:/tiny@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],  # fmt: skip
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/ping", proc)
        body = {"dataframe_records": [{"input": str(digit_files[2])}]}
        r = httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=60)
    finally:
        proc.terminate()
        proc.wait(30)
    assert r.status_code == 200, r.text
    prediction = r.json()["predictions"][0]
    assert prediction["label"] == graft.predict(tracked[0], [str(digit_files[2])])[0].label


def test_local_store_without_a_server(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    result = _train(data, tmp_path / "run", "--track", "--register", "local")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    store = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    module = graft.handles.resolve("models:/local/1")  # cached now
    # A registered version is immutable: once cached it loads without the registry.
    (tmp_path / "mlruns" / "mlflow.db").rename(tmp_path / "moved.db")
    assert graft.handles.resolve("models:/local/1") == module
    (tmp_path / "moved.db").rename(tmp_path / "mlruns" / "mlflow.db")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("graft")
    assert experiment.artifact_location.startswith((tmp_path / "mlruns" / "artifacts").as_uri())
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.params["model"] == "tiny_cnn.test"
    assert len(client.get_metric_history(runs[0].info.run_id, "head.loss")) == 2


def test_tracking_off_writes_nothing(server, data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    before = len(_runs(server))
    result = _train(data, tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "MLflow" not in result.output and "Tracking" not in result.output
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "mlflow.db").exists()
    assert len(_runs(server)) == before


def test_dead_server_stops_before_training_unless_optional(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    dead = f"http://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    result = _train(data, tmp_path / "run", "--tracking-uri", dead)
    assert result.exit_code == 1, result.output
    assert "Cannot reach the MLflow tracking store at " + dead in result.output
    assert "--tracking-optional" in result.output and "Received: --tracking-uri=" in result.output
    assert not (tmp_path / "run").exists()  # nothing started
    assert time.monotonic() - start < 60
    result = _train(data, tmp_path / "run", "--tracking-uri", dead, "--tracking-optional")
    assert result.exit_code == 0, result.output
    assert "Tracking is off for this command" in result.output
    assert (tmp_path / "run" / "module" / "manifest.json").is_file()


def test_alias_needs_register(data, tmp_path):
    result = _train(data, tmp_path / "run", "--alias", "champion")
    assert result.exit_code == 1 and "add --register NAME" in result.output


def test_tune_trials_are_nested_runs(server, data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["tune", str(data), "--model", "tiny_cnn.test", "--trials", "2"]
    result = CliRunner().invoke(
        app, [*args, "--out", str(tmp_path / "tuned"), "--tracking-uri", server]
    )
    assert result.exit_code == 0, result.output
    parent = result.output.split("MLflow run: ")[1].split()[0]
    children = [
        r
        for r in _runs(server)
        if {"key": "mlflow.parentRunId", "value": parent} in r["data"].get("tags", [])
    ]
    trials = json.loads((tmp_path / "tuned" / "trials.json").read_text())
    assert len(children) == len(trials) == 2
    values = sorted(
        m["value"] for r in children for m in r["data"]["metrics"] if m["key"] == "cv_accuracy"
    )
    assert values == pytest.approx(sorted(t["value"] for t in trials))


def test_evaluate_export_and_serve_with_the_registry(server, tracked, data, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)  # tracking on through the environment
    out, _ = tracked
    runner = CliRunner()
    args = ["evaluate", "models:/tiny@champion", str(data), "--out", str(tmp_path / "ev")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run: ")[1].split()[0]
    run = _api(server, "runs/get", run_id=run_id)["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy"] == pytest.approx(
        json.loads((tmp_path / "ev" / "metrics.json").read_text())["accuracy"]
    )
    result = runner.invoke(
        app, ["export", str(out), "--format", "tflite", "--out", str(tmp_path / "ex")]
    )
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run: ")[1].split()[0]
    run = _api(server, "runs/get", run_id=run_id)["run"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert "tflite.float.accuracy" in metrics and "tflite.float.top1_agreement" in metrics
    files = {f["path"] for f in _api(server, "artifacts/list", run_id=run_id)["files"]}
    assert "export_report.json" in files

    from graft.serve.config import discover

    (config,) = discover("models:/tiny@champion")
    assert config.name == "tiny" and (config.base_path / "manifest.json").is_file()


def test_graft_register_a_run_folder(server, tracked, digit_files, monkeypatch):
    out, _ = tracked
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(graft.handles, "_noticed", set())  # notices are once per process
    args = ["register", str(out), "tiny-copy", "--alias", "challenger", "--tracking-uri", server]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Registered tiny-copy version 1" in result.output
    assert 'graft.load("models:/tiny-copy@challenger")' in result.output
    assert f"{out} is a run folder: using its module" in result.output
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    files = [str(f) for f in digit_files[:2]]
    assert [p.label for p in graft.predict("models:/tiny-copy@challenger", files)] == [
        p.label for p in graft.predict(out, files)
    ]
