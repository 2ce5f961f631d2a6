"""``graft predict --engine ray``: a classifier's predictions computed by TFLite Ray actors, and
predictions as a Parquet file (either engine)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received


def predict_ray(
    module: str | Path,
    inputs: Sequence[str],
    top_k: int = 3,
    *,
    address: str | None = None,
    actors: int | None = None,
    verbose: bool = False,
):
    """``graft.predict`` on a Ray cluster: the module's float-image core (after its
    ``DecodeImage`` layer) converted to TFLite once on the driver, images decoded with Pillow
    and run by actors that do not load TensorFlow. Same labels and probabilities as
    ``graft.predict`` (within 1e-4).

    Args:
        module: an image classifier module handle.
        inputs: image files and folders of them (searched recursively).
        top_k: (label, probability) pairs per prediction.
        address, actors, verbose: as for ``graft.batch.features.extract_features``.

    Returns:
        ``graft.inference.Predictions``.

    Raises:
        InvalidArgumentError: a text or multi-task module, or no readable image.
        MissingDependencyError: Ray is not installed.

    Example:
        >>> predict_ray("runs/flowers", ["a.jpg"], address="auto")[0].label  # doctest: +SKIP
        'tulips'
    """
    from graft._engines import core_key, tflite_file
    from graft.batch.features import expand_folders
    from graft.batch.session import ray_session, run_tflite_files
    from graft.export.graphs import core_of
    from graft.inference import Predictions, _rows, load_classifier, readable_inputs

    model = load_classifier(module, "predict")
    manifest = model.graft_manifest
    if manifest.inputs.kind != "image" or manifest.heads:
        what = "a multi-task module" if manifest.heads else f"a {manifest.inputs.kind} module"
        raise InvalidArgumentError(
            f"The ray engine runs single-task image classifiers (TFLite workers without "
            f"TensorFlow); {manifest.name} is {what}: use --engine local. "
            f"{received(engine='ray', module=str(module))}"
        )
    items, skipped = readable_inputs("image", expand_folders(inputs))
    if not items:
        raise InvalidArgumentError(
            f"None of the inputs is a readable image. The module takes image files (jpg, png, "
            f"bmp, gif, webp, tiff). {received(inputs=[str(i) for i in inputs][:5])}"
        )
    size = tuple(manifest.inputs.size)
    core = core_of(model, "image", manifest.inputs.encoded, size)
    data = tflite_file(core, core_key(manifest)).read_bytes()
    probs = np.zeros((len(items), manifest.outputs.dim), np.float32)
    with ray_session(address, verbose) as ray:
        for index, outputs in run_tflite_files(ray, data, size, items, actors):
            probs[index] = outputs
    results = Predictions(_rows(items, probs, manifest.labels, top_k))
    results.skipped = skipped
    return results


def write_predictions(target: str | Path, predictions) -> Path:
    """Writes predictions as Parquet: ``input``, ``label``, ``probability``, ``top_k_labels``,
    ``top_k_probabilities``, and for a multi-task module ``<task>.label`` and
    ``<task>.probability`` per task."""
    from graft.batch.parquet import _pyarrow, write_table

    pa, _ = _pyarrow()
    columns: dict[str, object] = {
        "input": [p.item for p in predictions],
        "label": [p.label for p in predictions],
        "probability": np.array([p.probability for p in predictions], np.float32),
        "top_k_labels": [[label for label, _ in p.top_k] for p in predictions],
        "top_k_probabilities": pa.array(
            [[q for _, q in p.top_k] for p in predictions], pa.list_(pa.float32())
        ),
    }
    tasks = list(predictions[0].tasks) if len(predictions) else []
    for task in tasks:
        columns[f"{task}.label"] = [p.tasks[task].label for p in predictions]
        columns[f"{task}.probability"] = np.array(
            [p.tasks[task].probability for p in predictions], np.float32
        )
    return write_table(target, columns)
