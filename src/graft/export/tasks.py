"""Exporting a multi-task classifier: one output per task, named by the task, in every format.

- SavedModel: ``serving_default`` takes ``inputs`` (a ``(batch,)`` string tensor) and returns
  one probabilities tensor per task, keyed by the task name; ``assets/labels_<task>.txt``.
- TFLite (float, dynamic, float16) and ONNX: the float core (decoded images, or token ids) with
  one named output per task; the labels of every task travel inside the file.

Each artifact is re-measured per task on the run's test split (known labels only): the report
row holds the mean accuracy over the tasks, the lowest top-1 agreement and the largest
probability difference against the Keras model.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received

FLOAT_QUANTIZATIONS = ("float", "dynamic", "float16")


def tasks_core(model, manifest):
    """``(core, preprocessor)``: the network after decoding (images: float ``(n, h, w, 3)``;
    texts: BERT's three int32 token arrays) with ``{task: probabilities}`` out."""
    import keras

    heads = [h.name for h in manifest.heads]
    layers = {layer.name: layer for layer in model.layers}
    head_layers = {t: layers[f"head_{t}"] for t in heads}
    if manifest.inputs.kind == "image":
        encoder = next(
            layer
            for layer in model.layers
            if isinstance(layer, keras.Model) and not layer.name.startswith("head_")
        )  # after DecodeImage: the backbone
        inputs = keras.Input((*manifest.inputs.size, 3), name="image")
        features = encoder(inputs)
        preprocessor = None
    else:
        from graft.models.text import TEXT_INPUTS, split_encoder

        encoder = next(
            layer
            for layer in model.layers
            if not isinstance(layer, keras.layers.InputLayer) and not layer.name.startswith("head_")
        )
        preprocessor, body = split_encoder(encoder)
        inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in TEXT_INPUTS}
        features = body(inputs)
    outputs = {t: head_layers[t](features) for t in heads}
    return keras.Model(inputs, outputs, name="multitask_core"), preprocessor


def export_into(tmp: Path, module_dir: Path, plan, test) -> tuple[list, int, str]:
    """Writes every (format, quantization) of ``plan`` into ``tmp`` and measures it.

    Args:
        test: the test split (``TaskData``) with each task's labels.

    Returns:
        ``(rows, examples, evaluated_on)``.
    """
    from graft.data.images import image_bytes, load_images
    from graft.export.formats import artifact_name
    from graft.module.io import load

    loaded = load(module_dir)
    manifest = loaded.manifest
    heads = {h.name: list(h.labels) for h in manifest.heads}
    for fmt, quant in plan:
        if fmt not in ("saved_model", "tflite", "onnx") or (
            fmt == "tflite" and quant not in FLOAT_QUANTIZATIONS
        ):
            raise InvalidArgumentError(
                "A multi-task module exports as saved_model, onnx and tflite (float, dynamic, "
                f"float16); int8 calibration and TF.js take one output. "
                f"{received(format=fmt, quantization=quant)}"
            )
    core, preprocessor = tasks_core(loaded.model, manifest)
    kind = manifest.inputs.kind
    items = list(test.items)
    if kind == "image":
        raw = [image_bytes(p) for p in items]
        decoded = load_images(items, tuple(manifest.inputs.size))
        prepare = lambda batch: batch  # noqa: E731
    else:
        raw = decoded = items
        prepare = lambda batch: _tokenize(preprocessor, batch)  # noqa: E731

    def keras_run(batch):
        out = core.predict_on_batch(prepare(batch))
        return {t: np.asarray(out[t]) for t in heads}

    reference = _batched(keras_run, decoded)
    truth = {t: np.asarray(test.labels[t]) for t in heads}
    rows = [
        _row("keras", "float", module_dir / "model.keras", keras_run, decoded, truth, reference)
    ]
    for fmt, quant in plan:
        path = tmp / artifact_name(fmt, quant)
        if fmt == "saved_model":
            write_saved_model(loaded.model, heads, path)
            runner, inputs = SavedModelRunner(path, heads), raw
        elif fmt == "tflite":
            path.write_bytes(_attach(_tflite(core, quant), heads, preprocessor))
            tfl = TFLiteRunner(path, heads)
            runner, inputs = (lambda batch, r=tfl: r(prepare(batch))), decoded
        else:
            _onnx(core, kind, manifest, heads, preprocessor, path)
            onx = OnnxRunner(path, heads)
            runner, inputs = (lambda batch, r=onx: r(prepare(batch))), decoded
        rows.append(_row(fmt, quant, path, runner, inputs, truth, reference))
    evaluated = (
        f"{len(items)} test examples; accuracy is the mean over the tasks "
        f"({', '.join(heads)}), each on its known labels"
    )
    return rows, len(items), evaluated


def _tokenize(preprocessor, texts) -> dict:
    out = preprocessor(np.asarray(list(texts), dtype=object))
    arrays = {k: np.asarray(v).astype("int32") for k, v in out.items()}
    length = max(1, int(arrays["padding_mask"].sum(1).max()))
    return {k: v[:, :length] for k, v in arrays.items()}


def _batched(run, inputs, batch: int = 32) -> dict[str, np.ndarray]:
    parts = [run(inputs[i : i + batch]) for i in range(0, len(inputs), batch)]
    return {t: np.concatenate([p[t] for p in parts]) for t in parts[0]}


def _row(fmt, quant, path, run, inputs, truth, reference):
    from graft.export.compare import ArtifactResult, sizes, timing

    out = _batched(run, inputs)
    accuracies, agreements, diffs = [], [], []
    for task, labels in truth.items():
        known = labels >= 0
        accuracies.append(float((out[task].argmax(1)[known] == labels[known]).mean()))
        agreements.append(float((out[task].argmax(1) == reference[task].argmax(1)).mean()))
        diffs.append(float(np.abs(out[task] - reference[task]).max()))
    reference_accuracy = [
        float((reference[t].argmax(1)[truth[t] >= 0] == truth[t][truth[t] >= 0]).mean())
        for t in truth
    ]
    size, gz = sizes(path)
    latency, throughput = timing(run, inputs)
    return ArtifactResult(
        format=fmt,
        quantization=quant,
        path=str(path),
        size_bytes=size,
        gzip_bytes=gz,
        accuracy=float(np.mean(accuracies)),
        accuracy_change=100 * float(np.mean(accuracies) - np.mean(reference_accuracy)),
        top1_agreement=min(agreements),
        max_abs_diff=max(diffs),
        latency_p50_ms=latency,
        throughput=throughput,
    )


def write_saved_model(model, heads: dict[str, list[str]], dest: Path) -> None:
    """``serving_default``: ``inputs`` (strings) -> ``{task: probabilities}``."""
    from graft.export.saved_model import write_strings_in

    def serve(inputs):
        out = model(inputs, training=False)
        return {t: out[t] for t in heads}

    write_strings_in(model, serve, dest, {f"labels_{t}.txt": labels for t, labels in heads.items()})


class SavedModelRunner:
    def __init__(self, path: Path, heads) -> None:
        import tensorflow as tf

        self._tf = tf
        self.heads = list(heads)
        self.loaded = tf.saved_model.load(str(path))
        self.fn = self.loaded.signatures["serving_default"]

    def __call__(self, inputs) -> dict[str, np.ndarray]:
        out = self.fn(inputs=self._tf.constant(list(inputs)))
        return {t: out[t].numpy() for t in self.heads}


def _tflite(core, quantization: str) -> bytes:
    import tempfile

    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="graft-tflite-") as tmp:
        core.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantization in ("dynamic", "float16"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _attach(flatbuffer: bytes, heads, preprocessor) -> bytes:
    """``tasks.json`` (every task's labels) and ``vocab.txt`` (texts) appended as a zip."""
    buffer = io.BytesIO()
    buffer.write(flatbuffer)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("tasks.json", json.dumps(heads, indent=1))
        for task, labels in heads.items():
            archive.writestr(f"labels_{task}.txt", "\n".join(labels) + "\n")
        if preprocessor is not None:
            archive.writestr("vocab.txt", "\n".join(preprocessor.vocabulary) + "\n")
    return buffer.getvalue()


def _feed(names: list[str], batch) -> dict:
    """Inputs by name: the token arrays (texts) matched to the runtime's names, or the images."""
    if isinstance(batch, dict):
        return {name: next(v for k, v in batch.items() if k in name) for name in names}
    return {names[0]: np.asarray(batch, np.float32)}


class TFLiteRunner:
    """The TFLite signature runner: inputs and outputs by name."""

    def __init__(self, path: Path, heads) -> None:
        import os

        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
        self.runner = self.interpreter.get_signature_runner()
        details = self.runner.get_input_details()
        self.inputs = list(details)
        self.heads = list(heads)

    def __call__(self, batch) -> dict[str, np.ndarray]:
        feed = _feed(self.inputs, batch)
        out = self.runner(**feed)
        return {t: np.asarray(out[t]) for t in self.heads}


def _onnx(core, kind, manifest, heads, preprocessor, dest: Path) -> None:
    from graft.export import onnx as onnx_export

    onnx_export.require()
    import onnx

    sample = (
        _tokenize(preprocessor, ["a"])
        if kind == "text"
        else np.zeros((1, *manifest.inputs.size, 3), np.float32)
    )
    core(sample)
    core.export(str(dest), format="onnx", verbose=False)
    model = onnx.load(str(dest))
    entry = model.metadata_props.add()
    entry.key, entry.value = "tasks", json.dumps(heads)
    if preprocessor is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = "vocab", "\n".join(preprocessor.vocabulary)
    onnx.save(model, str(dest))


class OnnxRunner:
    def __init__(self, path: Path, heads) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.heads = list(heads)

    def __call__(self, batch) -> dict[str, np.ndarray]:
        feed = _feed(self.inputs, batch)
        values = self.session.run(None, feed)
        named = dict(zip(self.outputs, values, strict=True))
        return {
            t: named[next(n for n in self.outputs if n == t or n.startswith(t))] for t in self.heads
        }


def test_split(module_dir: Path, data):
    """The evaluation data of a multi-task module: its run's test split, or ``data`` (a text
    table with a column per task)."""
    from graft.data.tasks import TaskData, read_task_table
    from graft.module.manifest import Manifest

    manifest = Manifest.read(module_dir / "manifest.json")
    heads = [h.name for h in manifest.heads]
    if data is not None:
        if manifest.inputs.kind == "image":
            raise InvalidArgumentError(
                "Export a multi-task image module from its run folder (its test split is "
                f"re-measured); --data takes one label column. {received(data=str(data))}"
            )
        table = read_task_table(data, "text", heads)
        return table
    splits = module_dir.parent / "splits.json"
    if not splits.is_file():
        raise InvalidArgumentError(
            "Every artifact is re-evaluated: export a multi-task module inside its run folder "
            f"(which has splits.json), or pass --data. {received(module=str(module_dir))}"
        )
    saved = json.loads(splits.read_text())
    part = saved["test"]
    return TaskData(
        kind=saved["kind"],
        items=tuple(part["items"]),
        tasks=tuple(saved["tasks"]),
        labels={t: tuple(v) for t, v in part["labels"].items()},
        class_names={t: tuple(v) for t, v in saved["class_names"].items()},
        source=saved["source"],
    )
