"""graft: reuse pretrained models offline.

Load a pretrained backbone in one line, graft a new head onto it, train, export, publish and
serve. Importing ``graft`` is cheap: TensorFlow is imported only when a model is built or
loaded.

Example:
    >>> import graft
    >>> features = graft.load("efficientnet_lite0.imagenet")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "data",
    "ensemble",
    "errors",
    "evaluate",
    "explain",
    "export",
    "load",
    "models",
    "module",
    "predict",
    "train",
    "train_tasks",
    "tune",
    "__version__",
]

if TYPE_CHECKING:
    from graft import errors, models, module
    from graft._load import load


def __getattr__(name: str) -> Any:
    if name == "load":
        from graft._load import load

        return load
    if name == "train":
        from graft.training.run import train

        return train
    if name == "train_tasks":
        from graft.training.multitask import train_tasks

        return train_tasks
    if name == "tune":
        from graft.training.tune import tune

        return tune
    if name == "ensemble":
        from graft.training.ensemble import ensemble

        return ensemble
    if name == "predict":
        from graft.inference import predict

        return predict
    if name == "evaluate":
        from graft.evaluation.classifier import evaluate

        return evaluate
    if name == "explain":
        from graft.explanation.api import explain

        return explain
    if name == "export":
        return importlib.import_module("graft.export")  # a callable module: graft.export(...)
    if name in ("models", "module", "errors", "config", "handles", "data"):
        return importlib.import_module(f"graft.{name}")
    raise AttributeError(f"module 'graft' has no attribute {name!r}")
