"""``graft.load`` and ``graft train`` with hub handles, on real Keras modules."""

from __future__ import annotations

import numpy as np

import graft
import graft.hub
import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)


def test_load_from_the_hub_equals_the_local_module(hub):
    local = graft.models.materialize("tiny_cnn.test")
    graft.hub.push(local, hub.url, "tiny", labels=("stable",))
    model = graft.load(f"hub://{hub.hostport}/tiny@stable")
    assert model.graft_manifest.name == "tiny_cnn.test"
    x = np.random.default_rng(0).random((4, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), graft.load(local).predict(x, verbose=0))
    assert not model.trainable


def test_train_on_a_hub_backbone(hub, tmp_path, digits_dir):
    local = graft.models.materialize("tiny_cnn.test")
    graft.hub.push(local, hub.url, "tiny")
    handle = f"hub://{hub.hostport}/tiny@1"
    run = graft.train(digits_dir, model=handle, out=tmp_path / "run", epochs=2)
    assert run.config.model == handle
    assert 0.0 <= run.metrics["accuracy"] <= 1.0
    reloaded = graft.load(run.module_dir)
    assert reloaded.graft_manifest.labels == tuple(str(i) for i in range(10))
