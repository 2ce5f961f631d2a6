"""The networks an export is made from: the module's raw-input model and its tensor core."""

from __future__ import annotations

from dataclasses import dataclass

from graft.errors import InvalidArgumentError, received


@dataclass
class Exportable:
    """A loaded classifier module ready for export.

    ``raw`` takes what the module takes (encoded image bytes or strings); ``core`` is the same
    network after decoding: float32 ``(n, h, w, 3)`` RGB in [0, 1] for images. Runtimes without
    string ops (TFLite, ONNX, TF.js) get ``core``.
    """

    raw: object
    core: object
    labels: tuple[str, ...]
    kind: str
    size: tuple[int, int] | None
    name: str


def core_of(model, kind: str, encoded: bool, size):
    """The network after the ``DecodeImage`` layer (the model itself when there is none).

    Raises:
        InvalidArgumentError: the model should decode images but has no ``DecodeImage``.
    """
    import keras

    from graft.models.layers import DecodeImage

    if kind != "image" or not encoded:
        return model
    layers = model.layers
    index = next((i for i, layer in enumerate(layers) if isinstance(layer, DecodeImage)), None)
    if index is None:
        raise InvalidArgumentError(
            "The module says it takes encoded images but has no DecodeImage layer. "
            f"{received(model=model.name)}"
        )
    inputs = keras.Input((*size, 3), name="image")
    x = inputs
    for layer in layers[index + 1 :]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_core")


def load_exportable(module_dir) -> Exportable:
    """Loads a classifier module and splits off its decoding layer.

    Raises:
        InvalidArgumentError: the module is not a classifier with labels.
    """
    from graft.module.io import load

    loaded = load(module_dir)
    manifest = loaded.manifest
    if manifest.task not in ("image-classifier", "text-classifier") or not manifest.labels:
        raise InvalidArgumentError(
            "graft export takes a classifier module with labels (image-classifier or "
            "text-classifier, as `graft train` writes). "
            f"{received(module=str(module_dir), task=manifest.task)}"
        )
    model = loaded.model
    core = core_of(model, manifest.inputs.kind, manifest.inputs.encoded, manifest.inputs.size)
    return Exportable(
        raw=model,
        core=core,
        labels=tuple(manifest.labels),
        kind=manifest.inputs.kind,
        size=tuple(manifest.inputs.size) if manifest.inputs.size else None,
        name=manifest.name,
    )
