"""EfficientNet-Lite as a Keras 3 functional model.

Faithful to ``efficientnet/lite/efficientnet_lite_builder.py``: ReLU6, no squeeze-excitation,
stem (32) and head (1280) not scaled, first and last stage repeats not scaled, TensorFlow
``same`` padding, BatchNorm epsilon 1e-3. Layers are named like keras.applications'
EfficientNet (``stem_*``, ``block{stage}{letter}_*``, ``top_*``) so block groups are read off the
names.
"""

from __future__ import annotations

import math
import string

import keras
from keras import layers

# (repeats, kernel, stride, expand_ratio, in_filters, out_filters) per stage (lite0).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# (width, depth, resolution, dropout) from efficientnet_lite_builder.py.
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
    "efficientnet_lite3": (1.2, 1.4, 280, 0.3),
    "efficientnet_lite4": (1.4, 1.8, 300, 0.3),
}
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROP_CONNECT = 0.2


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scales a channel count by ``width`` and rounds to a multiple of ``divisor``."""
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def block_plan(variant: str) -> list[tuple[str, int, int, int, int, int]]:
    """Lists every MBConv block as ``(name, kernel, stride, expand, in, out)``."""
    width, depth, _, _ = VARIANTS[variant]
    plan = []
    for i, (repeats, kernel, stride, expand, fin, fout) in enumerate(STAGES):
        fin = 32 if i == 0 else round_filters(fin, width)
        fout = round_filters(fout, width)
        if 0 < i < len(STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            name = f"block{i + 1}{string.ascii_lowercase[r]}"
            plan.append(
                (name, kernel, stride if r == 0 else 1, expand, fin if r == 0 else fout, fout)
            )
    return plan


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x, name, kernel, stride, expand, fin, fout, drop_rate):
    inputs = x
    channels = fin * expand
    if expand != 1:
        x = layers.Conv2D(channels, 1, padding="same", use_bias=False, name=f"{name}_expand_conv")(
            x
        )
        x = _bn(f"{name}_expand_bn")(x)
        x = _relu6(f"{name}_expand_activation")(x)
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dwconv"
    )(x)
    x = _bn(f"{name}_bn")(x)
    x = _relu6(f"{name}_activation")(x)
    x = layers.Conv2D(fout, 1, padding="same", use_bias=False, name=f"{name}_project_conv")(x)
    x = _bn(f"{name}_project_bn")(x)
    if stride == 1 and fin == fout:
        if drop_rate > 0:
            x = layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_drop")(x)
        x = layers.Add(name=f"{name}_add")([x, inputs])
    return x


def efficientnet_lite(
    variant: str = "efficientnet_lite0",
    *,
    include_top: bool = True,
    pooling: str | None = "avg",
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    include_preprocessing: bool = True,
    input_size: int | None = None,
) -> keras.Model:
    """Builds EfficientNet-Lite with freshly initialised weights.

    Args:
        variant: ``efficientnet_lite0`` ... ``efficientnet_lite4``.
        include_top: add dropout and the ``classes``-way Dense ``predictions`` layer.
        pooling: ``"avg"`` (a 1280-d feature vector) or ``None`` (the feature map); ignored when
            ``include_top`` (which always pools).
        classes: width of the classifier.
        classifier_activation: ``"softmax"`` or ``None`` for logits.
        include_preprocessing: take RGB in ``[0, 1]`` and apply ``(255 x - 127) / 128`` inside;
            without it the model takes already-normalised input.
        input_size: square input side; defaults to the variant's resolution.

    Returns:
        An uncompiled functional ``keras.Model``.

    Example:
        >>> m = efficientnet_lite("efficientnet_lite0", include_top=False)
        >>> m.output_shape
        (None, 1280)
    """
    if variant not in VARIANTS:
        raise ValueError(
            f"variant must be one of {sorted(VARIANTS)}. Received: variant={variant!r}"
        )
    if pooling not in ("avg", None):
        raise ValueError(f"pooling must be 'avg' or None. Received: pooling={pooling!r}")
    _, _, resolution, dropout = VARIANTS[variant]
    size = input_size or resolution
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    if include_preprocessing:
        x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="rescaling")(x)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)
    plan = block_plan(variant)
    for idx, (name, kernel, stride, expand, fin, fout) in enumerate(plan):
        x = _mbconv(x, name, kernel, stride, expand, fin, fout, DROP_CONNECT * idx / len(plan))
    x = layers.Conv2D(1280, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_activation")(x)
    if include_top or pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        if dropout > 0:
            x = layers.Dropout(dropout, name="top_dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=variant)
