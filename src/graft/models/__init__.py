"""The model zoo: ``list``, ``get`` and ``create`` pretrained backbones by ``arch.tag`` name."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from graft.models.registry import ModelSpec, get, register
from graft.models.registry import list as _list
from graft.models.zoo import is_materialized, materialize

if TYPE_CHECKING:
    import keras

__all__ = [
    "ModelSpec",
    "create",
    "get",
    "is_materialized",
    "list",
    "materialize",
    "register",
    "set_trainable",
]


def list(pattern: str | None = None, task: str | None = None) -> builtins.list[ModelSpec]:  # noqa: A001
    """Lists zoo entries; see ``graft.models.registry.list``.

    Example:
        >>> [s.name for s in list("efficientnet_lite0*")]
        ['efficientnet_lite0.imagenet', 'efficientnet_lite0.imagenet_classifier']
    """
    return _list(pattern, task)


def set_trainable(model, groups, top_groups=None, **kwargs):
    """Freezes a model and unfreezes its top groups; see ``graft.models.transfer``."""
    from graft.models.transfer import set_trainable as _set_trainable

    return _set_trainable(model, groups, top_groups, **kwargs)


def create(
    name: str,
    num_classes: int | None = None,
    trainable: bool = False,
    *,
    dropout: float = 0.2,
) -> keras.Model:
    """Creates a zoo model with pretrained weights, optionally with a fresh classifier head.

    Args:
        name: a zoo name or module directory.
        num_classes: add a new ``Dropout`` + ``Dense(num_classes, softmax)`` head on the
            features (a classifier's own head is removed first). ``None`` keeps the model as is.
        trainable: ``False`` freezes the pretrained part (a new head stays trainable);
            ``True`` makes it trainable except BatchNormalization.
        dropout: dropout rate before the new head.

    Returns:
        A ``keras.Model`` from raw input to features or probabilities; ``model.graft_manifest``
        holds the pretrained module's manifest (layer groups for staged unfreezing).

    Raises:
        ModelNotFoundError: unknown name.
        InvalidArgumentError: ``num_classes`` is not a positive integer.

    Example:
        >>> model = create("efficientnet_lite0.imagenet", num_classes=5)  # doctest: +SKIP
        >>> model.output_shape  # doctest: +SKIP
        (None, 5)
    """
    from graft._load import load
    from graft.errors import InvalidArgumentError, received

    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise InvalidArgumentError(
            f"num_classes must be a positive integer or None. {received(num_classes=num_classes)}"
        )
    model = load(name, trainable=trainable)
    if num_classes is None:
        return model
    import keras

    manifest = model.graft_manifest
    features = model.output
    if manifest.task.endswith("classifier"):  # drop the old head: trailing Dense/Dropout
        producer = {id(layer.output): layer for layer in model.layers}
        layer = model.layers[-1]
        while isinstance(layer, keras.layers.Dense | keras.layers.Dropout):
            features = layer.input
            layer = producer.get(id(features))
    x = keras.layers.Dropout(dropout, name="head_dropout")(features) if dropout else features
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head_predictions")(x)
    new = keras.Model(model.input, outputs, name=f"{model.name}_classifier")
    new.graft_manifest = manifest
    return new
