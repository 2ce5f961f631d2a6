"""Magnitude pruning on a polynomial-decay schedule, during head training and fine-tuning."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import graft
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)
from graft.errors import InvalidArgumentError
from graft.training.pruning import PolynomialDecay, Pruning, sparsity_by_layer


def test_schedule_is_tfmot_polynomial_decay():
    s = PolynomialDecay(0.5, 0.9, begin_step=10, end_step=110)
    assert s(0) == s(10) == 0.5 and s(110) == s(500) == 0.9
    assert s(60) == pytest.approx(0.9 - 0.4 * 0.5**3)
    values = [s(t) for t in range(10, 111)]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_pruned_weights_reach_the_target_and_stay_zero():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]
    )
    model.compile("adam", "mse")
    pruning = Pruning(PolynomialDecay(0.5, 0.8, begin_step=0, end_step=20), frequency=5)
    pruning.attach(model)
    x = np.random.default_rng(0).normal(size=(320, 16)).astype("float32")
    y = np.random.default_rng(1).normal(size=(320, 4)).astype("float32")
    model.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[pruning.callback()])
    assert pruning.step == 10 and not pruning.reached()
    middle = sparsity_by_layer(model)
    assert all(0.5 <= v["sparsity"] < 0.8 for v in middle.values()), middle
    zeros = [np.asarray(k.numpy()) == 0 for _, k in pruning.kernels]
    model.fit(x, y, batch_size=32, epochs=3, verbose=0, callbacks=[pruning.callback()])
    assert pruning.reached()
    final = sparsity_by_layer(model)
    assert [v["sparsity"] for v in final.values()] == pytest.approx([0.8, 0.8], abs=0.005)
    # Weights pruned at the final sparsity stay pruned while the others keep training.
    for (_, kernel), before in zip(pruning.kernels, zeros, strict=True):
        now = np.asarray(kernel.numpy()) == 0
        assert now.sum() >= before.sum()


def test_train_prunes_head_and_fine_tuned_layers(digits_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAFT_HOME", str(tmp_path / "home"))
    run = graft.train(
        digits_dir,
        model="tiny_cnn.test",
        out=tmp_path / "pruned",
        epochs=2,
        fine_tune_layers=2,
        fine_tune_epochs=3,
        prune_sparsity=0.75,
        prune_initial=0.3,
    )
    sparsity = json.loads((run.directory / "run.json").read_text())["sparsity"]
    assert "predictions" in sparsity and len(sparsity) >= 2
    for layer, info in sparsity.items():
        assert info["sparsity"] == pytest.approx(0.75, abs=0.01), layer
    # The saved module holds plain layers (no masks) whose kernels are sparse.
    model = graft.load(run.module_dir)
    assert sparsity_by_layer(model, minimum=0.01) == sparsity
    assert not [v.path for v in model.variables if "mask" in v.path]
    assert "pruning" in (run.directory / "report.html").read_text()


def test_bad_pruning_settings_name_the_range(digits_dir, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"in \[0, 1\).*Received: prune_sparsity=1.0"):
        graft.train(digits_dir, model="tiny_cnn.test", out=tmp_path / "x", prune_sparsity=1.0)
