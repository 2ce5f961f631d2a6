"""Quantization-aware head training: it fits the features the int8 backbone really computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from graft.errors import InvalidArgumentError
from graft.export import qat
from graft.training.head import build_head


def _blobs(n, shift, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    x = centers[y] + rng.normal(0, 0.6, (n, 4))
    return (x * shift).astype("float32"), y


def test_head_trained_on_shifted_features_recovers_accuracy():
    keras.utils.set_random_seed(0)
    x, y = _blobs(600, 1.0, 0)
    head = build_head(4, 3, dropout=0.0, learning_rate=0.05)
    head.fit(x, np.eye(3)[y], epochs=20, verbose=0)
    # Quantization moved the features: one channel shrank, another grew.
    shift = np.array([0.4, 1.0, 2.0, 1.0], "float32")
    xs, ys = _blobs(600, shift, 1)
    before = float((head.predict(xs, verbose=0).argmax(1) == ys).mean())
    inputs = keras.Input((4,))
    backbone = keras.Model(inputs, inputs)
    result = qat.train_head(backbone, head, xs[:400], ys[:400], xs[400:], ys[400:], epochs=30)
    after = float((result.core.predict(xs[400:], verbose=0).argmax(1) == ys[400:]).mean())
    assert before < 0.9 and after > before + 0.05, (before, after)
    assert len(result.val_accuracy) == 30 and 0 <= result.best_epoch < 30


def test_fake_quantized_outputs_lie_on_an_8_bit_grid():
    head = build_head(4, 3, dropout=0.0, hidden_units=8)
    model, dense = qat.quant_aware_head(head)
    x = np.random.default_rng(0).normal(size=(500, 4)).astype("float32")
    model(x)  # calibrates the output ranges
    for layer in dense:
        layer.calibrating = False
    hidden = keras.Model(model.inputs, model.get_layer("head_hidden").output)
    values = np.unique(np.asarray(hidden(x)))
    layer = model.get_layer("head_hidden")
    low, high = min(float(layer.low.numpy()), 0.0), float(layer.high.numpy())
    scale = (high - low) / 255
    steps = values / scale + round(-low / scale)
    assert 2 < len(values) <= 256 and low == 0.0 < high  # ReLU outputs
    assert np.allclose(steps, np.round(steps), atol=1e-3) and steps.max() <= 255 + 1e-3


def test_only_graft_heads_are_trained_quantization_aware():
    inputs = keras.Input((4,))
    core = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    with pytest.raises(InvalidArgumentError, match=r"then the `head` model.*Received: layers="):
        qat.split_head(core)
