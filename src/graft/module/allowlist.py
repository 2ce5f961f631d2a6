"""Which classes a saved ``model.keras`` may name, checked before Keras deserialises anything.

``safe_mode=True`` already refuses Lambda bytecode; the allowlist also refuses any class from a
package outside Keras, KerasHub and graft's own registered layers, so loading a module never
imports user code unless the caller passes ``trust=True``.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from graft.errors import UnsafeModelError, received

ALLOWED_MODULE_PREFIXES = ("keras", "keras_hub")
DENIED_CLASSES = frozenset({"Lambda", "TFSMLayer"})
MAX_CONFIG_BYTES = 64 * 1024 * 1024


def graft_classes() -> frozenset[str]:
    """Registered names of graft's own serialisable layers (``graft>...``)."""
    from graft.models.layers import CUSTOM_LAYERS

    return frozenset(CUSTOM_LAYERS)


def _objects(node: object) -> Iterator[dict]:
    if isinstance(node, dict):
        if "class_name" in node and ("module" in node or "registered_name" in node):
            yield node
        for value in node.values():
            yield from _objects(value)
    elif isinstance(node, list):
        for value in node:
            yield from _objects(value)


def read_config(keras_file: str | Path) -> dict:
    """Reads ``config.json`` out of a ``.keras`` archive without loading the model."""
    keras_file = Path(keras_file)
    try:
        with zipfile.ZipFile(keras_file) as archive:
            info = archive.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise UnsafeModelError(
                    f"{keras_file}: config.json is {info.file_size} bytes, more than the "
                    f"{MAX_CONFIG_BYTES} allowed. {received(path=str(keras_file))}"
                )
            return json.loads(archive.read(info))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise UnsafeModelError(
            f"{keras_file} is not a Keras v3 .keras archive with a config.json ({exc}). "
            f"{received(path=str(keras_file))}"
        ) from None


def check_allowlist(keras_file: str | Path) -> None:
    """Raises if ``keras_file`` names any class graft does not trust.

    Allowed: classes from ``keras`` and ``keras_hub`` except ``Lambda`` and ``TFSMLayer``, and
    graft's registered layers.

    Raises:
        UnsafeModelError: naming the first disallowed class and the module it comes from.
    """
    allowed_graft = graft_classes()
    for obj in _objects(read_config(keras_file)):
        class_name = str(obj.get("class_name"))
        module = str(obj.get("module") or "")
        registered = obj.get("registered_name")
        top = module.split(".", 1)[0]
        if module.startswith("graft.") or (registered or "").startswith("graft>"):
            ok = registered in allowed_graft
        else:
            ok = top in ALLOWED_MODULE_PREFIXES and class_name not in DENIED_CLASSES
        if not ok:
            where = f"{module}.{class_name}" if module else class_name
            raise UnsafeModelError(
                f"{keras_file} uses the layer class {where!r}, which is not on graft's "
                "allowlist (Keras and KerasHub classes except Lambda/TFSMLayer, plus graft's "
                "own layers). Rebuild the model without it, or pass trust=True if you trust "
                f"the file's author. {received(class_name=where)}"
            )
