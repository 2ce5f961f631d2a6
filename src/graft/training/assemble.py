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

    from graft.training.head import uncompiled

    inputs, x = raw_inputs(kind, size)
    return keras.Model(inputs, uncompiled(head)(backbone(x)), name="classifier")


def raw_inputs(kind: str, size):
    """A saved module's input and what its network takes: encoded image bytes through a
    ``DecodeImage`` layer (to float RGB at ``size``), or strings as they are."""
    import keras

    from graft.models.layers import DecodeImage

    if kind == "image":
        inputs = keras.Input(shape=(), dtype="string", name="image_bytes")
        return inputs, DecodeImage(size, name="decode_image")(inputs)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    return inputs, inputs


def ensemble_model(branches, meta_head, kind: str, size, log_probabilities: bool = True):
    """Raw encoded image bytes (or strings) -> every member branch -> the meta-learner ->
    probabilities: the one model an ensemble module holds.

    Images are decoded once, by one ``DecodeImage`` layer at ``size``; everything after it is
    one nested model (``ensemble``), the float-image core that export and serving run.

    Args:
        branches: one Keras model per member (``members.member_branch``).
        meta_head: the meta-learner's ``LinearHead`` on the concatenated branch outputs, or
            ``None`` for the plain mean of the members' probabilities (branches that output
            log-probabilities are exponentiated first).
        kind: ``"image"`` or ``"text"``.
        size: the decoding size of images.
        log_probabilities: the branches output log-probabilities (else probabilities).
    """
    import keras

    from graft.models.layers import DecodeImage
    from graft.training.head import head_model, uncompiled

    if kind == "image":
        inputs = keras.Input((*size, 3), name="image")
    else:
        inputs = keras.Input(shape=(), dtype="string", name="text")
    outputs = [b(inputs) for b in branches]
    if meta_head is None:
        if log_probabilities:
            outputs = [
                keras.layers.Activation("exponential", name=f"probabilities_{i}")(o)
                for i, o in enumerate(outputs)
            ]
        probabilities = keras.layers.Average(name="mean_of_members")(outputs)
    else:
        joined = keras.layers.Concatenate(name="member_outputs")(outputs)
        probabilities = uncompiled(head_model(meta_head))(joined)
    if kind != "image":
        return keras.Model(inputs, probabilities, name="classifier")
    core = keras.Model(inputs, probabilities, name="ensemble")
    raw = keras.Input(shape=(), dtype="string", name="image_bytes")
    return keras.Model(raw, core(DecodeImage(size, name="decode_image")(raw)), name="classifier")
