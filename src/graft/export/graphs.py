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
    preprocessor: object = None  # text: the module's BertTextPreprocessor layer
    no_core: str = ""  # why a text module has no string-free core (``core`` is then None)

    def prepare(self, items):
        """What the core takes, from what the module takes: decoded arrays (images) or token
        arrays (texts)."""
        if self.kind == "text":
            return self.tokenize(items)
        from graft.data.images import load_images

        return load_images(list(items), self.size)

    def tokenize(self, texts) -> dict:
        """Text: ``{"token_ids", "padding_mask", "segment_ids"}`` int32 arrays, trimmed to the
        longest text (the exported text cores take any sequence length up to the module's)."""
        import numpy as np

        out = self.preprocessor(np.asarray(list(texts), dtype=object))
        arrays = {k: np.asarray(v).astype("int32") for k, v in out.items()}
        length = max(1, int(arrays["padding_mask"].sum(1).max()))
        return {k: v[:, :length] for k, v in arrays.items()}


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


def text_core(model):
    """``(core, preprocessor)`` of a text classifier: the network after tokenisation.

    The core takes BERT's three int32 inputs (``token_ids``, ``padding_mask``,
    ``segment_ids``, shape ``(batch, length)``), the way BERT models are served without string
    ops; the tokenizer stays with the caller (its vocabulary ships beside the export).

    Raises:
        InvalidArgumentError: the model is not an encoder (with graft's
            ``BertTextPreprocessor``) followed by a head.
    """
    import keras

    from graft.models.text import TEXT_INPUTS, split_encoder

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(layers) != 2:
        raise InvalidArgumentError(
            "Exporting a text classifier without string ops needs graft's text layout (a "
            "sentence encoder with BertTextPreprocessor and MaskedMeanPooling, then a head). "
            f"{received(layers=[type(layer).__name__ for layer in layers])}"
        )
    preprocessor, features = split_encoder(layers[0])
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in TEXT_INPUTS}
    core = keras.Model(inputs, layers[1](features(inputs)), name=f"{model.name}_core")
    return core, preprocessor


def split_core(model, kind: str, encoded: bool, size):
    """``(core, preprocessor)``: ``text_core`` for text classifiers, else ``core_of`` (no
    preprocessor)."""
    if kind == "text":
        return text_core(model)
    return core_of(model, kind, encoded, size), None


def load_exportable(module_dir) -> Exportable:
    """Loads a classifier module and splits off its decoding layer (or tokenizer). A text
    module without graft's BERT layout (an ensemble) gets ``core=None``: it exports only as a
    SavedModel, which takes strings.

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
    inputs = manifest.inputs
    no_core = ""
    try:
        core, preprocessor = split_core(model, inputs.kind, inputs.encoded, inputs.size)
    except InvalidArgumentError as exc:
        if inputs.kind != "text":
            raise
        # Another text layout (an ensemble, TF-IDF): only the raw SavedModel can be written.
        core, preprocessor, no_core = None, None, str(exc)
    return Exportable(
        raw=model,
        core=core,
        labels=tuple(manifest.labels),
        kind=manifest.inputs.kind,
        size=tuple(manifest.inputs.size) if manifest.inputs.size else None,
        name=manifest.name,
        preprocessor=preprocessor,
        no_core=no_core,
    )
