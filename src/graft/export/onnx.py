"""ONNX export (tf2onnx through Keras) and its onnxruntime runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, MissingDependencyError, received
from graft.export.graphs import Exportable


def write(ex: Exportable, dest: Path) -> None:
    """Writes the module's core as ONNX (float input in [0, 1], probabilities out); the labels
    go into the model's metadata as ``labels`` (one per line)."""
    try:
        import onnx
        import tf2onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs tf2onnx and onnxruntime: pip install 'graft[onnx]'. "
            + received(format="onnx")
        ) from None
    if ex.kind != "image":
        raise InvalidArgumentError(
            "ONNX export of text classifiers is not available: their tokenizer runs as "
            f"TensorFlow string ops, which ONNX lacks. {received(kind=ex.kind)}"
        )
    ex.core(np.zeros((1, *ex.size, 3), np.float32))  # Keras' ONNX export needs a built call
    ex.core.export(str(dest), format="onnx", verbose=False)
    model = onnx.load(str(dest))
    entry = model.metadata_props.add()
    entry.key, entry.value = "labels", "\n".join(ex.labels)
    onnx.save(model, str(dest))


def read_labels(path: str | Path) -> list[str]:
    """The label names stored in a graft ONNX file's metadata."""
    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return meta.custom_metadata_map["labels"].splitlines()


class Runner:
    """Runs an ONNX file in onnxruntime (CPU)."""

    takes_raw = False

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: batch.astype(np.float32)})[0]
