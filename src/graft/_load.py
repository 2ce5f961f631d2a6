"""``graft.load``: the one-liner that gives a pretrained Keras layer, as ``hub.KerasLayer`` did."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras


def load(handle: str | os.PathLike, trainable: bool = False, *, trust: bool = False) -> keras.Model:
    """Loads a pretrained module as a Keras model, usable as a layer.

    Args:
        handle: a zoo name (``"efficientnet_lite0.imagenet"``) or a module directory.
        trainable: ``False`` freezes every weight; ``True`` makes the weights trainable except
            BatchNormalization, which stays in inference mode (the right default for
            fine-tuning on a small data set).
        trust: skip the class allowlist for modules you trust (``safe_mode`` stays on).

    Returns:
        A ``keras.Model`` taking the module's raw input (images in ``[0, 1]``, or strings) and
        returning its output. Its manifest is at ``model.graft_manifest``.

    Raises:
        ModelNotFoundError: the handle matches nothing.
        ChecksumError, UnsafeModelError, WeightsError: the module is corrupt or unsafe, or its
            weights are missing.

    Example:
        >>> import keras, graft
        >>> model = keras.Sequential([
        ...     keras.Input((224, 224, 3)),
        ...     graft.load("efficientnet_lite0.imagenet"),
        ...     keras.layers.Dense(5, activation="softmax"),
        ... ])
    """
    from graft.errors import ChecksumError
    from graft.handles import is_zoo_name, resolve
    from graft.models.transfer import set_trainable
    from graft.module.io import load as load_module

    path = resolve(handle)
    try:
        loaded = load_module(path, trust=trust)
    except ChecksumError as exc:
        if is_zoo_name(handle):
            message, _, tail = str(exc).rpartition(" Received: ")
            raise ChecksumError(
                f"{message} The cached zoo entry is damaged; rebuild it with "
                f"`graft models fetch {handle} --force`. Received: {tail}"
            ) from None
        raise
    model = loaded.model
    if trainable:
        set_trainable(model, loaded.manifest.groups, None)
    else:
        model.trainable = False
    model.graft_manifest = loaded.manifest
    return model
