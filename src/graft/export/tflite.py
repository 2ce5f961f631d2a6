"""TFLite export through the LiteRT converter, with the labels inside the file.

The labels travel as ``labels.txt`` in a zip archive appended to the flatbuffer, the way TFLite
Support and MediaPipe pack associated files: interpreters ignore the trailing bytes, and any
zip reader (``zipfile``) finds the file.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received
from graft.export.graphs import Exportable


class QuantizationError(InvalidArgumentError):
    """A layer's ops have no integer kernel."""


def convert(
    ex: Exportable,
    quantization: str,
    representative: list | np.ndarray | None = None,
    int8_io: str = "float32",
    allow_float_fallback: bool = False,
) -> bytes:
    """Converts the module's core to a TFLite flatbuffer (labels not yet attached).

    Args:
        quantization: ``float``, ``dynamic`` (int8 weights), ``float16`` or ``int8`` (weights
            and activations, calibrated on ``representative``).
        representative: training examples as the core takes them (decoded images, or token
            dicts of batch 1) for ``int8`` calibration.
        int8_io: for ``int8``, the input/output type: ``float32``, ``int8`` or ``uint8``.
        allow_float_fallback: for ``int8``, keep ops without integer kernels in float instead
            of failing.
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="graft-tflite-") as tmp:
        ex.core.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantization in ("dynamic", "float16", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            if representative is None or not len(representative):
                raise InvalidArgumentError(
                    "int8 quantization needs representative examples from the training split. "
                    f"{received(representative=None)}"
                )

            def samples():
                for example in representative:
                    if isinstance(example, dict):  # text: one tokenized example per dict
                        yield example
                    else:
                        yield [example[None].astype(np.float32)]

            converter.representative_dataset = samples
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if allow_float_fallback:
                ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
            converter.target_spec.supported_ops = ops
            io_type = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[int8_io]
            if ex.kind == "image":  # token inputs stay int32
                converter.inference_input_type = io_type
            converter.inference_output_type = io_type
        try:
            return converter.convert()
        except Exception as exc:  # the converter raises ConverterError with the op names
            if quantization == "int8" and not allow_float_fallback:
                raise QuantizationError(
                    f"Full-integer quantization failed: {str(exc).strip()[:600]} Pass "
                    "--allow-float-fallback to keep such ops in float. "
                    f"{received(quantization=quantization)}"
                ) from None
            raise


def attach_labels(
    flatbuffer: bytes, labels: tuple[str, ...], vocabulary: list[str] | None = None
) -> bytes:
    """The flatbuffer with ``labels.txt`` (and a text model's ``vocab.txt``) appended as a zip
    archive."""
    buffer = io.BytesIO()
    buffer.write(flatbuffer)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("labels.txt", "\n".join(labels) + "\n")
        if vocabulary is not None:
            archive.writestr("vocab.txt", "\n".join(vocabulary) + "\n")
    return buffer.getvalue()


def read_vocabulary(path: str | Path) -> list[str]:
    """The WordPiece vocabulary stored in a graft text-classifier TFLite file."""
    with zipfile.ZipFile(path) as archive:
        return archive.read("vocab.txt").decode("utf-8").splitlines()


def read_labels(path: str | Path) -> list[str]:
    """The label names stored in a graft TFLite file.

    Example:
        >>> read_labels("export/model_int8.tflite")[:3]  # doctest: +SKIP
        ['0', '1', '2']
    """
    with zipfile.ZipFile(path) as archive:
        return archive.read("labels.txt").decode("utf-8").splitlines()


class Runner:
    """Runs a TFLite file in the ``ai-edge-litert`` interpreter (XNNPACK), converting
    int8/uint8 inputs and outputs with their scale and zero point. Takes an array (images) or
    a dict of arrays by input name (text: ``token_ids``, ``padding_mask``, ``segment_ids``)."""

    takes_raw = False

    def __init__(self, path: Path, threads: int | None = None, output=None) -> None:
        import os

        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        # ``output``: picks the returned output from its details (default: the first)
        self.output = next(o for o in outputs if output(o)) if output else outputs[0]
        self._shapes = None

    def _by_name(self, batch) -> list[tuple[dict, np.ndarray]]:
        if not isinstance(batch, dict):
            return [(self.inputs[0], batch)]
        pairs = []
        for detail in self.inputs:
            key = next((k for k in batch if k in detail["name"]), None)
            if key is None:
                raise InvalidArgumentError(
                    f"The TFLite model takes {[d['name'] for d in self.inputs]}. "
                    f"{received(inputs=sorted(batch))}"
                )
            pairs.append((detail, batch[key]))
        return pairs

    def __call__(self, batch) -> np.ndarray:
        it = self.interpreter
        pairs = self._by_name(batch)
        shapes = [value.shape for _, value in pairs]
        if self._shapes != shapes:
            for detail, value in pairs:
                it.resize_tensor_input(detail["index"], list(value.shape))
            it.allocate_tensors()
            self._shapes = shapes
        for detail, value in pairs:
            dtype = detail["dtype"]
            if dtype in (np.int8, np.uint8) and value.dtype == np.float32:
                scale, zero = detail["quantization"]
                info = np.iinfo(dtype)
                value = np.clip(np.round(value / scale + zero), info.min, info.max)
            it.set_tensor(detail["index"], value.astype(dtype))
        it.invoke()
        out = it.get_tensor(self.output["index"])
        if out.dtype != np.float32:
            scale, zero = self.output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.copy()
