"""TF.js graph models, written by graft itself under TensorFlow 2.21.

The ``tensorflowjs`` converter cannot be installed beside graft (it pins TensorFlow 2.19 and
pulls tf_keras, JAX and flax), and its layers format cannot hold a Keras 3 model. What its
SavedModel -> graph-model path does is reproduced here, without its Grappler pass: the
function's variables are frozen into constants (with aggressive inlining, so no function
calls remain), every op is checked against the ops TF.js runs (``tfjs_ops.json``, read from the
pinned ``@tensorflow/tfjs-converter``), every constant becomes a weight entry (float64 ->
float32, int64 -> int32) and the weights are written as ``group1-shardNofM.bin`` files of at
most 4 MiB beside ``model.json``. Without Grappler's remapping there are no fused ops, so no
rank-4 fused biases, which TF.js' wasm backend rejects.

``read_graph_model`` loads what was written back into TensorFlow: ``graft export`` measures the
written files, and the browser tests compare TF.js with Keras on the same pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received

SHARD_BYTES = 4 * 1024 * 1024
OPS_FILE = Path(__file__).with_name("tfjs_ops.json")
MODEL_FILE = "model.json"
PAGE_FILE = "index.html"
LABELS_FILE = "labels.txt"
TFJS_VERSION = "4.22.0"  # the page's @tensorflow/tfjs, the version the tests run
_WEIGHT_DTYPES = {  # numpy kind of a constant -> (TF.js dtype, numpy dtype written)
    "float16": ("float32", np.float32),
    "float32": ("float32", np.float32),
    "float64": ("float32", np.float32),
    "int8": ("int32", np.int32),
    "int16": ("int32", np.int32),
    "int32": ("int32", np.int32),
    "int64": ("int32", np.int32),
    "uint8": ("int32", np.int32),
    "bool": ("bool", np.bool_),
}
_VALUE_FIELDS = (
    "tensor_content",
    "half_val",
    "float_val",
    "double_val",
    "int_val",
    "int64_val",
    "bool_val",
    "string_val",
    "scomplex_val",
    "dcomplex_val",
    "uint32_val",
    "uint64_val",
)


@cache
def supported_ops() -> frozenset[str]:
    """The TensorFlow op names TF.js graph models run (see ``tools/tfjs_ops.py``)."""
    return frozenset(json.loads(OPS_FILE.read_text())["ops"])


def freeze(function) -> tuple[object, list[str], list[str]]:
    """A concrete function's graph with its variables as constants.

    Returns:
        ``(graph_def, input_names, output_names)``, names with their ``:0``.

    Raises:
        InvalidArgumentError: ops TF.js cannot run, named with where TF.js' list comes from.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    frozen = convert_variables_to_constants_v2(function, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    missing = sorted({n.op for n in graph_def.node} - supported_ops())
    if missing:
        raise InvalidArgumentError(
            f"TF.js {TFJS_VERSION} cannot run these ops of the model: {', '.join(missing)} "
            f"(the ops it runs are listed in {OPS_FILE.name}, from @tensorflow/tfjs-converter). "
            f"Export to TFLite or ONNX instead. {received(ops=missing)}"
        )
    return graph_def, inputs, outputs


def _tensor_info(name: str, tensor) -> dict:
    from tensorflow.core.framework import types_pb2

    dims = [{"size": str(-1 if d is None else int(d))} for d in tensor.shape]
    return {
        "name": name,
        "dtype": types_pb2.DataType.Name(tensor.dtype.as_datatype_enum),
        "tensorShape": {"dim": dims},
    }


def graph_model(function, *, metadata: dict | None = None, shard_bytes: int = SHARD_BYTES):
    """The ``model.json`` document and the weight shards of a concrete function.

    Args:
        function: a ``tf.function``'s concrete function (one input; outputs by name or one).
        metadata: JSON stored as ``userDefinedMetadata`` (TF.js: ``model.metadata``).
        shard_bytes: the largest weight file.

    Returns:
        ``(document, shards)``: the dict to write as ``model.json`` and the bytes of each
        ``group1-shardNofM.bin`` in order.
    """
    import tensorflow as tf
    from google.protobuf import json_format

    from graft import __version__

    graph_def, inputs, outputs = freeze(function)
    weights, chunks = [], []
    for node in graph_def.node:
        if node.op != "Const":
            continue
        value = tf.make_ndarray(node.attr["value"].tensor)
        if value.dtype.name not in _WEIGHT_DTYPES:
            raise InvalidArgumentError(
                f"TF.js weights are float32, int32 or bool; constant {node.name} is "
                f"{value.dtype.name}. {received(dtype=value.dtype.name)}"
            )
        dtype, stored = _WEIGHT_DTYPES[value.dtype.name]
        chunks.append(np.ascontiguousarray(value.astype(stored)).tobytes())
        weights.append({"name": node.name, "shape": list(value.shape), "dtype": dtype})
        tensor = node.attr["value"].tensor
        for field in _VALUE_FIELDS:
            tensor.ClearField(field)
    data = b"".join(chunks)
    count = max(1, math.ceil(len(data) / shard_bytes))
    shards = [data[i * shard_bytes : (i + 1) * shard_bytes] for i in range(count)]
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    structured = function.structured_outputs
    names = list(structured) if isinstance(structured, dict) else ["output_0"]
    flat = tf.nest.flatten(structured)
    arguments = [t for t in function.inputs if t.dtype != tf.resource]
    signature = {
        "inputs": {
            name.split(":")[0]: _tensor_info(name, t)
            for name, t in zip(inputs, arguments, strict=True)
        },
        "outputs": {
            key: _tensor_info(name, t) for key, name, t in zip(names, outputs, flat, strict=True)
        },
    }
    document = {
        "format": "graph-model",
        "generatedBy": tf.__version__,
        "convertedBy": f"graft {__version__}",
        "signature": signature,
        "modelTopology": json_format.MessageToDict(graph_def),
        "weightsManifest": [{"paths": paths, "weights": weights}],
    }
    if metadata:
        document["userDefinedMetadata"] = metadata
    return document, shards


def write_graph_model(
    function, dest: str | Path, *, metadata: dict | None = None, shard_bytes: int = SHARD_BYTES
) -> Path:
    """Writes a concrete function as a TF.js graph model into the folder ``dest``.

    Example:
        >>> import keras, tensorflow as tf  # doctest: +SKIP
        >>> model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])  # doctest: +SKIP
        >>> fn = tf.function(lambda x: model(x)).get_concrete_function(
        ...     tf.TensorSpec([None, 4], tf.float32, name="x"))  # doctest: +SKIP
        >>> write_graph_model(fn, "web/model")  # doctest: +SKIP
        PosixPath('web/model')
    """
    dest = Path(dest)
    document, shards = graph_model(function, metadata=metadata, shard_bytes=shard_bytes)
    dest.mkdir(parents=True, exist_ok=True)
    for path, shard in zip(document["weightsManifest"][0]["paths"], shards, strict=True):
        (dest / path).write_bytes(shard)
    (dest / MODEL_FILE).write_text(json.dumps(document))
    return dest


def read_graph_model(path: str | Path) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """Loads a graph model written by ``write_graph_model`` into TensorFlow.

    Returns:
        A function of the input array returning the outputs by signature name.
    """
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.core.framework import graph_pb2

    path = Path(path)
    document = json.loads((path / MODEL_FILE).read_text())
    graph_def = json_format.ParseDict(document["modelTopology"], graph_pb2.GraphDef())
    nodes = {node.name: node for node in graph_def.node}
    for group in document["weightsManifest"]:
        data = b"".join((path / p).read_bytes() for p in group["paths"])
        offset = 0
        for weight in group["weights"]:
            stored = dict(_WEIGHT_DTYPES.values())[weight["dtype"]]  # TF.js dtype -> numpy
            count = int(np.prod(weight["shape"], dtype=np.int64))
            size = count * np.dtype(stored).itemsize
            value = np.frombuffer(data[offset : offset + size], stored).reshape(weight["shape"])
            offset += size
            node = nodes[weight["name"]]
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type)
            node.attr["value"].tensor.CopyFrom(
                tf.make_tensor_proto(value.astype(dtype.as_numpy_dtype))
            )
    wrapped = tf.compat.v1.wrap_function(
        lambda: tf.compat.v1.import_graph_def(graph_def, name=""), []
    )
    signature = document["signature"]
    (inp,) = signature["inputs"].values()
    keys = list(signature["outputs"])
    call = wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name(inp["name"])],
        fetches=[wrapped.graph.get_tensor_by_name(signature["outputs"][k]["name"]) for k in keys],
    )
    return lambda x: {
        k: v.numpy() for k, v in zip(keys, call(tf.constant(x, tf.float32)), strict=True)
    }


CDN = "https://cdn.jsdelivr.net/npm"


def write(ex, dest: Path) -> None:
    """Writes an image module's core as a TF.js graph model folder: ``model.json``, the weight
    shards, ``labels.txt`` and ``index.html`` (a page that classifies an image the user picks
    or drops; it decodes and resizes in the browser, the graph takes float32 pixels in [0, 1]).

    Raises:
        InvalidArgumentError: a text module (the tokenizer does not run in TF.js), or ops TF.js
            cannot run.
    """
    import tensorflow as tf

    if ex.kind != "image":
        raise InvalidArgumentError(
            "TF.js export takes image modules: a text module's tokenizer does not run in TF.js. "
            f"Export it as saved_model, tflite or onnx. {received(format='tfjs', kind=ex.kind)}"
        )
    h, w = ex.size
    core = ex.core
    function = tf.function(lambda images: {"probabilities": core(images, training=False)})
    concrete = function.get_concrete_function(tf.TensorSpec([None, h, w, 3], tf.float32, "images"))
    metadata = {"labels": list(ex.labels), "imageSize": [h, w], "input": "float32 RGB in [0, 1]"}
    write_graph_model(concrete, dest, metadata=metadata)
    (dest / LABELS_FILE).write_text("".join(f"{label}\n" for label in ex.labels))
    (dest / PAGE_FILE).write_text(page(ex.name, ex.labels, (h, w)))


def page(name: str, labels, size: tuple[int, int], cdn: str = CDN) -> str:
    """The demo page of a graph model of an image classifier (``index.html``)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("graft.export", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    return env.get_template("tfjs_index.html.j2").render(
        name=name,
        labels=list(labels),
        size=list(size),
        cdn=cdn,
        version=TFJS_VERSION,
        model_file=MODEL_FILE,
    )


class Runner:
    """Runs a written graph model in TensorFlow (the files as TF.js reads them; the browser
    itself is exercised by the tests)."""

    takes_raw = False

    def __init__(self, path: Path) -> None:
        self._call = read_graph_model(path)

    def __call__(self, batch) -> np.ndarray:
        return self._call(np.asarray(batch, np.float32))["probabilities"]
