"""Exporting a reinforcement-learning policy module (``task="rl-policy"``).

Every artifact takes float32 observations ``(batch, *shape)`` and returns ``q_values`` and
``action`` (the greedy action, int32). Each is checked against the Keras policy on the
module's sample of observations (action agreement, largest Q-value difference) and played for
a few greedy episodes in its environment, on the same episode seeds as the Keras policy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received
from graft.export.compare import ArtifactResult, sizes, timing
from graft.export.graphs import Exportable

EPISODES = 10
POLICY_FORMATS = ("saved_model", "tflite", "onnx")


def exportable(module_dir: Path) -> Exportable:
    from graft.module.io import load

    loaded = load(module_dir)
    m = loaded.manifest
    return Exportable(
        raw=loaded.model,
        core=loaded.model,
        labels=tuple(m.labels or ()),
        kind="observation",
        size=None,
        name=m.name,
    )


def write_saved_model(ex: Exportable, dest: Path, shape: tuple[int, ...]) -> None:
    """``serving_default``: ``observation`` float32 ``(batch, *shape)`` -> ``q_values``,
    ``action``."""
    import keras
    import tensorflow as tf

    model = ex.raw
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(observation):
        out = model(observation, training=False)
        return {"q_values": out["q_values"], "action": out["action"]}

    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, *shape], tf.float32, name="observation")],
    )
    archive.write_out(str(dest), verbose=False)
    (dest / "assets").mkdir(exist_ok=True)
    (dest / "assets" / "labels.txt").write_text("\n".join(ex.labels) + "\n", encoding="utf-8")


def write_onnx(ex: Exportable, dest: Path, shape: tuple[int, ...]) -> None:
    from graft.export import onnx as onnx_export

    onnx_export.require()
    import onnx

    ex.raw(np.zeros((1, *shape), np.float32))
    ex.raw.export(str(dest), format="onnx", verbose=False)
    model = onnx.load(str(dest))
    entry = model.metadata_props.add()
    entry.key, entry.value = "labels", "\n".join(ex.labels)
    onnx.save(model, str(dest))


class _Runner:
    """Q-values of a batch of observations from any artifact."""

    def __init__(self, fmt: str, path: Path, model=None):
        if fmt == "keras":  # the module's model, already loaded
            import tensorflow as tf

            call = tf.function(lambda x: model(x, training=False)["q_values"])
            self.run = lambda x: call(tf.constant(x, tf.float32)).numpy()
        elif fmt == "saved_model":
            import tensorflow as tf

            fn = tf.saved_model.load(str(path)).signatures["serving_default"]
            self.run = lambda x: fn(observation=tf.constant(x, tf.float32))["q_values"].numpy()
        elif fmt == "tflite":  # the float (or dequantized) Q-values, not the int32 action
            from graft.export import tflite

            self.run = tflite.Runner(path, output=lambda o: o["dtype"] != np.int32)
        else:
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            outputs = [o.name for o in session.get_outputs()]
            q_name = next(o for o in outputs if "q_values" in o)
            self.run = lambda x: session.run([q_name], {name: x.astype(np.float32)})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.run(np.asarray(x, np.float32)), np.float32)


def measure(fmt, quant, path, runner, observations, reference_q, env_id, reference_return):
    from graft.rl.train import FINAL_SEEDS, evaluate_policy

    q = np.concatenate([runner(observations[i : i + 64]) for i in range(0, len(observations), 64)])
    returns = evaluate_policy(runner, env_id, EPISODES, FINAL_SEEDS)
    mean_return = float(np.mean(returns))
    latency, throughput = timing(runner, observations)
    size, gz = sizes(path)
    return ArtifactResult(
        format=fmt,
        quantization=quant,
        path=path.name,
        size_bytes=size,
        gzip_bytes=gz,
        accuracy=mean_return,
        accuracy_change=round(mean_return - reference_return, 4)
        if reference_return is not None
        else 0.0,
        top1_agreement=float((q.argmax(1) == reference_q.argmax(1)).mean()),
        max_abs_diff=float(np.abs(q - reference_q).max()),
        latency_p50_ms=latency,
        throughput=throughput,
    )


def export_into(tmp: Path, module_dir: Path, plan, int8_io: str, allow_float_fallback: bool):
    """Writes and measures every artifact of ``plan`` for a policy module.

    Returns:
        ``(rows, observations_count)``.
    """
    from graft.export import tflite
    from graft.module.manifest import Manifest
    from graft.rl.policy import observations_of

    unsupported = sorted({fmt for fmt, _ in plan if fmt not in POLICY_FORMATS})
    if unsupported:
        raise InvalidArgumentError(
            f"A policy module exports to {', '.join(POLICY_FORMATS)}. "
            f"{received(formats=unsupported)}"
        )
    manifest = Manifest.read(module_dir / "manifest.json")
    shape = tuple(manifest.inputs.shape)
    env_id = manifest.inputs.environment
    ex = exportable(module_dir)
    observations = observations_of(module_dir).astype(np.float32)
    keras_runner = _Runner("keras", module_dir / "model.keras", ex.raw)
    reference_q = keras_runner(observations)
    rows = [
        measure(
            "keras", "float", module_dir / "model.keras", keras_runner, observations,
            reference_q, env_id, None,
        )
    ]  # fmt: skip
    reference_return = rows[0].accuracy
    for fmt, quant in plan:
        from graft.export.formats import artifact_name

        path = tmp / artifact_name(fmt, quant)
        if fmt == "saved_model":
            write_saved_model(ex, path, shape)
        elif fmt == "tflite":
            flat = tflite.convert(ex, quant, observations, int8_io, allow_float_fallback)
            path.write_bytes(tflite.attach_labels(flat, ex.labels))
        else:
            write_onnx(ex, path, shape)
        rows.append(
            measure(
                fmt, quant, path, _Runner(fmt, path), observations, reference_q, env_id,
                reference_return,
            )
        )  # fmt: skip
    return rows, len(observations)
