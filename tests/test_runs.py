"""``graft runs``: real run folders listed, shown and compared (JSON only, no TensorFlow)."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

import graft
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.cli.main import app
from graft.errors import InvalidArgumentError
from graft.runs import compare, find_runs, read_run


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory, digits_dir, tiny_module):
    root = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_module.parent, root / "convex")  # graft.train's defaults
    data = root.parent / "digits3"
    for label in ("0", "1", "2"):
        shutil.copytree(digits_dir / label, data / label)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(tmp_path_factory.mktemp("home")))
        graft.train(data, "tiny_cnn.test", out=root / "team" / "sgd", head="sgd", epochs=2)
    # A run stopped while computing its features holds only what it wrote first.
    (root / "killed").mkdir()
    for name in ("config.json", "splits.json"):
        shutil.copy(root / "team" / "sgd" / name, root / "killed" / name)
    return root


def test_find_runs_reads_status_accuracy_and_data(runs_root):
    runs = {r.name: r for r in find_runs(runs_root)}
    assert set(runs) == {"convex", "team/sgd", "killed"}  # nested folders found, module/ not
    convex, sgd, killed = runs["convex"], runs["team/sgd"], runs["killed"]
    metrics = json.loads((runs_root / "convex" / "metrics.json").read_text())
    assert convex.status == "finished" and convex.accuracy == metrics["accuracy"]
    assert convex.kind == "train" and convex.backbone == "tiny_cnn.test"
    assert convex.data.startswith("digits (") and convex.seconds > 0
    assert sgd.status == "finished" and sgd.config["head"] == "sgd"
    assert killed.status == "killed" and killed.accuracy is None and killed.seconds is None
    assert killed.data == sgd.data


def test_compare_shows_only_differences(runs_root):
    a, b = read_run(runs_root / "convex"), read_run(runs_root / "team" / "sgd")
    config_rows, results = compare([a, b])
    differing = {row[0]: row[1:] for row in config_rows}
    assert differing["head"] == ("auto", "sgd") and differing["epochs"] == (3, 2)
    assert "seed" not in differing and "model" not in differing
    everything, _ = compare([a, b], everything=True)
    assert "seed" in {row[0] for row in everything}
    by_key = {row[0]: row[1:] for row in results}
    assert by_key["accuracy"] == (a.metrics["accuracy"], b.metrics["accuracy"])
    with pytest.raises(InvalidArgumentError, match="at least two run folders"):
        compare([a])


def test_cli_ls_show_compare(runs_root):
    runner = CliRunner()
    out = runner.invoke(app, ["runs", "ls", str(runs_root), "--json"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in map(json.loads, out.output.splitlines())}
    assert rows["killed"]["status"] == "killed" and rows["convex"]["status"] == "finished"
    out = runner.invoke(app, ["runs", "ls", str(runs_root)])
    assert "team/sgd" in out.output and "killed" in out.output
    out = runner.invoke(app, ["runs", "show", str(runs_root / "convex")])
    assert out.exit_code == 0 and "why" in out.output and "tiny_cnn.test" in out.output
    out = runner.invoke(
        app, ["runs", "compare", str(runs_root / "convex"), str(runs_root / "team" / "sgd")]
    )
    assert out.exit_code == 0, out.output
    assert "settings that differ" in out.output and "head" in out.output
    out = runner.invoke(app, ["runs", "show", str(runs_root / "team")])
    assert out.exit_code == 1 and "is not a run folder" in out.output
    out = runner.invoke(app, ["runs", "ls", str(runs_root / "none")])
    assert out.exit_code == 1 and "No such folder" in out.output
