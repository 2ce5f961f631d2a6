"""What a served version is: named signatures that turn JSON values into arrays and run
batches. Loaded from a graft module (``manifest.json``) or a SavedModel (``saved_model.pb``).

A graft classifier module serves ``serving_default``: ``inputs`` takes encoded images as
``{"b64": ...}`` (or texts), and, for images, also decoded RGB pixels in [0, 1] of the
module's size, as the seed tutorials' clients send them (``x_test[0:1].tolist()``); a
``serving_pixels`` signature documents that float form. Outputs are ``probabilities``,
``classes`` (the top-5 label names) and ``scores``, the same as ``graft export``'s SavedModel.
A policy module (``graft rl train``) serves ``observation`` -> ``q_values`` and ``action``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.serve.status import ServingError
from graft.serve.tensors import DTYPES, TensorInfo, to_array

log = logging.getLogger(__name__)
PREDICT = "tensorflow/serving/predict"
CLASSIFY = "tensorflow/serving/classify"
TOP_K = 5


@dataclass
class Signature:
    """One entry of a version's signature map.

    Args:
        name: ``serving_default`` ...
        inputs: what clients send.
        outputs: what they get back.
        run: ``{batch input name: array}`` -> ``{output name: array}`` on a batch.
        convert: ``(input name, JSON value)`` -> array fed to ``run`` (after checks); the
            default is ``to_array`` against ``inputs``.
        method_name: TF Serving's method (predict or classify).
        batchable: whether requests may be concatenated along the first dimension.
    """

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    run: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
    convert: Callable[[str, object], np.ndarray] | None = None
    method_name: str = PREDICT
    batchable: bool = True

    def arrays(self, values: dict[str, object]) -> dict[str, np.ndarray]:
        out = {}
        for name, value in values.items():
            where = f"Input {name!r} of signature {self.name!r}"
            if self.convert is not None:
                out[name] = self.convert(name, value)
            else:
                out[name] = to_array(value, self.inputs[name], where)
        rows = {len(a) if a.ndim else 0 for a in out.values()}
        if len(rows) != 1 or 0 in rows:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Every input needs the same batch size, at least 1. "
                f"Received: batch_sizes={ {k: (len(a) if a.ndim else 0) for k, a in out.items()} }",
            )
        return out

    def metadata(self) -> dict:
        return {
            "inputs": {k: v.metadata() for k, v in self.inputs.items()},
            "outputs": {k: v.metadata() for k, v in self.outputs.items()},
            "method_name": self.method_name,
            "defaults": {},
        }


@dataclass
class Servable:
    """A loaded version: its signatures and a warm-up call."""

    signatures: dict[str, Signature]
    warmup: Callable[[], None] | None = None

    def signature(self, name: str | None) -> Signature:
        name = name or "serving_default"
        if name not in self.signatures:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Serving signature name: {name!r} not found in signature def. Available: "
                f"{sorted(self.signatures)}. Received: signature_name={name!r}",
            )
        return self.signatures[name]


def _top_k(probabilities: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    k = min(TOP_K, probabilities.shape[-1])
    index = np.argsort(-probabilities, axis=-1, kind="stable")[:, :k]
    return {
        "probabilities": probabilities,
        "classes": labels[index],
        "scores": np.take_along_axis(probabilities, index, axis=-1),
    }


def _image_convert(size: tuple[int, int], sig_name: str) -> Callable:
    from graft.data.images import decode_batch

    h, w = size
    pixels = TensorInfo("inputs", "float32", (-1, h, w, 3))

    def convert(name: str, value) -> np.ndarray:
        where = f"Input {name!r} of signature {sig_name!r}"
        leaves = value if isinstance(value, list) else [value]
        first = leaves[0] if leaves else None
        while isinstance(first, list):
            first = first[0] if first else None
        if isinstance(first, int | float) and not isinstance(first, bool):
            arr = to_array(value, pixels, where + " (decoded pixels)")
            if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"{where}: decoded pixels are RGB floats in [0, 1] (divide 0-255 values "
                    f'by 255), or send encoded images as {{"b64": ...}}. '
                    f"Received: min={float(arr.min())}, max={float(arr.max())}",
                )
            return arr
        blobs = to_array(value, TensorInfo("inputs", "string", (-1,)), where)
        if not len(blobs):
            raise ServingError(
                "INVALID_ARGUMENT", f"{where} needs at least one image. Received: value=[]"
            )
        try:
            return decode_batch(list(blobs), (h, w))
        except Exception:  # TensorFlow raises InvalidArgumentError for bad images
            pass
        for i, blob in enumerate(blobs):  # name the first bad one
            try:
                decode_batch([blob], (h, w))
            except Exception as exc:
                lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
                reason = next(
                    (ln for ln in lines if "image" in ln.lower()), lines[-1] if lines else ""
                )
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"{where}: item {i} is not an image TensorFlow can decode; send JPEG, PNG, "
                    f'GIF or BMP bytes as {{"b64": ...}}. Received: {len(blob)} bytes '
                    f"starting {blob[:8]!r} ({reason[:160]})",
                ) from None
        raise ServingError("INTERNAL", f"{where}: decoding failed. Received: items={len(blobs)}")

    return convert


def _text_convert(sig_name: str) -> Callable:
    info = TensorInfo("inputs", "string", (-1,))

    def convert(name: str, value) -> np.ndarray:
        where = f"Input {name!r} of signature {sig_name!r}"
        blobs = to_array(value, info, where)
        try:
            return np.array([b.decode("utf-8") for b in blobs], dtype=object)
        except UnicodeDecodeError:
            raise ServingError(
                "INVALID_ARGUMENT", f"{where} takes UTF-8 text. Received: bytes that are not UTF-8"
            ) from None

    return convert


def load_module(path: Path, runtime: str = "auto") -> Servable:
    """A graft module version (checksums, class allowlist, ``safe_mode``).

    Args:
        runtime: ``auto`` (TFLite/XNNPACK for image modules, Keras for text), ``tflite`` or
            ``keras``.
    """
    import tensorflow as tf

    from graft.export.graphs import core_of
    from graft.module.io import load

    loaded = load(path)
    manifest = loaded.manifest
    kind = manifest.inputs.kind
    if kind == "observation":
        return _policy(loaded.model, manifest)
    if manifest.heads:
        return _tasks(loaded.model, manifest)
    classifier = manifest.task.endswith("classifier")
    labels = np.array(list(manifest.labels or ()), dtype=object)
    out_name = (
        "probabilities" if classifier else ("feature_vector" if kind == "image" else "embedding")
    )
    dim = manifest.outputs.dim
    if classifier:
        outputs = {
            "probabilities": TensorInfo("probabilities", "float32", (-1, dim)),
            "classes": TensorInfo("classes", "string", (-1, min(TOP_K, dim))),
            "scores": TensorInfo("scores", "float32", (-1, min(TOP_K, dim))),
        }
    else:
        outputs = {out_name: TensorInfo(out_name, "float32", (-1, dim))}

    def finish(result: np.ndarray) -> dict[str, np.ndarray]:
        result = np.asarray(result, np.float32)
        return _top_k(result, labels) if classifier else {out_name: result}

    if kind == "text":
        model = loaded.model
        call = tf.function(model, input_signature=[tf.TensorSpec([None], tf.string)])

        def run(batch):
            return finish(call(tf.constant(list(batch["inputs"]), tf.string)).numpy())

        return _text_servable(run, outputs)

    size = tuple(manifest.inputs.size)
    from graft._engines import core_engine

    core = core_of(loaded.model, kind, manifest.inputs.encoded, size)
    engine = core_engine(core, manifest, runtime)

    def run(batch):
        return finish(engine(batch["inputs"]))

    return _image_servable(run, outputs, size, manifest.inputs.encoded)


def _text_servable(run, outputs: dict[str, TensorInfo]) -> Servable:
    """``serving_default``: a ``(batch,)`` string tensor ``inputs`` in, ``outputs`` out."""
    sig = Signature(
        "serving_default",
        {"inputs": TensorInfo("inputs", "string", (-1,))},
        outputs,
        run,
        convert=_text_convert("serving_default"),
    )
    return Servable(
        {"serving_default": sig},
        warmup=lambda: run({"inputs": np.array(["warm-up"], dtype=object)}),
    )


def _image_servable(run, outputs: dict[str, TensorInfo], size, encoded: bool) -> Servable:
    """``serving_default`` (encoded images when the module takes them, else pixels) and
    ``serving_pixels`` (float RGB in [0, 1]); ``run`` takes the decoded pixels."""
    signatures = {}
    for name in ("serving_default", "serving_pixels"):
        declared = (
            TensorInfo("inputs", "string", (-1,))
            if name == "serving_default" and encoded
            else TensorInfo("inputs", "float32", (-1, *size, 3))
        )
        signatures[name] = Signature(
            name, {"inputs": declared}, outputs, run, convert=_image_convert(size, name)
        )
    return Servable(
        signatures,
        warmup=lambda: run({"inputs": np.zeros((1, *size, 3), np.float32)}),
    )


def _policy(model, manifest) -> Servable:
    """A reinforcement-learning policy: ``observation`` float32 ``(batch, *shape)`` in,
    ``q_values`` and the greedy ``action`` out."""
    import tensorflow as tf

    shape = tuple(manifest.inputs.shape)
    call = tf.function(
        lambda obs: model(obs, training=False),
        input_signature=[tf.TensorSpec([None, *shape], tf.float32)],
    )

    def run(batch):
        out = call(tf.constant(batch["observation"], tf.float32))
        return {"q_values": out["q_values"].numpy(), "action": out["action"].numpy()}

    sig = Signature(
        "serving_default",
        {"observation": TensorInfo("observation", "float32", (-1, *shape))},
        {
            "q_values": TensorInfo("q_values", "float32", (-1, manifest.outputs.dim)),
            "action": TensorInfo("action", "int32", (-1,)),
        },
        run,
    )
    return Servable(
        {"serving_default": sig},
        warmup=lambda: run({"observation": np.zeros((1, *shape), np.float32)}),
    )


def _tasks(model, manifest) -> Servable:
    """A multi-task classifier: one output per task (its probabilities), named by the task, so
    a row-format predict answers ``{"predictions": [{"topic": [...], "sentiment": [...]}]}``.
    Runs in Keras (compiled), as TFLite engines here take one output."""
    import tensorflow as tf

    heads = {h.name: len(h.labels) for h in manifest.heads}
    outputs = {t: TensorInfo(t, "float32", (-1, n)) for t, n in heads.items()}
    if manifest.inputs.kind == "text":
        call = tf.function(model, input_signature=[tf.TensorSpec([None], tf.string)])

        def run(batch):
            out = call(tf.constant(list(batch["inputs"]), tf.string))
            return {t: out[t].numpy() for t in heads}

        return _text_servable(run, outputs)
    from graft.export.tasks import tasks_core

    size = tuple(manifest.inputs.size)
    core, _ = tasks_core(model, manifest)
    h, w = size
    compiled = tf.function(core, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)])

    def run_images(batch):
        out = compiled(tf.constant(batch["inputs"], tf.float32))
        return {t: out[t].numpy() for t in heads}

    return _image_servable(run_images, outputs, size, manifest.inputs.encoded)


def _tensor_info(name: str, proto) -> TensorInfo:
    from tensorflow.python.framework import dtypes

    dtype = dtypes.as_dtype(proto.dtype).name
    shape = None
    if not proto.tensor_shape.unknown_rank:
        shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    return TensorInfo(name, dtype, shape, proto.name)


def load_saved_model(path: Path) -> Servable:
    """A SavedModel version: its signature defs as in ``saved_model.pb``, run by TensorFlow."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    try:
        import tensorflow_text  # noqa: F401  (registers the ops text SavedModels use)
    except ImportError:
        pass
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    graph = next(
        (m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags), proto.meta_graphs[0]
    )
    loaded = tf.saved_model.load(str(path), tags=["serve"])
    signatures = {}
    for name, sig_def in graph.signature_def.items():
        if name.startswith("__") or name not in loaded.signatures:
            continue
        fn = loaded.signatures[name]
        inputs = {k: _tensor_info(k, v) for k, v in sig_def.inputs.items()}
        outputs = {k: _tensor_info(k, v) for k, v in sig_def.outputs.items()}
        unsupported = [k for k, v in {**inputs, **outputs}.items() if v.dtype not in DTYPES]
        if unsupported:
            log.warning("signature %s of %s skipped: dtypes of %s", name, path, unsupported)
            continue

        def run(batch, fn=fn, inputs=inputs):
            feed = {
                k: tf.constant(v, dtype=tf.string if inputs[k].dtype == "string" else None)
                for k, v in batch.items()
            }
            return {k: np.asarray(v) for k, v in fn(**feed).items()}

        batchable = all(
            info.shape is not None and len(info.shape) > 0 and info.shape[0] == -1
            for info in [*inputs.values(), *outputs.values()]
        )
        signatures[name] = Signature(
            name,
            inputs,
            outputs,
            run,
            method_name=sig_def.method_name or PREDICT,
            batchable=batchable,
        )
    if not signatures:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"The SavedModel has no servable signature. Received: path={str(path)!r}",
        )
    return Servable(signatures, warmup=_warmup(signatures))


def _warmup(signatures: dict[str, Signature]) -> Callable[[], None] | None:
    """One zero example through ``serving_default`` when its inputs are numeric with known
    dimensions (string inputs cannot be made up)."""
    sig = signatures.get("serving_default")
    if sig is None or not sig.batchable:
        return None
    if any(i.dtype == "string" or -1 in i.shape[1:] for i in sig.inputs.values()):
        return None
    return lambda: sig.run({k: np.zeros((1, *i.shape[1:]), i.dtype) for k, i in sig.inputs.items()})


def load_version(path: Path, runtime: str = "auto") -> Servable:
    """Loads whatever the version directory holds.

    Raises:
        ServingError: NOT_FOUND when it holds neither a module nor a SavedModel.
    """
    if (path / "manifest.json").is_file():
        return load_module(path, runtime)
    if (path / "saved_model.pb").is_file():
        return load_saved_model(path)
    raise ServingError(
        "NOT_FOUND",
        "A version directory holds a graft module (manifest.json) or a SavedModel "
        f"(saved_model.pb). Received: path={str(path)!r}, "
        f"files={sorted(p.name for p in path.iterdir())[:10] if path.is_dir() else []}",
    )
