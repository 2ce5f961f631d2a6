"""The module format: round trip, checksums, allowlist, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graft.errors import (
    ChecksumError,
    ManifestError,
    ModuleExistsError,
    UnsafeModelError,
)
from graft.module import InputSpec, Manifest, OutputSpec, load, save, verify
from tests._tiny_zoo import tiny_model


def tiny_manifest(**kwargs) -> Manifest:
    fields = dict(
        name="tiny.cnn",
        task="image-classifier",
        inputs=InputSpec(kind="image", size=(16, 16), value_range=(0.0, 1.0)),
        outputs=OutputSpec(kind="probabilities", dim=2),
        labels=("cat", "dog"),
    )
    fields.update(kwargs)
    return Manifest(**fields)


def tiny_classifier():
    import keras

    base = tiny_model()
    out = keras.layers.Dense(2, activation="softmax", name="predictions")(base.output)
    return keras.Model(base.input, out)


@pytest.fixture
def saved(tmp_path):
    model = tiny_classifier()
    path = tmp_path / "mod"
    manifest = save(model, path, tiny_manifest())
    return model, path, manifest


def test_round_trip(saved):
    model, path, manifest = saved
    x = np.random.default_rng(0).random((3, 16, 16, 3), dtype=np.float32)
    loaded = load(path)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.manifest == manifest
    assert manifest.params == model.count_params()
    assert set(manifest.files) == {"model.keras", "assets/labels.txt"}
    assert (path / "assets/labels.txt").read_text() == "cat\ndog\n"
    assert Manifest.read(path / "manifest.json") == manifest
    assert len(manifest.files["model.keras"].sha256) == 64


def test_flipped_byte_is_a_checksum_error(saved):
    _, path, _ = saved
    data = bytearray((path / "model.keras").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / "model.keras").write_bytes(bytes(data))
    with pytest.raises(
        ChecksumError, match=r"model\.keras has sha256 .*Received: path='model.keras'"
    ):
        load(path)


def test_missing_file_is_named(saved):
    _, path, _ = saved
    (path / "assets/labels.txt").unlink()
    with pytest.raises(ChecksumError, match=r"labels\.txt is listed in the manifest but missing"):
        verify(path)


def test_truncated_file_is_named(saved):
    _, path, _ = saved
    with open(path / "model.keras", "r+b") as f:
        f.truncate(100)
    with pytest.raises(ChecksumError, match=r"is 100 bytes, the manifest says"):
        verify(path)


def test_manifest_not_json(saved):
    _, path, _ = saved
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match=r"is not valid JSON.*Received: path="):
        load(path)


def test_manifest_schema_errors_name_the_field(saved):
    _, path, _ = saved
    data = json.loads((path / "manifest.json").read_text())
    data["task"] = "image-segmentation"
    (path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"task: Input should be 'image-feature-vector'"):
        load(path)


def test_newer_format_version_says_upgrade(saved):
    _, path, _ = saved
    data = json.loads((path / "manifest.json").read_text())
    data["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"upgrade graft.*format_version=99"):
        load(path)


def test_not_a_module(tmp_path):
    with pytest.raises(ManifestError, match=r"No manifest\.json in"):
        load(tmp_path)


def test_bad_name_rejected():
    with pytest.raises(ValueError, match=r"lowercase letters.*Received: name='Bad Name'"):
        tiny_manifest(name="Bad Name")


def test_lambda_layer_refused_even_with_trust(tmp_path):
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2, name="doubler")(inputs)
    manifest = tiny_manifest(outputs=OutputSpec(kind="logits", dim=4), labels=None)
    save(keras.Model(inputs, outputs), tmp_path / "lam", manifest)
    with pytest.raises(UnsafeModelError, match=r"'keras\.layers\.Lambda'.*trust=True"):
        load(tmp_path / "lam")
    with pytest.raises(ValueError, match="(?i)lambda"):  # safe_mode stays on with trust
        load(tmp_path / "lam", trust=True)


def test_unknown_custom_class_needs_trust(tmp_path):
    import keras

    @keras.saving.register_keras_serializable(package="third_party")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((4,))
    manifest = tiny_manifest(outputs=OutputSpec(kind="logits", dim=4), labels=None)
    save(keras.Model(inputs, Doubler(name="d")(inputs)), tmp_path / "custom", manifest)
    with pytest.raises(UnsafeModelError, match=r"Doubler.*not on graft's allowlist.*class_name="):
        load(tmp_path / "custom")
    loaded = load(tmp_path / "custom", trust=True)
    np.testing.assert_allclose(loaded.model(np.ones((1, 4), "float32")), 2.0)


def test_existing_directory_needs_overwrite(saved):
    model, path, _ = saved
    with pytest.raises(ModuleExistsError, match=r"overwrite=True.*Received: directory="):
        save(model, path, tiny_manifest())
    save(model, path, tiny_manifest(description="second"), overwrite=True)
    assert load(path).manifest.description == "second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["mod"]


def test_failed_save_leaves_nothing(tmp_path):
    class Broken:
        def save(self, path):
            open(path, "wb").write(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save(Broken(), tmp_path / "out", tiny_manifest())
    assert list(tmp_path.iterdir()) == []


def test_asset_paths_cannot_escape(tmp_path):
    with pytest.raises(ValueError, match="escapes assets"):
        save(tiny_classifier(), tmp_path / "m", tiny_manifest(), assets={"../x": b"1"})
    assert list(tmp_path.iterdir()) == []
