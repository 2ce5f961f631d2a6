"""A tiny zoo entry for tests of the cache: builds in well under a second, counts its builds.

Importing this module registers ``tiny_cnn.test``; its builder sleeps ``TINY_ZOO_SLEEP`` seconds
(to widen races), appends a line to ``TINY_ZOO_LOG`` per build and fails when ``TINY_ZOO_FAIL``
is set.
"""

from __future__ import annotations

import os
import time

from graft.models.registry import ModelSpec, register
from graft.module.manifest import InputSpec, OutputSpec

SPEC = register(
    ModelSpec(
        name="tiny_cnn.test",
        task="image-feature-vector",
        inputs=InputSpec(kind="image", size=(16, 16), value_range=(0.0, 1.0)),
        outputs=OutputSpec(kind="feature_vector", dim=8),
        params=0,
        license="test",
        source="tests/_tiny_zoo.py",
        builder="tests._tiny_zoo:build",
        description="test entry",
    )
)


def tiny_model():
    import keras

    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, strides=2, name="stem_conv")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.Conv2D(8, 3, name="block1a_conv")(x)
    x = keras.layers.Conv2D(8, 1, name="top_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, x, name="tiny_cnn")


def build(spec):
    from graft.models._build import Built
    from graft.models.efficientnet_lite.convert import group_key
    from graft.models.transfer import assign_groups
    from graft.module.manifest import Provenance

    time.sleep(float(os.environ.get("TINY_ZOO_SLEEP", "0")))
    if os.environ.get("TINY_ZOO_LOG"):
        with open(os.environ["TINY_ZOO_LOG"], "a") as f:
            f.write(f"{os.getpid()}\n")
    if os.environ.get("TINY_ZOO_FAIL"):
        raise RuntimeError("conversion failed on purpose")
    import keras

    keras.utils.set_random_seed(1234)  # the same random backbone in every test session
    model = tiny_model()
    groups = assign_groups(model.layers, group_key)
    return Built(model=model, provenance=Provenance(source="test"), groups=groups)
