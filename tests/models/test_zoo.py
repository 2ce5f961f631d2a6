"""The registry, the zoo cache (locks, atomic writes) and the transfer interface."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graft
from graft.errors import InvalidArgumentError, ModelNotFoundError
from graft.models import registry
from tests import _tiny_zoo  # noqa: F401  (registers tiny_cnn.test)

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_name_lists_close_matches_and_forms():
    with pytest.raises(ModelNotFoundError) as info:
        graft.models.get("efficientnet_lite0.imagenett")
    message = str(info.value)
    assert "'efficientnet_lite0.imagenet'" in message
    assert "local module directory" in message
    assert message.endswith("Received: name='efficientnet_lite0.imagenett'")
    assert isinstance(info.value, KeyError)


def test_arch_without_tag_suggests_its_entries():
    with pytest.raises(ModelNotFoundError, match=r"'minilm_l6\.sentence'"):
        graft.models.get("minilm_l6")


def _shipped(specs):
    """Entries graft ships (tests register their own, with license "test")."""
    return [s.name for s in specs if s.license != "test"]


def test_list_filters():
    names = _shipped(graft.models.list("efficientnet_lite*"))
    assert names == sorted(names) and len(names) == 6
    assert _shipped(graft.models.list(task="text-embedding")) == ["minilm_l6.sentence"]
    classifiers = graft.models.list("mobilenet", task="image-classifier")
    assert {s.name for s in classifiers} == {
        "mobilenet_v2.imagenet_classifier",
        "mobilenet_v3_small.imagenet_classifier",
        "mobilenet_v3_large.imagenet_classifier",
    }
    with pytest.raises(InvalidArgumentError, match=r"task must be one of.*Received: task='audio'"):
        graft.models.list(task="audio")


def test_every_entry_has_metadata():
    for spec in graft.models.list():
        assert spec.params > 0 or spec.license == "test"
        assert spec.license and spec.source and spec.description
        assert spec.inputs.kind in ("image", "text")
        if spec.inputs.kind == "image":
            assert spec.inputs.value_range == (0.0, 1.0) and spec.inputs.size


def test_register_rejects_bad_names():
    spec = registry.get("tiny_cnn.test")
    from dataclasses import replace

    with pytest.raises(InvalidArgumentError, match="arch.tag"):
        registry.register(replace(spec, name="no_tag"))


def _materialize_in_subprocess(env):
    code = "import tests._tiny_zoo, graft.models as m; print(m.materialize('tiny_cnn.test'))"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def test_concurrent_processes_build_once(graft_home, tmp_path):
    log = tmp_path / "builds.log"
    env = dict(os.environ, TINY_ZOO_SLEEP="2", TINY_ZOO_LOG=str(log))
    procs = [_materialize_in_subprocess(env) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outputs[0] == outputs[1]
    assert len(log.read_text().splitlines()) == 1  # the second process waited and reused it
    module_dir = Path(outputs[0])
    graft.module.verify(module_dir)
    assert sorted(p.name for p in module_dir.parent.iterdir()) == ["1"]  # no temp dirs left


def test_failed_build_leaves_nothing(graft_home, monkeypatch):
    monkeypatch.setenv("TINY_ZOO_FAIL", "1")
    with pytest.raises(RuntimeError, match="on purpose"):
        graft.models.materialize("tiny_cnn.test")
    modules = graft_home / "modules"
    assert not modules.exists() or not any(modules.rglob("*.keras"))
    monkeypatch.delenv("TINY_ZOO_FAIL")
    path = graft.models.materialize("tiny_cnn.test")
    graft.module.verify(path)


def test_load_is_frozen_and_usable_in_sequential():
    import keras

    features = graft.load("tiny_cnn.test")
    assert features.trainable_weights == []
    model = keras.Sequential([keras.Input((16, 16, 3)), features, keras.layers.Dense(3)])
    assert model(np.zeros((2, 16, 16, 3), "float32")).shape == (2, 3)
    assert len(model.trainable_weights) == 2  # only the new Dense


def test_load_trainable_keeps_batchnorm_frozen():
    model = graft.load("tiny_cnn.test", trainable=True)
    trainable = {w.path for w in model.trainable_weights}
    assert "stem_conv/kernel" in trainable and "top_conv/kernel" in trainable
    assert not any(p.startswith("stem_bn") for p in trainable)


def test_set_trainable_top_groups():
    model = graft.load("tiny_cnn.test")
    groups = model.graft_manifest.groups
    assert [g.name for g in groups] == ["stem", "block1a", "top"]
    graft.models.set_trainable(model, groups, top_groups=2)
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"block1a_conv", "top_conv"}
    graft.models.set_trainable(model, groups, top_groups=0)
    assert model.trainable_weights == []
    with pytest.raises(InvalidArgumentError, match=r"between 0 and 3.*Received: top_groups=4"):
        graft.models.set_trainable(model, groups, top_groups=4)


def test_set_trainable_layers_counts_weighted_layers():
    from graft.models.transfer import set_trainable_layers

    model = graft.load("tiny_cnn.test")
    set_trainable_layers(model, 2)  # stem_bn is not counted
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"block1a_conv", "top_conv"}
    set_trainable_layers(model, 3)
    assert "stem_conv/kernel" in {w.path for w in model.trainable_weights}
    assert not any(w.path.startswith("stem_bn") for w in model.trainable_weights)
    with pytest.raises(InvalidArgumentError, match=r"between 0 and 3.*Received: top_layers=9"):
        set_trainable_layers(model, 9)


def test_create_with_new_head():
    model = graft.models.create("tiny_cnn.test", num_classes=4)
    assert model.output_shape == (None, 4)
    assert {w.path.split("/")[0] for w in model.trainable_weights} == {"head_predictions"}
    probs = model.predict(np.random.rand(2, 16, 16, 3).astype("float32"), verbose=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match=r"positive integer.*Received: num_classes=0"):
        graft.models.create("tiny_cnn.test", num_classes=0)


def test_create_replaces_a_classifier_head(zoo_home):
    model = graft.models.create("efficientnet_lite0.imagenet_classifier", num_classes=3)
    names = [layer.name for layer in model.layers]
    assert "predictions" not in names and "top_dropout" not in names
    assert names[-3:] == ["avg_pool", "head_dropout", "head_predictions"]
    assert model.output_shape == (None, 3)


def test_local_directory_handle(tmp_path):
    path = graft.models.materialize("tiny_cnn.test")
    assert graft.load(str(path)).output_shape == (None, 8)
    assert graft.load(path).output_shape == (None, 8)


@pytest.mark.parametrize(
    "handle, pattern",
    [
        ("./does/not/exist", r"does not exist, so it is not a module directory"),
        ("ftp://localhost/flowers.tar", r"Unknown scheme ftp://"),
    ],
)
def test_bad_handles(handle, pattern):
    with pytest.raises(ModelNotFoundError, match=pattern + r".*Received: handle="):
        graft.load(handle)


def test_directory_without_manifest(tmp_path):
    with pytest.raises(ModelNotFoundError, match="has no manifest.json"):
        graft.load(tmp_path)


def test_corrupt_cache_entry_is_detected(graft_home):
    from graft.errors import ChecksumError

    path = graft.models.materialize("tiny_cnn.test")
    with open(path / "model.keras", "ab") as f:
        f.write(b"junk")
    with pytest.raises(
        ChecksumError, match=r"model\.keras.*graft models fetch tiny_cnn\.test --force"
    ):
        graft.load("tiny_cnn.test")
    graft.models.materialize("tiny_cnn.test", force=True)  # the repair
    assert graft.load("tiny_cnn.test").output_shape == (None, 8)
