"""Materialising zoo entries as modules in the cache: ``$GRAFT_HOME/modules/<name>/<version>``.

Conversion runs once per entry and version. It happens under a per-entry file lock, and the
module is written to a temporary directory and renamed, so concurrent processes end up with one
intact module and an interrupted conversion leaves nothing behind.
"""

from __future__ import annotations

import logging
from pathlib import Path

from graft import config
from graft.models.registry import ModelSpec, get

log = logging.getLogger(__name__)


def module_path(spec: ModelSpec) -> Path:
    """Where the cache keeps a zoo entry's module."""
    return config.graft_home() / "modules" / spec.name / spec.version


def lock_path(spec: ModelSpec) -> Path:
    return config.graft_home() / "locks" / f"{spec.name}@{spec.version}.lock"


def is_materialized(name: str) -> bool:
    """Whether the entry's module is already in the cache (no TensorFlow import)."""
    return (module_path(get(name)) / "manifest.json").is_file()


def materialize(name: str, *, force: bool = False) -> Path:
    """Returns the cached module directory of a zoo entry, building it on first use.

    Args:
        name: a zoo name, ``arch.tag``.
        force: rebuild even if a cached module exists.

    Returns:
        The module directory.

    Raises:
        ModelNotFoundError: unknown name.
        WeightsError: the weights cannot be found, read or downloaded.

    Example:
        >>> materialize("efficientnet_lite0.imagenet").name  # doctest: +SKIP
        '1'
    """
    from filelock import FileLock

    spec = get(name)
    target = module_path(spec)
    if not force and (target / "manifest.json").is_file():
        return target
    lock = lock_path(spec)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        if not force and (target / "manifest.json").is_file():
            return target  # another process finished it while we waited
        _build_into(spec, target)
    return target


def _build_into(spec: ModelSpec, target: Path) -> None:
    from graft.module.io import save
    from graft.module.manifest import Manifest

    log.info("Building %s into %s", spec.name, target)
    built = spec.build_function()(spec)
    manifest = Manifest(
        name=spec.name,
        version=spec.version,
        task=spec.task,
        description=spec.description,
        inputs=spec.inputs,
        outputs=spec.outputs,
        labels=built.labels,
        license=spec.license,
        provenance=built.provenance,
        groups=built.groups,
        tags=("zoo", spec.arch),
    )
    save(built.model, target, manifest, overwrite=True)
