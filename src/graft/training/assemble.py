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
    """Raw encoded image bytes (or strings) -> probabilities: what the saved module holds.

    The head goes in as an uncompiled copy: a compiled sub-model would carry its training
    configuration into the module, and every load would then warn about optimizer variables.
    """
    import keras

    from graft.models.layers import DecodeImage

    if getattr(head, "compiled", False):
        weights = head.get_weights()
        head = keras.Model.from_config(head.get_config())  # clone_model would compile it
        head.set_weights(weights)

    if kind == "image":
        inputs = keras.Input(shape=(), dtype="string", name="image_bytes")
        x = DecodeImage(size, name="decode_image")(inputs)
    else:
        inputs = keras.Input(shape=(), dtype="string", name="text")
        x = inputs
    return keras.Model(inputs, head(backbone(x)), name="classifier")
