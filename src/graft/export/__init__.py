"""``graft.export``: a classifier module to SavedModel, TFLite (float, dynamic, float16,
int8), ONNX and TF.js, each re-measured in its own runtime.

Example:
    >>> report = graft.export("runs/digits/module", "saved_model,tflite",
    ...                       quantize="float,int8", out="export/digits")  # doctest: +SKIP
    >>> [(r.format, r.quantization, round(r.accuracy, 3)) for r in report.rows]  # doctest: +SKIP
    [('keras', 'float', 0.933), ('saved_model', 'float', 0.933), ('tflite', 'float', 0.933),
     ('tflite', 'int8', 0.927)]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import types
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

from graft._atomic import replace_dir
from graft.errors import InvalidArgumentError, ModuleExistsError, received
from graft.export.compare import ArtifactResult
from graft.export.formats import (
    FORMATS,
    INT8_IO,
    QUANTIZATION_NAMES,
    QUANTIZATIONS,
    artifact_name,
    parse_list,
)

REPORT_FILE = "export_report.json"
REPRESENTATIVE = 100


class AccuracyDropError(InvalidArgumentError):
    """An artifact lost more accuracy than ``max_accuracy_drop`` allows."""


@dataclass(frozen=True)
class ExportReport:
    """What was exported and how each artifact measured."""

    directory: Path
    module: str
    examples: int
    rows: tuple[ArtifactResult, ...]
    sparsity: dict[str, dict] = field(default_factory=dict)  # layers with >= 1% zero weights
    metric: str = "accuracy"  # what ``ArtifactResult.accuracy`` holds (policies: mean return)
    evaluated_on: str = ""  # what the artifacts were measured on, in words

    def to_dict(self) -> dict:
        return {
            "module": self.module,
            "examples": self.examples,
            "metric": self.metric,
            "evaluated_on": self.evaluated_on or f"{self.examples} test examples",
            "artifacts": [r.to_dict() for r in self.rows],
            "sparsity": self.sparsity,
        }


def _plan(formats: list[str], quantizations: list[str]) -> list[tuple[str, str]]:
    plan = []
    for fmt in formats:
        wanted = [q for q in quantizations if q in QUANTIZATIONS[fmt]]
        plan += [(fmt, q) for q in wanted or ["float"]]
    return plan


def _data(module_dir: Path, data) -> dict:
    """``test`` (evaluation), and ``train``/``val`` when the module sits in its run folder."""
    from graft.evaluation.classifier import read_labelled

    run_dir = module_dir.parent
    if (run_dir / "splits.json").is_file():
        from graft.training.run import _read_split

        parts = {name: _read_split(run_dir, name) for name in ("train", "val", "test")}
        if data is not None:
            parts["test"] = read_labelled(data)
        elif not len(parts["test"]):  # a cross-validated run's module has no test split
            parts["test"] = parts["val"]
        return parts
    if data is not None:
        return {"test": read_labelled(data)}
    else:
        raise InvalidArgumentError(
            "Every artifact is re-evaluated, so graft export needs labelled examples: pass "
            "--data FOLDER_OR_TABLE, or export a module inside its run folder (which has "
            f"splits.json). {received(module=str(module_dir))}"
        )


def export(
    module: str | os.PathLike,
    formats: str | list[str] = "saved_model,tflite,onnx",
    *,
    out: str | os.PathLike,
    quantize: str | list[str] = "float",
    data: str | os.PathLike | None = None,
    int8_io: str = "float32",
    allow_float_fallback: bool = False,
    overwrite: bool = False,
    max_accuracy_drop: float | None = None,
) -> ExportReport:
    """Exports a classifier module and measures every artifact in its runtime.

    Args:
        module: a classifier module directory or handle.
        formats: any of saved_model, tflite, onnx, tfjs (comma-separated or a list).
        out: the export directory (created atomically).
        quantize: any of float, dynamic, float16, int8; each applies to the formats that
            support it (TFLite takes all four; the others are float).
        data: labelled examples to evaluate on (default: the run's test split).
        int8_io: input/output type of int8 TFLite files: float32, int8 or uint8.
        allow_float_fallback: keep ops without integer kernels in float.
        overwrite: replace an existing ``out``.
        max_accuracy_drop: fail (writing nothing) when an artifact's accuracy is more than this
            many points below the float Keras model's.

    Returns:
        The ``ExportReport`` (also written as ``out/export_report.json``).

    Raises:
        InvalidArgumentError: unknown format or quantization, no data, or (AccuracyDropError)
            an artifact below ``max_accuracy_drop``.
        ModuleExistsError: ``out`` exists and ``overwrite`` is false.
        MissingDependencyError: the onnx converter missing, with the way to get it.
    """
    from graft.handles import resolve

    fmts = parse_list(formats, FORMATS, "format")
    quants = parse_list(quantize, QUANTIZATION_NAMES, "quantization")
    if int8_io not in INT8_IO:
        raise InvalidArgumentError(
            f"int8 input/output type is one of {', '.join(INT8_IO)}. {received(int8_io=int8_io)}"
        )
    out = Path(out)
    if out.exists() and not overwrite:
        raise ModuleExistsError(
            f"{out} already exists; pass --overwrite (overwrite=True) to replace it. "
            f"{received(out=str(out))}"
        )
    module_dir = resolve(module)
    plan = _plan(fmts, quants)
    policy = _is_policy(module_dir)
    multitask = not policy and _is_multitask(module_dir)
    parts = {} if policy or multitask else _data(module_dir, data)
    if any(q == "qat" for _, q in plan) and "train" not in parts:
        raise InvalidArgumentError(
            "Quantization-aware training (qat) trains the head on the run's training split: "
            "export a module inside its run folder (runs/NAME/module). "
            f"{received(module=str(module_dir), quantize=quantize)}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        if policy:
            report = _export_policy(tmp, module_dir, plan, int8_io, allow_float_fallback)
        elif multitask:
            report = _export_tasks(tmp, module_dir, plan, data)
        else:
            report = _export_into(tmp, module_dir, plan, parts, int8_io, allow_float_fallback)
        keras_accuracy = report.rows[0].accuracy
        if max_accuracy_drop is not None:
            worse = [r for r in report.rows if r.accuracy_change < -max_accuracy_drop]
            if worse:
                table = "; ".join(
                    f"{r.format}/{r.quantization} {r.accuracy:.4f} ({r.accuracy_change:+.2f})"
                    for r in worse
                )
                raise AccuracyDropError(
                    f"Artifacts lost more than {max_accuracy_drop} points against the float "
                    f"Keras model ({keras_accuracy:.4f}): {table}. Nothing was written. "
                    f"{received(max_accuracy_drop=max_accuracy_drop)}"
                )
        (tmp / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
        page = {**report.to_dict(), "out": str(out), "created": time.strftime("%Y-%m-%d %H:%M")}
        from graft.evaluation.report import write_export_page

        write_export_page(tmp, page)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _add_to_run_report(module_dir, page)
    return replace(report, directory=out)


def _add_to_run_report(module_dir: Path, page: dict) -> None:
    """Lists the export in its run's ``report.html`` (latest export per directory)."""
    from graft.evaluation.report import add_exports
    from graft.training.loop import write_json

    run_dir = module_dir.parent
    if module_dir.name != "module" or not (run_dir / "report.html").is_file():
        return
    record = run_dir / "exports.json"
    exports = json.loads(record.read_text()) if record.is_file() else []
    key = str(Path(page["out"]).resolve())
    exports = [e for e in exports if str(Path(e["out"]).resolve()) != key] + [page]
    write_json(record, exports)
    add_exports(run_dir / "report.html", exports)


def _is_policy(module_dir: Path) -> bool:
    from graft.module.manifest import Manifest

    return Manifest.read(module_dir / "manifest.json").task == "rl-policy"


def _is_multitask(module_dir: Path) -> bool:
    from graft.module.manifest import Manifest

    return bool(Manifest.read(module_dir / "manifest.json").heads)


def _export_tasks(tmp, module_dir, plan, data) -> ExportReport:
    """A multi-task classifier: see ``graft.export.tasks``."""
    from graft.export import tasks
    from graft.module.manifest import Manifest

    rows, count, evaluated = tasks.export_into(
        tmp, module_dir, plan, tasks.test_split(module_dir, data)
    )
    name = Manifest.read(module_dir / "manifest.json").name
    return ExportReport(
        tmp, name, count, tuple(rows), metric="mean accuracy over tasks", evaluated_on=evaluated
    )


def _export_policy(tmp, module_dir, plan, int8_io, allow_float_fallback) -> ExportReport:
    """A reinforcement-learning policy: see ``graft.export.policy``."""
    from graft.export import policy
    from graft.module.manifest import Manifest

    rows, count = policy.export_into(tmp, module_dir, plan, int8_io, allow_float_fallback)
    name = Manifest.read(module_dir / "manifest.json").name
    return ExportReport(
        tmp,
        name,
        count,
        tuple(rows),
        metric="mean return",
        evaluated_on=f"{count} observations (action agreement) and {policy.EPISODES} greedy "
        "episodes (mean return, the same seeds for every artifact)",
    )


def _export_into(tmp, module_dir, plan, parts, int8_io, allow_float_fallback):
    import numpy as np

    from graft.data.images import image_bytes
    from graft.export import compare, keras_file, saved_model, tflite
    from graft.export import onnx as onnx_export
    from graft.export.graphs import load_exportable

    ex = load_exportable(module_dir)
    stringless = sorted({fmt for fmt, _ in plan if fmt != "saved_model"})
    if ex.core is None and stringless:
        raise InvalidArgumentError(
            f"The {', '.join(stringless)} format(s) take token ids, not strings, so graft splits "
            f"the tokenizer off the network; this text module's network cannot run without "
            f"strings ({ex.no_core.split(' Received:')[0]}). Export it as saved_model, which "
            f"takes strings. {received(formats=stringless)}"
        )
    test = parts["test"]
    index = {name: i for i, name in enumerate(ex.labels)}
    unknown = sorted(set(test.class_names) - set(index))
    if unknown:
        raise InvalidArgumentError(
            f"The evaluation data has classes the module does not know. {received(unknown=unknown)}"
        )
    labels = np.array([index[test.class_names[y]] for y in test.labels])
    if ex.kind == "image":  # decoded once; the runners of the core take the arrays
        raw = [image_bytes(p) for p in test.items]
        decoded = ex.prepare(test.items)

        def core(run):
            return run

    else:  # texts, tokenized per batch for the runners of the core
        raw = decoded = list(test.items)

        def core(run):
            return lambda batch: run(ex.tokenize(batch))

    if ex.core is None:  # strings in: the module's own model is the reference

        def keras_run(batch):
            import tensorflow as tf

            return np.asarray(ex.raw.predict_on_batch(tf.constant(list(batch), tf.string)))

    else:
        keras_run = core(lambda batch: np.asarray(ex.core.predict_on_batch(batch)))

    reference = compare.batched(keras_run, decoded)
    reference_accuracy = float((reference.argmax(1) == labels).mean())
    keras_path = module_dir / "model.keras"
    rows = [
        compare.measure(
            "keras", "float", keras_path, keras_run, decoded, labels, reference, reference_accuracy
        )
    ]
    representative = None
    for fmt, quant in plan:
        path = tmp / artifact_name(fmt, quant)
        if fmt == "saved_model":
            saved_model.write(ex, path)
            runner = saved_model.Runner(path)
            inputs = raw
        elif fmt == "tflite":
            if quant in ("int8", "qat") and representative is None:
                picks = _representative(parts.get("train"), test)
                if ex.kind == "image":
                    representative = ex.prepare(picks)
                else:  # one tokenized example per calibration step
                    representative = [ex.prepare([text]) for text in picks]
            if quant == "qat":
                flat = _qat(ex, parts, representative, int8_io, allow_float_fallback)
            else:
                flat = tflite.convert(ex, quant, representative, int8_io, allow_float_fallback)
            vocabulary = ex.preprocessor.vocabulary if ex.preprocessor is not None else None
            path.write_bytes(tflite.attach_labels(flat, ex.labels, vocabulary))
            runner, inputs = core(tflite.Runner(path)), decoded
        elif fmt == "keras":
            keras_file.write(ex, quant, path)
            runner, inputs = core(keras_file.Runner(path, ex)), decoded
        elif fmt == "onnx":
            onnx_export.write(ex, path)
            runner, inputs = core(onnx_export.Runner(path)), decoded
        else:  # tfjs: a graph-model folder with its demo page
            from graft.export import tfjs

            tfjs.write(ex, path)
            runner, inputs = core(tfjs.Runner(path)), decoded
        rows.append(
            compare.measure(fmt, quant, path, runner, inputs, labels, reference, reference_accuracy)
        )
    from graft.training.pruning import sparsity_by_layer

    sparsity = sparsity_by_layer(ex.raw, minimum=0.01)
    return ExportReport(tmp, ex.name, len(labels), tuple(rows), sparsity)


def _qat(ex, parts, representative, int8_io, allow_float_fallback) -> bytes:
    """int8 TFLite of the module with its head trained quantization-aware (``qat.py``)."""
    import tempfile

    import numpy as np

    from graft.export import qat, tflite

    backbone_core, head = qat.split_head(ex.core)
    backbone = replace(ex, core=backbone_core)
    flat = tflite.convert(backbone, "int8", representative, "float32", allow_float_fallback)
    index = {name: i for i, name in enumerate(ex.labels)}
    with tempfile.TemporaryDirectory(prefix="graft-qat-") as tmp:
        path = Path(tmp) / "backbone_int8.tflite"
        path.write_bytes(flat)
        runner = tflite.Runner(path)

        def features(part):
            chunks = [
                runner(ex.prepare(part.items[i : i + 64])) for i in range(0, len(part.items), 64)
            ]
            labels = np.array([index[part.class_names[y]] for y in part.labels])
            return np.concatenate(chunks), labels

        f_train, y_train = features(parts["train"])
        f_val, y_val = features(parts["val"]) if len(parts["val"].items) else (f_train, y_train)
    result = qat.train_head(backbone_core, head, f_train, y_train, f_val, y_val)
    trained = replace(ex, core=result.core)
    return tflite.convert(trained, "int8", representative, int8_io, allow_float_fallback)


def _representative(train, test) -> list[str]:
    """Up to 100 training files, spread over the classes (evenly spaced in the split)."""
    source = train if train is not None else test
    items = list(source.items)
    step = max(1, len(items) // REPRESENTATIVE)
    return items[::step][:REPRESENTATIVE]


__all__ = ["AccuracyDropError", "ExportReport", "export"]


class _CallableModule(types.ModuleType):
    """``graft.export(...)`` calls ``graft.export.export``: once ``graft.export`` is imported
    the package attribute is this module, so the module itself is made callable."""

    def __call__(self, *args, **kwargs) -> ExportReport:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
