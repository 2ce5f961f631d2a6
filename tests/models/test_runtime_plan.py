"""Which runtime graft picks for the devices it sees, and the GPU path run on this CPU."""

from __future__ import annotations

import numpy as np
import pytest

from graft._engines import plan_runtime
from graft.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("requested", "kind", "devices", "expected"),
    [
        ("auto", "image", ("CPU",), ("tflite", False, None)),
        ("auto", "text", ("CPU",), ("keras", False, None)),
        ("auto", "image", ("CPU", "GPU"), ("keras", True, "mixed_float16")),
        ("auto", "text", ("CPU", "GPU"), ("keras", False, "mixed_float16")),  # no XLA: lengths
        ("tflite", "image", ("CPU", "GPU"), ("tflite", False, "mixed_float16")),
        ("keras", "image", ("CPU",), ("keras", False, None)),
        ("keras", "image", ("GPU", "CPU"), ("keras", True, "mixed_float16")),
        ("auto", "image", (), ("tflite", False, None)),
    ],
)
def test_plan_follows_the_devices(requested, kind, devices, expected):
    plan = plan_runtime(requested, kind, devices)
    assert (plan.runtime, plan.jit_compile, plan.mixed_precision) == expected
    assert plan.reason


def test_unknown_runtime_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"'auto', 'tflite' or 'keras'.*runtime='gpu'"):
        plan_runtime("gpu", "image", ("GPU",))


def test_gpu_path_features_equal_the_tflite_ones(monkeypatch, zoo_home, digit_files):
    """With a GPU "visible", features run through Keras with XLA (here on the CPU) and equal
    the TFLite engine's."""
    from graft import _engines
    from graft.handles import resolve
    from graft.training.features import FeatureExtractor
    from tests import _tiny_zoo  # noqa: F401

    backbone = resolve("tiny_cnn.test")
    files = [str(p) for p in digit_files[:5]]
    cpu = FeatureExtractor(backbone)
    assert cpu.runtime == "tflite"
    expected = cpu(files)
    monkeypatch.setattr(_engines, "visible_devices", lambda: ("CPU", "GPU"))
    monkeypatch.setenv("GRAFT_HOME", str(zoo_home / "gpu"))  # no cached features
    gpu = FeatureExtractor(backbone)
    assert (gpu.runtime, gpu.plan.jit_compile) == ("keras", True)
    np.testing.assert_allclose(gpu(files), expected, atol=1e-4)


def test_mixed_precision_block_computes_low_and_restores_float32(tmp_path):
    import keras

    from graft.training.head import compile_classifier, mixed_precision

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(inputs)
    head = keras.Sequential([keras.Input((16,)), keras.layers.Dense(3, activation="softmax")])
    model = keras.Model(inputs, head(hidden))
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = keras.utils.to_categorical(np.arange(64) % 3, 3)
    with mixed_precision(model, "mixed_bfloat16"):  # bfloat16 runs on CPUs
        assert model.get_layer("hidden").compute_dtype == "bfloat16"
        assert head.layers[-1].compute_dtype == "float32"  # the softmax stays float32
        assert model.get_layer("hidden").kernel.dtype == "float32"  # float32 variables
        compile_classifier(model, 1e-2, 0.0)
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        assert model(x[:2]).dtype == "float32"
    assert np.isfinite(history.history["loss"]).all()
    assert {layer.dtype_policy.name for layer in model._flatten_layers()} == {"float32"}
    model.save(tmp_path / "m.keras")
    back = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert back.get_layer("hidden").compute_dtype == "float32"
    np.testing.assert_allclose(back.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
