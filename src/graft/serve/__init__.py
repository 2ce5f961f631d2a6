"""``graft serve``: TensorFlow Serving's REST API for graft modules and SavedModels.

Example:
    >>> from graft.serve import ServeOptions, serve
    >>> serve(ServeOptions(model_dir="models"), port=8501)  # doctest: +SKIP
"""

from __future__ import annotations

from graft.serve.batching import BatchingOptions
from graft.serve.limits import Limits
from graft.serve.run import ServeOptions, build, serve

__all__ = ["BatchingOptions", "Limits", "ServeOptions", "build", "serve"]
