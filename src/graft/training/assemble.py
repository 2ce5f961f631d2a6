"""Putting backbone and head together: for fine-tuning, and as the one saved module."""

from __future__ import annotations


def tuning_model(backbone, head, kind: str, size):
    """Decoded images (or strings) -> probabilities, sharing ``backbone`` and ``head``."""
    import keras

    if kind == "image":
        inputs = keras.Input((*size, 3), name="image")
    else:
        inputs = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(inputs, head(backbone(inputs)), name="classifier")


def serving_model(backbone, head, kind: str, size):
    """Raw encoded image bytes (or strings) -> probabilities: what the saved module holds."""
    import keras

    from graft.models.layers import DecodeImage

    if kind == "image":
        inputs = keras.Input(shape=(), dtype="string", name="image_bytes")
        x = DecodeImage(size, name="decode_image")(inputs)
    else:
        inputs = keras.Input(shape=(), dtype="string", name="text")
        x = inputs
    return keras.Model(inputs, head(backbone(x)), name="classifier")
