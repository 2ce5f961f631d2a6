"""ONNX export (tf2onnx through Keras) and its onnxruntime runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.errors import MissingDependencyError, received
from graft.export.graphs import Exportable


def require() -> None:
    """Raises ``MissingDependencyError`` (with the install line) without tf2onnx."""
    try:
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            "ONNX export needs tf2onnx and onnxruntime: pip install 'graft[onnx]'. "
            + received(format="onnx")
        ) from None


def write(ex: Exportable, dest: Path) -> None:
    """Writes the module's core as ONNX (images: float input in [0, 1]; texts: int32
    ``token_ids``, ``padding_mask``, ``segment_ids``; probabilities out). The labels go into
    the model's metadata as ``labels`` (one per line), a text model's vocabulary as ``vocab``."""
    require()
    import onnx

    ex.core(ex.prepare(["a"]) if ex.kind == "text" else np.zeros((1, *ex.size, 3), np.float32))
    ex.core.export(str(dest), format="onnx", verbose=False)  # (needs the built call above)
    model = onnx.load(str(dest))
    entry = model.metadata_props.add()
    entry.key, entry.value = "labels", "\n".join(ex.labels)
    if ex.preprocessor is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "vocab", "\n".join(ex.preprocessor.vocabulary)
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
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch) -> np.ndarray:
        if isinstance(batch, dict):  # text: the three int32 token arrays, by name
            feed = {name: next(v for k, v in batch.items() if k in name) for name in self.inputs}
        else:
            feed = {self.inputs[0]: batch.astype(np.float32)}
        return self.session.run(None, feed)[0]
