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


def load_exportable(module_dir) -> Exportable:
    """Loads a classifier module and splits off its decoding layer.

    Raises:
        InvalidArgumentError: the module is not a classifier with labels.
    """
    import keras

    from graft.models.layers import DecodeImage
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
    core = model
    if manifest.inputs.kind == "image" and manifest.inputs.encoded:
        layers = model.layers
        index = next((i for i, layer in enumerate(layers) if isinstance(layer, DecodeImage)), None)
        if index is None:
            raise InvalidArgumentError(
                f"The module says it takes encoded images but has no DecodeImage layer. "
                f"{received(module=str(module_dir))}"
            )
        inputs = keras.Input((*manifest.inputs.size, 3), name="image")
        x = inputs
        for layer in layers[index + 1 :]:
            x = layer(x)
        core = keras.Model(inputs, x, name=f"{model.name}_core")
    return Exportable(
        raw=model,
        core=core,
        labels=tuple(manifest.labels),
        kind=manifest.inputs.kind,
        size=tuple(manifest.inputs.size) if manifest.inputs.size else None,
        name=manifest.name,
    )
