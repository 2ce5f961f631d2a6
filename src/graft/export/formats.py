"""Export formats and quantization modes: names, validation, file names. No TensorFlow."""

from __future__ import annotations

from graft.errors import InvalidArgumentError, received

FORMATS = ("saved_model", "tflite", "onnx", "tfjs", "keras")
# "float" is the unquantized model. TFLite: "dynamic" (int8 weights), "float16", "int8" (full
# integer, calibrated on training examples) and "qat" (full integer, the head trained
# quantization-aware on the int8 backbone's features). Keras: "int8" is Keras' own
# `model.quantize("int8")` (Dense/EinsumDense/Embedding weights int8).
QUANTIZATION_NAMES = ("float", "dynamic", "float16", "int8", "qat")
QUANTIZATIONS = {
    "keras": ("float", "int8"),
    "saved_model": ("float",),
    "tflite": ("float", "dynamic", "float16", "int8", "qat"),
    "onnx": ("float",),
    "tfjs": ("float",),
}
INT8_IO = ("float32", "int8", "uint8")


def parse_list(text: str | list[str] | tuple[str, ...], valid: tuple[str, ...], what: str) -> list:
    """Splits ``"a,b"`` (or takes a list), checks each item is valid and keeps their order.

    Example:
        >>> parse_list("tflite,onnx", FORMATS, "format")
        ['tflite', 'onnx']
    """
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    items = [t for t in items if t]
    bad = [t for t in items if t not in valid]
    if bad or not items:
        raise InvalidArgumentError(
            f"Unknown {what} {', '.join(map(repr, bad)) or '(none given)'}. Valid {what}s: "
            f"{', '.join(valid)}. {received(**{what: text})}"
        )
    return list(dict.fromkeys(items))


def artifact_name(fmt: str, quantization: str) -> str:
    """File or folder name of one artifact inside the export directory.

    Example:
        >>> artifact_name("tflite", "int8")
        'model_int8.tflite'
    """
    suffix = "" if quantization == "float" else f"_{quantization}"
    return {
        "saved_model": f"saved_model{suffix}",
        "tflite": f"model{suffix}.tflite",
        "onnx": f"model{suffix}.onnx",
        "tfjs": f"tfjs{suffix}",
        "keras": f"model{suffix}.keras",
    }[fmt]
