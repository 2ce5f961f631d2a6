"""Keras files: the float module model, or Keras' own ``model.quantize("int8")`` of it.

Keras 3 quantizes Dense, EinsumDense and Embedding layers (int8 weights with per-channel scales,
activations quantized on the fly); convolutions stay float. So an image classifier gains little
(its head only), while a transformer text classifier shrinks by about 3x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.export.graphs import Exportable, split_core

QUANTIZED_LAYERS = ("Dense", "EinsumDense", "Embedding", "ReversibleEmbedding")


def write(ex: Exportable, quantization: str, path: Path) -> None:
    """Saves the raw-input module model, int8-quantized by Keras when asked."""
    import keras

    model = ex.raw
    if quantization == "int8":
        model = keras.models.clone_model(ex.raw)
        model.set_weights(ex.raw.get_weights())
        model.quantize("int8", filters=lambda layer: type(layer).__name__ in QUANTIZED_LAYERS)
    model.save(path)


class Runner:
    """Loads the saved file back (allowlist + ``safe_mode=True``) and runs its decoded core."""

    def __init__(self, path: Path, ex: Exportable) -> None:
        import keras

        import graft.models.layers  # noqa: F401  (graft's registered layers)
        from graft.module.allowlist import check_allowlist

        check_allowlist(path)
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
        self.core = split_core(model, ex.kind, ex.kind == "image", ex.size)[0]

    def __call__(self, batch) -> np.ndarray:
        return np.asarray(self.core.predict_on_batch(batch))
