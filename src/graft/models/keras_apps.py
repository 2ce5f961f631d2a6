"""keras.applications backbones as zoo entries (metadata here; Keras is imported only to build).

Weights are the official ImageNet files. graft looks for them in ``$GRAFT_WEIGHTS_DIR``, its own
cache and Keras' cache (``~/.keras/models``), and otherwise downloads them from
``$GRAFT_WEIGHTS_BASE_URL`` (default: Keras' own storage), checking Keras' published hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from graft.models.registry import ModelSpec, register
from graft.module.manifest import InputSpec, OutputSpec


@dataclass(frozen=True)
class _App:
    arch: str
    keras_name: str
    title: str
    feature_dim: int
    params_top: int
    params_notop: int
    top_file: tuple[str, str, str | None]  # (filename, url path, hash)
    notop_file: tuple[str, str, str | None]
    preprocessing: str  # how [0, 1] input becomes what the Keras model expects


_KA = "tensorflow/keras-applications"
APPS = {
    a.arch: a
    for a in (
        _App(
            "mobilenet_v2",
            "MobileNetV2",
            "MobileNetV2 1.0",
            1280,
            3_538_984,
            2_257_984,
            (
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
                f"{_KA}/mobilenet_v2/",
                None,
            ),
            (
                "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
                f"{_KA}/mobilenet_v2/",
                None,
            ),
            "minus_one_one",
        ),
        _App(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            "MobileNetV3-Small 1.0",
            576,
            2_554_968,
            939_120,
            (
                "weights_mobilenet_v3_small_224_1.0_float.h5",
                f"{_KA}/mobilenet_v3/",
                "8768d4c2e7dee89b9d02b2d03d65d862",
            ),
            (
                "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
                f"{_KA}/mobilenet_v3/",
                "d3e8ec802a04aa4fc771ee12a9a9b836",
            ),
            "zero_255",
        ),
        _App(
            "mobilenet_v3_large",
            "MobileNetV3Large",
            "MobileNetV3-Large 1.0",
            960,
            5_507_432,
            2_996_352,
            (
                "weights_mobilenet_v3_large_224_1.0_float.h5",
                f"{_KA}/mobilenet_v3/",
                "59e551e166be033d707958cf9e29a6a7",
            ),
            (
                "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
                f"{_KA}/mobilenet_v3/",
                "07fb09a5933dd0c8eaafa16978110389",
            ),
            "zero_255",
        ),
        _App(
            "resnet50",
            "ResNet50",
            "ResNet-50",
            2048,
            25_636_712,
            23_587_712,
            (
                "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                f"{_KA}/resnet/",
                "2cb95161c43110f7111970584f804107",
            ),
            (
                "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                f"{_KA}/resnet/",
                "4d473c1dd8becc155b73f8504c6f6626",
            ),
            "caffe",
        ),
        _App(
            "efficientnet_b0",
            "EfficientNetB0",
            "EfficientNet-B0",
            1280,
            5_330_571,
            4_049_571,
            ("efficientnetb0.h5", "keras-applications/", "902e53a9f72be733fc0bcb005b3ebbac"),
            ("efficientnetb0_notop.h5", "keras-applications/", "50bc09e76180e00e4465e1a485ddc09d"),
            "zero_255",
        ),
    )
}
_NORMALIZATION = {
    "minus_one_one": "x in [0, 1] RGB; inside the model: 2 x - 1",
    "zero_255": "x in [0, 1] RGB; inside the model: 255 x, then the network's own preprocessing",
    "caffe": "x in [0, 1] RGB; inside the model: 255 x, RGB->BGR, minus the ImageNet mean",
}
_CAFFE_MEAN = (103.939, 116.779, 123.68)

for _app in APPS.values():
    _inputs = InputSpec(
        kind="image",
        size=(224, 224),
        value_range=(0.0, 1.0),
        normalization=_NORMALIZATION[_app.preprocessing],
    )
    _common = dict(
        inputs=_inputs,
        license="Apache-2.0 (Keras); ImageNet weights under their original terms",
        source=f"keras.applications.{_app.keras_name} ImageNet weights",
        builder="graft.models.keras_apps:build",
    )
    register(
        ModelSpec(
            name=f"{_app.arch}.imagenet",
            task="image-feature-vector",
            outputs=OutputSpec(kind="feature_vector", dim=_app.feature_dim),
            params=_app.params_notop,
            description=f"{_app.title} ImageNet features, 224px, {_app.feature_dim}-d",
            options={"arch": _app.arch, "include_top": False},
            **_common,
        )
    )
    register(
        ModelSpec(
            name=f"{_app.arch}.imagenet_classifier",
            task="image-classifier",
            outputs=OutputSpec(kind="probabilities", dim=1000),
            params=_app.params_top,
            description=f"{_app.title} ImageNet-1k classifier, 224px",
            labels="imagenet",
            options={"arch": _app.arch, "include_top": True},
            **_common,
        )
    )


def weights_file(spec: ModelSpec) -> tuple[str, str, str | None]:
    """``(filename, url path, hash)`` of the weights a keras.applications entry needs."""
    app = APPS[spec.options["arch"]]
    return app.top_file if spec.options["include_top"] else app.notop_file


_GROUP_PATTERNS = (
    (re.compile(r"^(Conv_1|out_relu|conv_1)"), "top"),
    (re.compile(r"^(Conv1|bn_Conv1|conv|conv_bn|conv1)(_|$)"), "stem"),
    (re.compile(r"^expanded_conv_(\d+)_"), r"block_\1"),
    (re.compile(r"^expanded_conv_"), "block_0"),
    (re.compile(r"^(block_\d+)_"), r"\1"),
    (re.compile(r"^(conv\d_block\d+)_"), r"\1"),
    (re.compile(r"^(stem|block\d+[a-z]|top)_"), r"\1"),
    (re.compile(r"^(conv_2|logits|predictions)$"), "head"),
)


def group_key(name: str) -> str | None:
    """Block group of a keras.applications layer (``stem``, ``block_3``, ``conv4_block2``...)."""
    for pattern, replacement in _GROUP_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.expand(replacement)
    return None


def build(spec: ModelSpec):
    """Builds a keras.applications entry with its ImageNet weights behind [0, 1] input."""
    import keras

    from graft.models._build import Built
    from graft.models.imagenet import imagenet_labels
    from graft.models.layers import ImageNormalization
    from graft.models.transfer import assign_groups
    from graft.models.weights import fetch_weights
    from graft.module.io import sha256_file
    from graft.module.manifest import Provenance

    app = APPS[spec.options["arch"]]
    include_top = spec.options["include_top"]
    filename, url_path, expected = weights_file(spec)
    path = fetch_weights(filename, url_path + filename, expected, spec.name)
    inputs = keras.Input((224, 224, 3), name="image")
    if app.preprocessing == "minus_one_one":
        x = keras.layers.Rescaling(2.0, offset=-1.0, name="preprocess")(inputs)
    elif app.preprocessing == "caffe":
        x = ImageNormalization(
            scale=[255.0] * 3,
            offset=[-m for m in _CAFFE_MEAN],
            reverse_channels=True,
            name="preprocess",
        )(inputs)
    else:
        x = keras.layers.Rescaling(255.0, name="preprocess")(inputs)
    constructor = getattr(keras.applications, app.keras_name)
    kwargs = {"include_top": include_top, "weights": None, "input_tensor": x}
    if not include_top:
        kwargs["pooling"] = "avg"
    model = constructor(**kwargs)
    model = keras.Model(inputs, model.output, name=spec.arch)
    try:
        model.load_weights(path, skip_mismatch=False)
    except Exception as exc:  # h5py and Keras raise several types for a bad file
        from graft.errors import WeightsError, received

        raise WeightsError(
            f"{path} could not be loaded into {spec.name} ({type(exc).__name__}: {exc}). "
            f"Is it the right file ({filename})? {received(path=str(path))}"
        ) from None
    provenance = Provenance(
        source=spec.source, converted_from=filename, source_sha256=sha256_file(path)
    )
    labels = imagenet_labels() if include_top else None
    groups = assign_groups(model.layers, group_key)
    return Built(model=model, provenance=provenance, groups=groups, labels=labels)
