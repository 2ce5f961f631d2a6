"""graft.train end to end, the long runs (split from test_train.py so that pytest-xdist's
per-file scheduling spreads them over the workers): texts on MiniLM, fine-tuning from the head,
a killed run resumed, folds."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.runs import compare, read_run
from tests.test_quiet import native_lines
from tests.training.test_train import _graft_cli

ROOT = Path(__file__).resolve().parents[2]


def test_text_classifier_on_minilm(_shared_zoo_home, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    topics = {
        "sport": [
            "The striker scored twice in the final",
            "Our team won the league title",
            "The marathon runner broke the record",
            "The tennis match went to five sets",
            "The coach praised the defenders",
            "Fans cheered as the goal went in",
            "She swam the fastest lap of her career",
            "The referee showed a red card",
        ],
        "cooking": [
            "Simmer the sauce for ten minutes",
            "Knead the dough until smooth",
            "Season the soup with salt and pepper",
            "Roast the vegetables in the oven",
            "Whisk the eggs with sugar",
            "Chop the onions finely",
            "Bake the cake at 180 degrees",
            "Fry the garlic in olive oil",
        ],
        "weather": [
            "Heavy rain is expected tomorrow",
            "A cold front brings snow overnight",
            "Sunny skies and warm temperatures today",
            "Strong winds will ease by noon",
            "Fog will clear later this morning",
            "Thunderstorms are likely this evening",
            "Temperatures drop below freezing tonight",
            "A heatwave hits the region",
        ],
    }
    path = tmp_path / "topics.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sentence", "topic"])
        for topic, texts in topics.items():
            writer.writerows([t, topic] for t in texts)
    splits = graft.data.from_csv(
        path, text_column="sentence", label_column="topic", val_fraction=0.125, test_fraction=0.25
    )
    run = graft.train(splits, "minilm_l6.sentence", out=tmp_path / "run", epochs=30, lr=1e-2)
    assert run.kind == "text" and run.metrics["accuracy"] >= 0.8
    new = ["The goalkeeper saved a penalty", "Stir the risotto slowly", "Snow is falling"]
    assert [p.label for p in run.predict(new)] == ["sport", "cooking", "weather"]
    manifest = graft.module.verify(run.module_dir)
    assert manifest.task == "text-classifier" and manifest.labels == ("cooking", "sport", "weather")
    tuned = graft.train(
        splits,
        "minilm_l6.sentence",
        out=tmp_path / "tuned",
        fine_tune_blocks=1,
        fine_tune_epochs=1,
        augment="strong",
    )
    head, tune = tuned.selection["head"], tuned.selection["finetune"]
    assert tune["path"].startswith("token batches cut to their longest text, 'strong' token")
    assert abs(tune["start_val_accuracy"] - head["val_accuracy"]) <= 0.01
    assert len(tuned.history["finetune"]["loss"]) == 1
    assert [p.label for p in tuned.predict(new)] == ["sport", "cooking", "weather"]


@pytest.mark.slow
def test_fine_tuning_starts_where_the_head_ended(_shared_zoo_home, digits_dir, tmp_path):
    """On real data and the real backbone: the first validation score of the fine-tune stage,
    before any step, is the head's (its weights really are carried over); a learning rate that
    wrecks the top block then scores worse, and the head alone is kept."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRAFT_HOME", str(_shared_zoo_home))
        run = graft.train(
            digits_dir,
            out=tmp_path / "run",
            fine_tune_blocks=1,
            fine_tune_epochs=1,
            fine_tune_lr=0.5,
            augment="none",
            lam=0.003,
            transform="power",
        )
    head, tune = run.selection["head"], run.selection["finetune"]
    assert head["fitted_on"] == "train"  # the validation split stays clean for the choice
    assert abs(tune["start_val_accuracy"] - head["val_accuracy"]) <= 0.01
    assert tune["path"].startswith("cached activations below top_conv")
    assert tune["val_accuracy"] < head["val_accuracy"] - 0.05
    assert run.selection["kept"] == "head"
    assert run.selection["head"]["fitted_on"] == "train"
    assert run.metrics["accuracy"] > 0.9  # the refitted head, not the wrecked network


def _state(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_killed_run_resumes_to_the_same_result(_shared_zoo_home, digits_dir, tmp_path):
    env = {**os.environ, "GRAFT_HOME": str(_shared_zoo_home)}
    args = [sys.executable, "-m", "graft.cli.main", "train", str(digits_dir), "--epochs", "20"]
    args += ["--head", "sgd"]
    killed, full = tmp_path / "killed", tmp_path / "full"
    proc = subprocess.Popen(
        [*args, "--out", str(killed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while _state(killed).get("head", {}).get("epochs_done", 0) < 5:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_at_kill = _state(killed)["head"]["epochs_done"]
    assert 5 <= done_at_kill < 20 and not (killed / "module").exists()
    info = read_run(killed)  # graft runs ls tells a killed run that can resume
    assert (info.status, info.progress, info.accuracy) == (
        "resumable",
        f"head epoch {done_at_kill}",
        None,
    )
    (killed / "checkpoints" / ".0123abcd.head_last.keras").write_bytes(b"half-written")
    resumed = subprocess.run(
        [*args, "--out", str(killed), "--resume"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not [p for p in killed.rglob(".*") if p.is_file()]
    assert list((killed / "tensorboard" / "head").glob("events.out.tfevents.*"))
    straight = subprocess.run(
        [*args, "--out", str(full)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert native_lines(straight.stdout + straight.stderr) == []  # a quiet CLI
    h_killed = _state(killed)["head"]["history"]
    h_full = _state(full)["head"]["history"]
    assert len(h_killed["loss"]) == 20
    np.testing.assert_allclose(h_killed["val_loss"], h_full["val_loss"], rtol=1e-6)
    m1 = json.loads((killed / "metrics.json").read_text())
    m2 = json.loads((full / "metrics.json").read_text())
    assert m1["accuracy"] == m2["accuracy"] and m1["confusion_matrix"] == m2["confusion_matrix"]
    settings, results = compare([read_run(killed), read_run(full)])
    assert settings == []  # the same configuration ...
    assert dict((row[0], row[1:]) for row in results)["status"] == ("finished", "finished")


def test_folds_test_every_example_once_and_report_mean_and_sd(
    _shared_zoo_home, digits_dir, tmp_path
):
    out = tmp_path / "cv"
    # A fixed L2 strength and transform (what CV picks on digits): one convex fit per fold.
    args = ["--folds", "3", "--lam", "0.003", "--transform", "power", "--out", str(out)]
    result = _graft_cli("train", str(digits_dir), *args, home=_shared_zoo_home)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    folds = run["folds"]
    assert folds["k"] == 3 and len(folds["per_fold"]) == 3
    assert sum(f["test"] for f in folds["per_fold"]) == 1797
    accuracies = [f["accuracy"] for f in folds["per_fold"]]
    assert folds["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert folds["accuracy_sd"] == pytest.approx(np.std(accuracies, ddof=1))
    assert min(accuracies) > 0.88
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["examples"] == 1797 and metrics["folds"]["k"] == 3  # out-of-fold, pooled
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len({r["item"] for r in rows}) == 1797
    assert f"{folds['accuracy_mean']:.4f} +- {folds['accuracy_sd']:.4f}" in result.stdout
    html = (out / "report.html").read_text()
    assert "Cross-validation (3 folds)" in html and html.count("<tr><td>") >= 3
    manifest = graft.module.verify(out / "module")  # then trained on every example
    assert manifest.metrics["cv_accuracy_mean"] == folds["accuracy_mean"]
    final = json.loads((out / "splits.json").read_text())
    assert len(final["train"]["items"]) + len(final["val"]["items"]) == 1797
