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


def register_test_entry(
    name: str, inputs: InputSpec, dim: int, builder: str, description: str
) -> ModelSpec:
    """Registers a zoo entry made by tests: license "test" (the zoo's own tests leave those
    out), no parameter count, a feature vector of ``dim`` out; ``builder`` is "module:function"
    and names the source file."""
    task = "image-feature-vector" if inputs.kind == "image" else "text-embedding"
    return register(
        ModelSpec(
            name=name,
            task=task,
            inputs=inputs,
            outputs=OutputSpec(kind="feature_vector", dim=dim),
            params=0,
            license="test",
            source=builder.split(":")[0].replace(".", "/") + ".py",
            builder=builder,
            description=description,
        )
    )


SPEC = register_test_entry(
    "tiny_cnn.test",
    InputSpec(kind="image", size=(16, 16), value_range=(0.0, 1.0)),
    8,
    "tests._tiny_zoo:build",
    "test entry",
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
