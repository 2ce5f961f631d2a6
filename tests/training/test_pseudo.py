"""Pseudo-labelling: only confident examples, capped per class, kept only when it helps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import graft
from graft.errors import InvalidArgumentError
from graft.training.pseudo import pseudo_label, select


def test_selection_never_takes_an_example_below_the_threshold():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.full(4, 0.3), size=500)
    caps = np.array([10, 500, 500, 0])
    rows = select(probs, 0.8, caps)
    assert len(rows) and probs[rows].max(1).min() >= 0.8
    labels = probs[rows].argmax(1)
    assert np.all(np.bincount(labels, minlength=4) <= caps)
    confident_0 = np.flatnonzero((probs.argmax(1) == 0) & (probs.max(1) >= 0.8))
    kept_0 = rows[labels == 0]
    assert len(kept_0) == min(10, len(confident_0))  # the most confident ones
    assert probs[kept_0, 0].min() >= np.sort(probs[confident_0, 0])[-len(kept_0)]
    assert len(select(probs, 1.0, caps)) == 0


@pytest.fixture(scope="module")
def few_labels():
    """Digits pixels: 30 labelled training examples, 150 validation, 1,000 unlabelled."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(3).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    return (x[:30], y[:30]), (x[30:180], y[30:180]), (x[180:1180], y[180:1180])


def test_pseudo_labels_that_help_are_kept(few_labels):
    (xtr, ytr), (xva, yva), (xun, yun) = few_labels
    result = pseudo_label(
        xtr, ytr, xva, yva, xun, 10, lam=1e-2, transform="none", threshold=0.5, rounds=2
    )
    assert result.kept and result.val_after > result.val_before
    assert len(result.indices) >= 20 and np.all(result.confidence >= 0.5)
    assert (result.labels == yun[result.indices]).mean() > 0.85  # mostly right
    caps = 2 * np.bincount(ytr, minlength=10)  # round 2 may take twice the labelled count
    assert np.all(np.bincount(result.labels, minlength=10) <= caps)
    summary = result.summary()
    assert summary["selected"] == len(result.indices) and len(summary["rounds"]) == 2


def test_pseudo_labels_that_do_not_help_are_dropped(few_labels):
    (xtr, ytr), (xva, yva), _ = few_labels
    noise = np.random.default_rng(0).normal(50, 1, (300, 64)).astype(np.float32)
    result = pseudo_label(xtr, ytr, xva, yva, noise, 10, lam=1e-2, transform="none", threshold=0.2)
    if result.rounds[0]["selected"]:
        assert not result.kept or result.val_after > result.val_before
    assert result.kept == (result.val_after > result.val_before)
    if not result.kept:
        assert len(result.indices) == 0


def test_bad_pseudo_settings(few_labels):
    (xtr, ytr), (xva, yva), (xun, _) = few_labels
    with pytest.raises(InvalidArgumentError, match=r"probability in \(0, 1\].*threshold=1.5"):
        pseudo_label(xtr, ytr, xva, yva, xun, 10, lam=1e-2, transform="none", threshold=1.5)


def test_train_with_an_unlabeled_folder(_shared_zoo_home, digits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_HOME", str(_shared_zoo_home))
    labelled, pool = tmp_path / "labelled", tmp_path / "pool"
    pool.mkdir()
    for digit in range(10):
        files = sorted((digits_dir / str(digit)).glob("*.png"))
        (labelled / str(digit)).mkdir(parents=True)
        for f in files[:8]:
            shutil.copy(f, labelled / str(digit) / f.name)
        for f in files[8:40]:
            shutil.copy(f, pool / f"{digit}_{f.name}")  # no class folders, names unused
    (pool / "broken.png").write_bytes(b"not an image")
    run = graft.train(
        labelled,
        out=tmp_path / "run",
        unlabeled=str(pool),
        pseudo_threshold=0.6,
        val_fraction=0.25,
        test_fraction=0.25,
    )
    pseudo = run.selection["pseudo"]
    assert pseudo["unlabeled"] == 320  # the broken file was skipped
    assert pseudo["kept"] == (pseudo["val_accuracy_after"] > pseudo["val_accuracy_before"])
    assert all(c <= 4 for c in pseudo["selected_per_class"])  # one round: <= labelled count
    saved = json.loads((run.directory / "run.json").read_text())["selection"]["pseudo"]
    assert saved == pseudo
    assert "unlabelled examples reached p" in (run.directory / "report.html").read_text()


def test_unlabeled_needs_an_existing_source_and_the_convex_head(digits_dir, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"No such file or folder.*Received"):
        graft.train(digits_dir, out=tmp_path / "a", unlabeled=str(tmp_path / "none"))
    with pytest.raises(InvalidArgumentError, match=r"works with the convex head"):
        graft.train(digits_dir, out=tmp_path / "b", unlabeled=str(digits_dir), head="sgd")
