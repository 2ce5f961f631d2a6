"""SavedModel export: raw inputs in (encoded image bytes or strings), labels out."""

from __future__ import annotations

import shutil
from pathlib import Path

from graft.export.graphs import Exportable

TOP_K = 5


def write(ex: Exportable, dest: Path) -> None:
    """Writes a SavedModel whose ``serving_default`` takes ``inputs``: a ``(batch,)`` string
    tensor, and returns ``probabilities`` ``(batch, classes)``, ``classes`` (the top-5 label
    names, best first) and ``scores`` (their probabilities). ``assets/labels.txt`` holds the
    label names in index order."""
    import tensorflow as tf

    labels = tf.constant(list(ex.labels))
    k = min(TOP_K, len(ex.labels))
    model = ex.raw

    def serve(inputs):
        probabilities = model(inputs, training=False)
        scores, index = tf.math.top_k(probabilities, k=k)
        return {
            "probabilities": probabilities,
            "classes": tf.gather(labels, index),
            "scores": scores,
        }

    write_strings_in(model, serve, dest, {"labels.txt": ex.labels})


def write_strings_in(model, serve, dest: Path, assets: dict[str, tuple[str, ...] | list[str]]):
    """A SavedModel of ``model`` whose ``serving_default`` is ``serve`` of ``inputs``, a
    ``(batch,)`` string tensor, with text files of lines (``assets``) in ``assets/``."""
    import keras
    import tensorflow as tf

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None], tf.string, name="inputs")],
    )
    archive.write_out(str(dest), verbose=False)
    (dest / "assets").mkdir(exist_ok=True)
    for name, lines in assets.items():
        (dest / "assets" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


class Runner:
    """Runs an exported SavedModel in TensorFlow, as TF Serving would."""

    takes_raw = True

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._tf = tf
        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]

    def __call__(self, inputs):
        return self.fn(inputs=self._tf.constant(list(inputs)))["probabilities"].numpy()

    def top_classes(self, inputs) -> list[list[str]]:
        out = self.fn(inputs=self._tf.constant(list(inputs)))
        return [[c.decode() for c in row] for row in out["classes"].numpy()]


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
