"""graft tune: a real search on cached features of real images (the tiny test backbone on a slice
of scikit-learn's digits), its SQLite study, resuming a killed search, the saved module."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import InvalidArgumentError, ModelNotFoundError, ModuleExistsError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_digits(tmp_path_factory) -> Path:
    """The first 200 digits (about 20 per class) as 32x32 PNGs."""
    from graft.data.samples import write_digits_folder

    return write_digits_folder(tmp_path_factory.mktemp("data") / "digits", limit=200)


@pytest.fixture
def tiny_backbone() -> Path:
    """The tiny test backbone as a module directory (a handle the CLI subprocess resolves)."""
    from graft.handles import resolve
    from tests import _tiny_zoo  # noqa: F401

    return resolve("tiny_cnn.test")


@pytest.fixture(scope="module")
def searched(small_digits, tmp_path_factory):
    """One search of 8 trials (the default first), trained and saved."""
    from tests import _tiny_zoo  # noqa: F401

    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(home))
        out = tmp_path_factory.mktemp("runs") / "tuned"
        return graft.tune(small_digits, "tiny_cnn.test", out=out, trials=8, seed=0)


def test_best_is_not_below_the_default_and_the_study_holds_every_trial(searched):
    import optuna

    from graft.training.trials import FOLDS

    assert searched.trials[0]["default"] and searched.trials[0]["number"] == 0
    assert searched.trials[0]["params"]["head"] == "convex"
    assert searched.default_value == searched.trials[0]["value"]
    assert searched.best_value >= searched.default_value
    values = [t["value"] for t in searched.trials if t["state"] == "COMPLETE"]
    assert len(set(values)) > 2  # a real search
    if searched.best_value < max(values):  # a lead within one standard error keeps the default
        assert searched.best_number == 0 and "default configuration is kept" in searched.selection
    else:
        assert searched.best_value == max(values)
        assert (
            "leads the default by" in searched.selection
            if searched.best_number
            else searched.selection == "The default configuration scored best; it is kept."
        )
    assert sum(t["state"] in ("COMPLETE", "PRUNED") for t in searched.trials) == 8
    study = optuna.load_study(
        study_name="graft-tune", storage=f"sqlite:///{searched.directory / 'study.db'}"
    )
    stored = {t.number: t for t in study.trials}
    for record in searched.trials:
        assert stored[record["number"]].params == record["params"]
        assert stored[record["number"]].value == record["value"]
    sgd = [t for t in study.trials if t.params["head"] == "sgd" and t.state.name == "COMPLETE"]
    assert sgd, "the seeded search tried no SGD head"
    for t in sgd:  # one held-out score per epoch, reported to the pruner
        assert sorted(t.intermediate_values) == list(range(t.params["epochs"]))
        assert t.value == t.intermediate_values[t.params["epochs"] - 1]
    run = json.loads((searched.directory / "run.json").read_text())["search"]
    assert run["best_params"] == searched.best_params and run["best_value"] == searched.best_value
    assert run["objective"] == f"{FOLDS}-fold cross-validated accuracy on train+val"
    rows = list(csv.DictReader(open(searched.directory / "trials.csv")))
    assert [int(r["number"]) for r in rows] == sorted(stored)
    assert float(rows[0]["value"]) == pytest.approx(searched.default_value)


def test_default_trial_scores_what_graft_train_would_choose(searched, small_digits):
    """Trial 0 is graft's default convex head: the strength and transform its own 5-fold
    selection picks, with the same held-out accuracy."""
    from graft.training.features import FeatureExtractor
    from graft.training.head import fit_convex
    from graft.training.run import read_splits

    splits, _ = read_splits(searched.directory)
    fx = FeatureExtractor(_tiny_dir())
    x = {n: fx(p.items) for n, p in splits.named().items()}
    y = {n: np.asarray(p.labels) for n, p in splits.named().items()}
    chosen = fit_convex(
        x, y, 10, dropout=0, label_smoothing=0, class_weight="auto", refit_on="train+val", seed=0
    ).info  # what graft.train's default head does
    default = searched.trials[0]
    assert default["params"]["lam"] == chosen["lam"]
    assert default["params"].get("transform", "none") == chosen["transform"]
    assert default["value"] == pytest.approx(chosen["heldout_accuracy"], abs=1e-9)


def _tiny_dir() -> Path:
    from graft.handles import resolve
    from tests import _tiny_zoo  # noqa: F401

    return resolve("tiny_cnn.test")


def test_best_configuration_is_trained_saved_and_reported(searched):
    from graft.training.trials import train_settings

    config = json.loads((searched.directory / "config.json").read_text())
    for key, value in train_settings(searched.best_params).items():
        assert config[key] == value
    manifest = graft.module.verify(searched.module_dir)
    assert manifest.task == "image-classifier" and len(manifest.labels) == 10
    test = json.loads((searched.directory / "splits.json").read_text())["test"]
    predictions = graft.predict(searched.module_dir, test["items"][:5], top_k=2)
    assert [p.label in manifest.labels for p in predictions] == [True] * 5
    metrics = json.loads((searched.directory / "metrics.json").read_text())
    assert metrics["accuracy"] == searched.run.metrics["accuracy"]
    html = searched.report.read_text()
    assert '<h2 id="search">Search</h2>' in html and '<table id="trials">' in html
    table = html.split('<table id="trials">')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + len(searched.trials)
    assert f"{searched.best_value:.4f}" in table and "(default)" in table
    assert "Parameter importances" in html
    assert isinstance(searched.importances["convex head"], dict)
    assert not list((searched.directory / "trials").glob("*"))  # no leftovers of trials


def test_one_trial_search_reports_no_importances(small_digits, tmp_path, tiny_backbone):
    result = graft.tune(small_digits, str(tiny_backbone), out=tmp_path / "one", trials=1)
    assert [t["number"] for t in result.trials] == [0] and result.best_number == 0
    assert result.best_value == result.default_value
    for reason in result.importances.values():
        assert "not enough completed trials" in reason
    assert "not enough completed trials (1; at least 2 are needed)" in result.report.read_text()
    with pytest.raises(ModuleExistsError, match=r"already holds a run.*--resume.*Received: out="):
        graft.tune(small_digits, str(tiny_backbone), out=tmp_path / "one", trials=1)
    with pytest.raises(InvalidArgumentError, match=r"differ from the saved tune.json.*'seed': 3"):
        graft.tune(small_digits, str(tiny_backbone), out=result.directory, resume=True, seed=3)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"trials": 0}, InvalidArgumentError, r"at least 1\. Received: trials=0"),
        ({"trials": 2.5}, InvalidArgumentError, r"whole number.*Received: trials=2.5"),
        ({"timeout": 0}, InvalidArgumentError, r"positive number.*Received: timeout=0"),
        ({"model": "tiny_cnn.nope"}, ModelNotFoundError, r"Received: name='tiny_cnn.nope'"),
        ({"resume": True}, InvalidArgumentError, r"Nothing to resume.*Received: out="),
    ],
)
def test_bad_arguments(small_digits, tmp_path, kwargs, error, pattern):
    from tests import _tiny_zoo  # noqa: F401

    kwargs = {"model": "tiny_cnn.test", **kwargs}
    with pytest.raises(error, match=pattern):
        graft.tune(small_digits, out=tmp_path / "r", **kwargs)
    assert not (tmp_path / "r").exists()


def test_fine_tune_trial_scores_held_out_folds(searched, tmp_path, monkeypatch):
    """A fine-tune trial (fixed parameters): every fold fine-tunes the top block from its own
    head and is scored on its held-out fold; the trial's checkpoints are removed."""
    import optuna

    from graft.training import trials
    from graft.training.features import FeatureExtractor
    from graft.training.run import read_splits
    from graft.training.stages import FeatureStore
    from graft.training.trials import Objective, SearchData

    monkeypatch.setattr(trials, "FINE_TUNE_EPOCHS", 2)  # 2 epochs per fold: a quicker test
    FINE_TUNE_EPOCHS = 2
    splits, _ = read_splits(searched.directory)
    backbone = _tiny_dir()
    data = SearchData.build(splits, FeatureStore(FeatureExtractor(backbone)), seed=0)
    reported: dict[int, float] = {}

    class Trial(optuna.trial.FixedTrial):
        def report(self, value, step):
            reported[step] = value

    params = {"fine_tune_blocks": 1, "fine_tune_lr": 1e-3, "head": "convex", "lam": 1e-2}
    params["transform"] = "none"
    objective = Objective(
        data, seed=0, backbone_dir=backbone, max_blocks=1, work_dir=tmp_path, model="tiny"
    )
    value = objective(Trial(params, number=7))
    assert sorted(reported) == [1000 + i for i in range(data.k * FINE_TUNE_EPOCHS)]
    last = [reported[1000 + f * FINE_TUNE_EPOCHS + FINE_TUNE_EPOCHS - 1] for f in range(data.k)]
    assert value == pytest.approx(np.mean(last)) and 0 < value <= 1
    assert not (tmp_path / "trial-7").exists()


def _finished(db: Path) -> list[tuple]:
    """(number, state) of every trial, read while another process may be writing."""
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    except sqlite3.OperationalError:  # tables not created yet, or locked for a moment
        return []


def test_killed_tune_resumes_without_repeating_trials(small_digits, tmp_path, tiny_backbone):
    import optuna

    out, db = tmp_path / "run", tmp_path / "run" / "study.db"
    args = [sys.executable, "-m", "graft.cli.main", "tune", str(small_digits)]
    args += ["--model", str(tiny_backbone), "--trials", "7", "--out", str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while sum(state in ("COMPLETE", "PRUNED") for _, state in _finished(db)) < 2:
        assert proc.poll() is None, "the search ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    storage = f"sqlite:///{db}"
    before = optuna.load_study(study_name="graft-tune", storage=storage).trials
    done = {t.number: t for t in before if t.state.name in ("COMPLETE", "PRUNED")}
    running = [t.number for t in before if t.state.name == "RUNNING"]
    assert 2 <= len(done) < 7 and not (out / "module").exists()

    resumed = subprocess.run(
        [*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    study = optuna.load_study(study_name="graft-tune", storage=storage)
    after = {t.number: t for t in study.trials}
    for number, trial in done.items():  # kept, not repeated
        assert after[number].state == trial.state and after[number].value == trial.value
        assert after[number].params == trial.params
    for number in running:  # the trial the kill interrupted: failed, not counted
        assert after[number].state.name == "FAIL" and after[number].user_attrs["interrupted"]
    assert sum(t.state.name in ("COMPLETE", "PRUNED") for t in after.values()) == 7
    new = [t for n, t in after.items() if n not in done and t.state.name == "COMPLETE"]
    old_params = [t.params for t in done.values()]
    assert all(t.params not in old_params for t in new), "a resumed trial replayed a proposal"
    assert "Best: trial" in resumed.stdout and "Default configuration (trial 0)" in resumed.stdout
    assert "accuracy" in resumed.stdout and (out / "module" / "manifest.json").is_file()


def test_cli_rejects_zero_trials(small_digits, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "graft.cli.main", "tune", str(small_digits), "--trials", "0"]
        + ["--out", str(tmp_path / "r")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--trials must be at least 1. Received: --trials=0" in result.stderr.replace("\n", "")


def test_text_data_with_image_backbone_leaves_no_folder(tmp_path):
    from tests import _tiny_zoo  # noqa: F401

    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"x{i},{'ab'[i % 2]}\n" for i in range(20)))
    with pytest.raises(InvalidArgumentError, match=r"takes image input but the data is text"):
        graft.tune(path, "tiny_cnn.test", out=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_equal_scores_keep_the_earliest_trial():
    import optuna

    from graft.training.tune import best_trial

    study = optuna.create_study(direction="maximize")
    distribution = {"lam": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}
    for lam, value in [(0.01, 0.70), (0.1, 0.69), (0.3, 0.70 + 2e-6), (0.5, 0.70)]:
        study.add_trial(
            optuna.trial.create_trial(params={"lam": lam}, distributions=distribution, value=value)
        )
    assert best_trial(study).number == 0
    study.add_trial(
        optuna.trial.create_trial(params={"lam": 0.2}, distributions=distribution, value=0.71)
    )
    assert best_trial(study).number == 4


def test_a_lead_within_one_standard_error_keeps_the_default():
    import optuna

    from graft.training.tune import best_trial, standard_error

    study = optuna.create_study(direction="maximize")
    distribution = {"lam": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}

    def add(lam, value, **attrs):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lam": lam}, distributions=distribution, value=value, user_attrs=attrs
            )
        )

    add(0.01, 0.70, default=True)
    add(0.1, 0.71)
    assert standard_error(0.70, 1000) == pytest.approx(0.01449, abs=1e-5)
    assert best_trial(study).number == 1  # the highest score
    assert best_trial(study, examples=1000).number == 0  # +0.010 < 0.0145: the default
    assert best_trial(study, examples=100_000).number == 1  # +0.010 > 0.0014
    add(0.3, 0.72)
    assert best_trial(study, examples=1000).number == 2  # +0.020 > 0.0145
