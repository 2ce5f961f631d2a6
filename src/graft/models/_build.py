"""What a zoo builder returns, and the helpers builders share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from graft.module.manifest import LayerGroup, Provenance

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class Built:
    """A freshly built zoo model with real weights, ready to be saved as a module."""

    model: keras.Model
    provenance: Provenance
    groups: tuple[LayerGroup, ...]
    labels: tuple[str, ...] | None = None
