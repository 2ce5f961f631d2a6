"""Saving and loading modules: a directory with manifest.json, model.keras and assets/."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graft._atomic import replace_dir
from graft.errors import ChecksumError, ManifestError, ModuleExistsError, received
from graft.module.allowlist import check_allowlist
from graft.module.manifest import FileEntry, Manifest

if TYPE_CHECKING:
    import keras

MODEL_FILE = "model.keras"
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "assets/labels.txt"


@dataclass(frozen=True)
class LoadedModule:
    """A module read from disk."""

    model: keras.Model
    manifest: Manifest
    path: Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _file_table(root: Path) -> dict[str, FileEntry]:
    table = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST_FILE:
            table[rel] = FileEntry(sha256=sha256_file(path), size=path.stat().st_size)
    return table


def is_module_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like a module directory (has a manifest.json)."""
    return (Path(path) / MANIFEST_FILE).is_file()


def save(
    model: keras.Model,
    directory: str | Path,
    manifest: Manifest,
    *,
    assets: dict[str, bytes] | None = None,
    overwrite: bool = False,
) -> Manifest:
    """Writes a module atomically: into a temporary sibling directory, then renamed.

    The manifest's ``files`` table (sha256 and size of every file) and ``params`` are filled
    in; labels, if any, are also written to ``assets/labels.txt``.

    Args:
        model: the Keras model (raw input in, outputs as the manifest says).
        directory: where the module goes; its parent is created.
        manifest: metadata; ``files`` is replaced.
        assets: extra files, ``{relative path under assets/: bytes}``.
        overwrite: replace an existing module directory.

    Returns:
        The manifest as written.

    Raises:
        ModuleExistsError: ``directory`` exists and ``overwrite`` is false.

    Example:
        >>> save(model, "out/flowers", manifest)  # doctest: +SKIP
    """
    directory = Path(directory)
    if directory.exists() and not overwrite:
        raise ModuleExistsError(
            f"{directory} already exists; pass overwrite=True to replace it. "
            f"{received(directory=str(directory))}"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        model.save(tmp / MODEL_FILE)
        files: dict[str, bytes] = dict(assets or {})
        if manifest.labels:
            files[LABELS_FILE.removeprefix("assets/")] = (
                "\n".join(manifest.labels) + "\n"
            ).encode()
        for rel, data in files.items():
            target = tmp / "assets" / rel
            if not target.resolve().is_relative_to((tmp / "assets").resolve()):
                raise ValueError(f"asset path escapes assets/. {received(asset=rel)}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        final = manifest.model_copy(
            update={"files": _file_table(tmp), "params": int(model.count_params())}
        )
        (tmp / MANIFEST_FILE).write_text(final.to_json(), encoding="utf-8")
        replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def verify(directory: str | Path) -> Manifest:
    """Checks every file the manifest lists against its size and sha256.

    Raises:
        ManifestError: the manifest is missing or invalid, or lists no model.keras.
        ChecksumError: a listed file is missing or differs, naming the file.
    """
    directory = Path(directory)
    manifest = Manifest.read(directory / MANIFEST_FILE)
    if MODEL_FILE not in manifest.files:
        raise ManifestError(
            f"{directory / MANIFEST_FILE} lists no {MODEL_FILE}. {received(path=str(directory))}"
        )
    for rel, entry in manifest.files.items():
        path = directory / rel
        if not path.resolve().is_relative_to(directory.resolve()):
            raise ManifestError(f"manifest file path escapes the module. {received(path=rel)}")
        if not path.is_file():
            raise ChecksumError(
                f"{path} is listed in the manifest but missing. {received(path=rel)}"
            )
        size = path.stat().st_size
        if size != entry.size:
            raise ChecksumError(
                f"{path} is {size} bytes, the manifest says {entry.size}: the file is corrupt "
                f"or was changed. {received(path=rel)}"
            )
        actual = sha256_file(path)
        if actual != entry.sha256:
            raise ChecksumError(
                f"{path} has sha256 {actual}, the manifest says {entry.sha256}: the file is "
                f"corrupt or was changed. {received(path=rel)}"
            )
    return manifest


def load(directory: str | Path, *, trust: bool = False) -> LoadedModule:
    """Loads a module safely: checksums, then the class allowlist, then Keras with
    ``safe_mode=True``.

    Args:
        directory: the module directory.
        trust: skip the class allowlist (``safe_mode`` stays on).

    Returns:
        The model (uncompiled), its manifest and its path.

    Raises:
        ManifestError, ChecksumError, UnsafeModelError: see ``verify`` and
            ``check_allowlist``.

    Example:
        >>> m = load(graft.models.materialize("efficientnet_lite0.imagenet"))  # doctest: +SKIP
        >>> m.manifest.outputs.dim  # doctest: +SKIP
        1280
    """
    import keras

    import graft.models.layers  # noqa: F401  (registers graft's layer classes)

    directory = Path(directory)
    manifest = verify(directory)
    model_path = directory / MODEL_FILE
    if not trust:
        check_allowlist(model_path)
    model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    return LoadedModule(model=model, manifest=manifest, path=directory)
