"""Layer groups ("blocks") and trainability: the transfer interface every zoo model shares.

A module's manifest lists its layer groups from input to output (``stem``, ``block1a``, ...,
``top``, ``head``). ``set_trainable(model, groups, top_groups=2)`` unfreezes the last two of them
on every model alike; BatchNormalization layers always stay frozen, which in Keras 3 also keeps
them in inference mode, as fine-tuning on small data needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from graft.errors import InvalidArgumentError, received
from graft.module.manifest import LayerGroup

if TYPE_CHECKING:
    import keras


def assign_groups(
    layers: Sequence[keras.layers.Layer], key: Callable[[str], str | None], prefix: str = ""
) -> tuple[LayerGroup, ...]:
    """Groups layers in order by ``key(layer.name)``.

    A layer whose key is ``None`` joins the group before it (or ``preprocess`` at the start).
    Groups without weights (pure preprocessing) are dropped.
    """
    order: list[str] = []
    members: dict[str, list[str]] = {}
    weighted: set[str] = set()
    current = "preprocess"
    for layer in layers:
        if type(layer).__name__ == "InputLayer":
            continue
        current = key(layer.name) or current
        if current not in members:
            order.append(current)
            members[current] = []
        members[current].append(prefix + layer.name)
        if layer.weights:
            weighted.add(current)
    return tuple(LayerGroup(name=g, layers=tuple(members[g])) for g in order if g in weighted)


def _find(model: keras.Model, path: str) -> keras.layers.Layer:
    layer = model
    for part in path.split("/"):
        layer = layer.get_layer(part)
    return layer


def _set(layer: keras.layers.Layer, trainable: bool) -> None:
    import keras

    layer.trainable = trainable  # Keras propagates this to nested layers.
    for sub in [layer, *layer._flatten_layers(include_self=False, recursive=True)]:
        if isinstance(sub, keras.layers.BatchNormalization):
            sub.trainable = False


def _freeze_ungrouped(parent, prefix: str, grouped: set[str], extra: set[str]) -> None:
    """Freezes every layer (nested ones too) that is neither grouped nor holds grouped layers."""
    for layer in getattr(parent, "layers", []):
        path = prefix + layer.name
        if path in grouped:
            continue
        if any(name.startswith(path + "/") for name in grouped):
            _freeze_ungrouped(layer, path + "/", grouped, extra)
        else:
            _set(layer, path in extra)


def set_trainable(
    model: keras.Model,
    groups: Sequence[LayerGroup],
    top_groups: int | None = None,
    *,
    extra_trainable: Sequence[str] = (),
) -> int:
    """Freezes the model, then unfreezes its last ``top_groups`` groups.

    Args:
        model: a model whose layer names match ``groups``.
        groups: the manifest's layer groups, input to output.
        top_groups: how many groups from the top to unfreeze; ``None`` unfreezes all of them;
            0 freezes everything.
        extra_trainable: layer names to leave trainable whatever their group (a new head).

    Returns:
        The number of trainable weights.

    Raises:
        InvalidArgumentError: ``top_groups`` is negative or more than there are groups.

    Example:
        >>> set_trainable(model, manifest.groups, top_groups=2)  # doctest: +SKIP
    """
    if top_groups is not None and not 0 <= top_groups <= len(groups):
        raise InvalidArgumentError(
            f"top_groups must be between 0 and {len(groups)} (the model's groups: "
            f"{', '.join(g.name for g in groups)}). {received(top_groups=top_groups)}"
        )
    model.trainable = True
    n = len(groups) if top_groups is None else top_groups
    unfrozen = {name for g in groups[len(groups) - n :] for name in g.layers}
    frozen = {name for g in groups for name in g.layers} - unfrozen
    for name in sorted(frozen) + sorted(unfrozen):
        _set(_find(model, name), name in unfrozen)
    _freeze_ungrouped(model, "", frozen | unfrozen, set(extra_trainable))
    return len(model.trainable_weights)


def set_trainable_layers(model: keras.Model, top_layers: int) -> int:
    """Freezes the model, then unfreezes its last ``top_layers`` weighted layers.

    Counts leaf layers that own weights, in order, nested models included; BatchNormalization
    is never counted and stays frozen (the Keras tutorials' ``fine_tune_at``).

    Returns:
        The number of trainable weights.

    Raises:
        InvalidArgumentError: ``top_layers`` is negative or more than the weighted layers.
    """
    import keras

    leaves = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if layer.weights
        and not list(layer._flatten_layers(include_self=False, recursive=False))
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not 0 <= top_layers <= len(leaves):
        raise InvalidArgumentError(
            f"top_layers must be between 0 and {len(leaves)} (the weighted layers other than "
            f"BatchNormalization). {received(top_layers=top_layers)}"
        )
    model.trainable = True
    for i, layer in enumerate(leaves):
        layer.trainable = i >= len(leaves) - top_layers
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return len(model.trainable_weights)
