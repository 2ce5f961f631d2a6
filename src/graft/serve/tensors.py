"""TF Serving's JSON tensor encoding: requests to NumPy arrays, arrays back to JSON.

Row format (``instances``): a list with one entry per example, each a value, a nested list,
or, for signatures with several inputs, an object ``{input name: value}``. Columnar format
(``inputs``): one value for a single input, else an object of whole tensors. Binary values are
``{"b64": "..."}``. Responses use ``predictions`` (rows) or ``outputs`` (columns); output
strings are UTF-8 text unless the output's name ends in ``_bytes`` or they are not UTF-8, then
``{"b64": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

import numpy as np

from graft.serve.status import ServingError

# numpy dtype name -> TF Serving's DataType name (metadata) and the JSON leaf it takes.
DTYPES = {
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
    "string": "DT_STRING",
}
MAX_DEPTH = 32  # JSON nesting: enough for rank-8 tensors inside objects
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)


@dataclass(frozen=True)
class TensorInfo:
    """One named input or output of a signature.

    Args:
        name: the key clients use (``inputs``, ``probabilities`` ...).
        dtype: a key of ``DTYPES``.
        shape: dimensions, ``-1`` where unknown (the first is the batch); None for any rank.
        tensor_name: the graph tensor name shown in metadata.
    """

    name: str
    dtype: str
    shape: tuple[int, ...] | None
    tensor_name: str = ""

    def metadata(self) -> dict:
        shape = {"dim": [], "unknown_rank": True}
        if self.shape is not None:
            shape = {
                "dim": [{"size": str(d), "name": ""} for d in self.shape],
                "unknown_rank": False,
            }
        return {
            "dtype": DTYPES[self.dtype],
            "tensor_shape": shape,
            "name": self.tensor_name or f"{self.name}:0",
        }


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuses JSON nested deeper than ``limit`` before it is parsed (counting ``[`` and ``{``
    outside strings, vectorised).

    Raises:
        ServingError: INVALID_ARGUMENT when too deep.
    """
    skeleton = _STRINGS.sub(b'""', body)
    codes = np.frombuffer(skeleton, np.uint8)
    steps = np.zeros(len(codes), np.int32)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    depth = int(np.cumsum(steps).max()) if len(steps) else 0
    if depth > limit:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON nesting is limited to {limit} levels of lists and objects. "
            f"Received: depth={depth}",
        )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> dict:
    """The request object.

    Raises:
        ServingError: INVALID_ARGUMENT for empty, malformed, too deep or non-object bodies.
    """
    if not body.strip():
        raise ServingError(
            "INVALID_ARGUMENT",
            "JSON Parse error: The document is empty. Send a JSON object such as "
            "{\"instances\": [...]}. Received: body=b''",
        )
    check_depth(body)
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"JSON Parse error: {exc}. Received: body={body[:80]!r}",
        ) from None
    if not isinstance(doc, dict):
        raise ServingError(
            "INVALID_ARGUMENT",
            'The request body must be a JSON object such as {"instances": [...]}. '
            f"Received: body={type(doc).__name__}",
        )
    return doc


def is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _bytes_leaf(value, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"{where}: the b64 value is not valid base64. Received: b64={value['b64'][:40]!r}",
            ) from None
    raise ServingError(
        "INVALID_ARGUMENT",
        f'{where} takes strings: text, or binary data as {{"b64": "..."}}. '
        f"Received: value={_short(value)}",
    )


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _string_array(value, where: str) -> np.ndarray:
    def walk(v):
        if isinstance(v, list):
            return [walk(x) for x in v]
        return _bytes_leaf(v, where)

    leaves = walk(value)
    try:
        out = np.array(leaves, dtype=object)
    except ValueError:
        out = None
    if out is None or any(isinstance(x, list) for x in out.reshape(-1)):
        raise ServingError(
            "INVALID_ARGUMENT",
            f"{where}: nested lists must be rectangular (every row the same length). "
            f"Received: value={_short(value)}",
        )
    return out


def _numeric_array(value, info: TensorInfo, where: str) -> np.ndarray:
    def bad(detail: str):
        return ServingError(
            "INVALID_ARGUMENT",
            f"{where} takes {info.dtype} numbers{detail}. Received: value={_short(value)}",
        )

    try:
        arr = np.asarray(value, dtype=np.float64 if info.dtype != "bool" else object)
    except (ValueError, TypeError):
        raise bad(" in rectangular nested lists") from None
    if info.dtype == "bool":
        if not all(isinstance(x, bool) for x in arr.reshape(-1)):
            raise bad(" (true or false)")
        return arr.astype(bool)
    if not np.isfinite(arr).all():
        raise bad(" (finite; null, NaN and Infinity are not accepted)")
    dtype = np.dtype(info.dtype)
    if dtype.kind in "iu":
        if not (arr == np.round(arr)).all():
            raise bad(" (integers)")
        limits = np.iinfo(dtype)
        if arr.size and (arr.min() < limits.min or arr.max() > limits.max):
            raise bad(f" in [{limits.min}, {limits.max}]")
    return arr.astype(dtype)


def to_array(value, info: TensorInfo, where: str) -> np.ndarray:
    """One tensor (batch dimension included) from JSON, checked against ``info``.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input, what it takes and what was sent.
    """
    if info.dtype == "string":
        arr = _string_array(value, where)
    else:
        arr = _numeric_array(value, info, where)
    check_shape(arr, info, where)
    return arr


def check_shape(arr: np.ndarray, info: TensorInfo, where: str) -> None:
    if info.shape is None:
        return
    expected = tuple(info.shape)
    ok = arr.ndim == len(expected) and all(
        e in (-1, None) or e == a for e, a in zip(expected, arr.shape, strict=True)
    )
    if not ok:
        want = "(" + ", ".join("?" if e in (-1, None) else str(e) for e in expected) + ")"
        raise ServingError(
            "INVALID_ARGUMENT",
            f"{where} takes a tensor of shape {want} including the batch. "
            f"Received: shape={tuple(arr.shape)}",
        )


def _rows_to_columns(instances: list, names: list[str]) -> dict[str, list]:
    if len(names) == 1 and not (isinstance(instances[0], dict) and not is_b64(instances[0])):
        return {names[0]: instances}
    columns: dict[str, list] = {name: [] for name in names}
    for i, row in enumerate(instances):
        if not isinstance(row, dict) or is_b64(row):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"With several inputs ({', '.join(names)}), every instance must be an object "
                f"naming them. Received: instances[{i}]={_short(row)}",
            )
        if set(row) != set(names):
            raise ServingError(
                "INVALID_ARGUMENT",
                f"instances[{i}] must have exactly the keys {sorted(names)}. "
                f"Received: keys={sorted(row)}",
            )
        for name in names:
            columns[name].append(row[name])
    return columns


def parse_predict(doc: dict, inputs: dict[str, TensorInfo]) -> tuple[dict[str, list], bool]:
    """Splits a predict request into ``{input name: JSON value with batch}`` and whether it was
    columnar. Values are converted by the signature (``to_array`` or its own parser).

    Raises:
        ServingError: INVALID_ARGUMENT for a malformed request.
    """
    unknown = set(doc) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise ServingError(
            "INVALID_ARGUMENT",
            "A predict request has 'instances' (rows) or 'inputs' (columns), and optionally "
            f"'signature_name'. Received: keys={sorted(doc)}",
        )
    if ("instances" in doc) == ("inputs" in doc):
        raise ServingError(
            "INVALID_ARGUMENT",
            "Missing 'inputs' or 'instances' key: send exactly one of them. "
            f"Received: keys={sorted(doc)}",
        )
    names = list(inputs)
    if "instances" in doc:
        instances = doc["instances"]
        if not isinstance(instances, list) or not instances:
            raise ServingError(
                "INVALID_ARGUMENT",
                "'instances' must be a non-empty list with one entry per example. "
                f"Received: instances={_short(instances)}",
            )
        return _rows_to_columns(instances, names), False
    columns = doc["inputs"]
    if len(names) == 1 and not (
        isinstance(columns, dict) and not is_b64(columns) and set(columns) == set(names)
    ):
        return {names[0]: columns}, True
    if not isinstance(columns, dict) or set(columns) != set(names):
        got = sorted(columns) if isinstance(columns, dict) else _short(columns)
        raise ServingError(
            "INVALID_ARGUMENT",
            f"'inputs' must be an object with exactly the keys {sorted(names)}. "
            f"Received: inputs={got}",
        )
    return dict(columns), True


def _json_value(arr: np.ndarray, name: str):
    if arr.dtype == object or arr.dtype.kind in "SU":

        def leaf(v):
            if isinstance(v, str):
                return v
            if not name.endswith("_bytes"):
                try:
                    return v.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            return {"b64": base64.b64encode(v).decode("ascii")}

        return np.vectorize(leaf, otypes=[object])(arr).tolist() if arr.ndim else leaf(arr[()])
    return arr.tolist()


def format_response(outputs: dict[str, np.ndarray], columnar: bool, rows: int) -> dict:
    """``{"predictions": [...]}`` (one entry per row) or ``{"outputs": ...}``.

    Raises:
        ServingError: INVALID_ARGUMENT if an output lacks the batch dimension in row format.
    """
    if columnar:
        if len(outputs) == 1:
            ((name, arr),) = outputs.items()
            return {"outputs": _json_value(arr, name)}
        return {"outputs": {name: _json_value(arr, name) for name, arr in outputs.items()}}
    for name, arr in outputs.items():
        if arr.ndim == 0 or arr.shape[0] != rows:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Output {name!r} has no batch dimension of size {rows}, so it cannot be "
                "returned as rows; send the request in columnar format ('inputs'). "
                f"Received: shape={tuple(arr.shape)}",
            )
    values = {name: _json_value(arr, name) for name, arr in outputs.items()}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: v[i] for name, v in values.items()} for i in range(rows)]}
