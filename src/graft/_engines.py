"""How graft runs networks: the runtime plan for this machine's devices (``plan_runtime``:
TFLite on CPU-only machines, Keras with XLA where a GPU is visible), and fast CPU inference for
Keras image networks, a cached TFLite conversion run by the LiteRT interpreter (XNNPACK) in
micro-batches. Shared by feature extraction, ``graft serve`` and ``graft explain``."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft import config

log = logging.getLogger(__name__)
RUNTIMES = ("auto", "tflite", "keras")


def check_runtime(runtime: str) -> str:
    """``runtime`` if it is one graft runs networks with.

    Raises:
        InvalidArgumentError: another value.
    """
    from graft.errors import InvalidArgumentError, received

    if runtime not in RUNTIMES:
        raise InvalidArgumentError(
            f"runtime must be 'auto', 'tflite' or 'keras'. {received(runtime=runtime)}"
        )
    return runtime


@dataclass(frozen=True)
class RuntimePlan:
    """How graft runs networks on this machine (``plan_runtime``).

    Attributes:
        runtime: ``"tflite"`` (LiteRT + XNNPACK, CPU) or ``"keras"`` (TensorFlow, GPU or CPU).
        jit_compile: compile Keras calls and training steps with XLA.
        mixed_precision: the dtype policy fine-tuning computes in (``"mixed_float16"``), or
            None for float32.
        reason: one sentence, for logs and ``run.json``.
    """

    runtime: str
    jit_compile: bool
    mixed_precision: str | None
    reason: str


def plan_runtime(requested: str, kind: str, devices: Sequence[str]) -> RuntimePlan:
    """The runtime for ``kind`` (``"image"`` or ``"text"``) networks given the device types
    TensorFlow sees (``visible_devices()``, e.g. ``("CPU", "GPU")``).

    ``auto`` on a machine with a GPU runs Keras there: XLA for images (fixed shapes, so one
    compilation fuses convolutions, BatchNorm and activations) but not for texts (every batch
    length would compile again), and float16 compute for fine-tuning (float32 weights and
    softmax, loss scaling by Keras). Without a GPU, images go through TFLite with XNNPACK
    (about 3x Keras on CPU, bench/RESULTS.md) and texts through Keras with length-cut batches.
    An explicit ``tflite`` or ``keras`` is kept.

    Example:
        >>> plan_runtime("auto", "image", ("CPU",)).runtime
        'tflite'
        >>> plan = plan_runtime("auto", "image", ("CPU", "GPU"))
        >>> plan.runtime, plan.jit_compile, plan.mixed_precision
        ('keras', True, 'mixed_float16')
    """
    check_runtime(requested)
    gpu = any(d.upper() == "GPU" for d in devices)
    jit = gpu and kind == "image"
    mixed = "mixed_float16" if gpu else None
    if requested == "tflite":
        return RuntimePlan("tflite", False, mixed, "TFLite, as asked (--runtime tflite)")
    if requested == "keras":
        where = "on the GPU" if gpu else "on the CPU"
        return RuntimePlan("keras", jit, mixed, f"Keras {where}, as asked (--runtime keras)")
    if gpu:
        return RuntimePlan(
            "keras",
            jit,
            mixed,
            "a GPU is visible: Keras on the GPU"
            + (" with XLA" if jit else "")
            + ", float16 compute for fine-tuning",
        )
    if kind == "image":
        return RuntimePlan("tflite", False, None, "no GPU: TFLite with XNNPACK on the CPU")
    return RuntimePlan("keras", False, None, "no GPU: Keras on the CPU, batches cut to length")


def visible_devices() -> tuple[str, ...]:
    """The device types TensorFlow sees (``("CPU",)``, ``("CPU", "GPU")`` ...)."""
    import tensorflow as tf

    return tuple(sorted({d.device_type for d in tf.config.list_physical_devices()}))


def tflite_file(model, key: str) -> Path:
    """``model`` converted to float TFLite once per ``key`` (e.g. the sha256 of its
    model.keras), cached as ``$GRAFT_HOME/engines/<key>.tflite`` (locked, atomic)."""
    from filelock import FileLock

    target = config.graft_home() / "engines" / f"{key}.tflite"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not target.is_file():
            tmp = target.with_name(f".{uuid.uuid4().hex}.tflite")
            try:
                model.export(str(tmp), format="litert", verbose=False)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    return target


class TFLiteEngine:
    """Runs a single-input, single-output TFLite file (a path, or its bytes) on float32 batches.

    XNNPACK keeps small activations in cache, so batches run in micro-batches of about one
    example per thread (on 2 cores, batch 2 runs 133 img/s, batch 32 106 img/s). One
    interpreter per micro-batch size avoids re-planning on every size change. Not thread-safe:
    one engine per thread.

    Example:
        >>> engine = TFLiteEngine(tflite_file(core, sha))  # doctest: +SKIP
        >>> engine(np.zeros((4, 224, 224, 3), np.float32)).shape  # doctest: +SKIP
        (4, 1280)
    """

    def __init__(self, path: str | Path | bytes, threads: int | None = None) -> None:
        # The file's contents also do: Ray workers get the model as bytes, not a path.
        self.path = path if isinstance(path, bytes) else str(path)
        self.threads = threads or os.cpu_count() or 1
        self.step = max(1, min(self.threads, 8))
        self._by_size: dict[int, tuple] = {}

    def _interpreter(self, size: int, shape: tuple[int, ...]):
        if size not in self._by_size:
            from ai_edge_litert.interpreter import Interpreter

            source = "model_content" if isinstance(self.path, bytes) else "model_path"
            it = Interpreter(**{source: self.path}, num_threads=self.threads)
            inp = it.get_input_details()[0]["index"]
            it.resize_tensor_input(inp, [size, *shape])
            it.allocate_tensors()
            self._by_size[size] = (it, inp, it.get_output_details()[0]["index"])
        return self._by_size[size]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = []
        for start in range(0, len(batch), self.step):
            chunk = batch[start : start + self.step]
            it, inp, out = self._interpreter(len(chunk), chunk.shape[1:])
            it.set_tensor(inp, chunk)
            it.invoke()
            parts.append(it.get_tensor(out).copy())
        return np.concatenate(parts)


def core_key(manifest) -> str:
    """The cache key of a module's float-image core in ``$GRAFT_HOME/engines`` (its
    model.keras sha256): ``graft serve``, ``graft explain`` and the ray engine share one
    conversion."""
    return manifest.files["model.keras"].sha256 + "-core"


def core_engine(core, manifest, runtime: str = "auto"):
    """The fastest way to run a module's float-image core (images in [0, 1] -> outputs): its
    TFLite conversion (cached by the module's model.keras sha256) unless ``runtime`` is
    ``"keras"``, a GPU is visible under ``"auto"`` (``plan_runtime``), or conversion fails
    under ``"auto"``; else a compiled Keras call (XLA on a GPU).

    Returns:
        A function of a float32 ``(n, h, w, 3)`` NumPy batch, returning a NumPy array.
    """
    plan = plan_runtime(runtime, "image", visible_devices() if runtime == "auto" else ())
    if plan.runtime == "tflite":
        try:
            key = core_key(manifest)
            return TFLiteEngine(tflite_file(core, key))
        except Exception as exc:
            if runtime == "tflite":
                raise
            log.warning("TFLite conversion failed (%s); running with Keras", exc)
    import tensorflow as tf

    h, w = manifest.inputs.size
    call = tf.function(
        core,
        input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)],
        jit_compile=plan.jit_compile or None,
    )
    return lambda batch: call(tf.constant(batch, tf.float32)).numpy()
