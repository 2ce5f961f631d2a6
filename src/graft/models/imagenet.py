"""The 1000 ImageNet-1k class names, in the standard class-index order."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def imagenet_labels() -> tuple[str, ...]:
    """Returns the ImageNet-1k class names; index ``i`` is class ``i`` of the classifiers.

    Example:
        >>> imagenet_labels()[985]
        'daisy'
    """
    text = resources.files("graft.models").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    labels = tuple(line for line in text.splitlines() if line)
    assert len(labels) == 1000, len(labels)
    return labels
