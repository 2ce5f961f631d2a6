"""``models:/NAME@alias`` and ``models:/NAME/VERSION``: modules from an MLflow registry, in
graft's checksum-verified cache.

A registered version is immutable, so it is downloaded once into
``$GRAFT_HOME/mlflow/<store>/<name>/<version>/`` (to a temporary folder, checked against the
module's manifest, then renamed); an alias is asked of the registry every time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from graft.errors import ModelNotFoundError, TrackingError, received

HANDLE = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-.]+)|/(?P<version>\d+))")
FORMS = "models:/NAME@ALIAS or models:/NAME/VERSION"


def registry_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the local store (``./mlruns/mlflow.db``) if it exists."""
    from graft.tracking.tracker import LOCAL_DIR, local_store_uri, tracking_uri

    uri = tracking_uri()
    if uri is None and (Path(LOCAL_DIR) / "mlflow.db").is_file():
        uri = local_store_uri()
    if uri is None:
        raise TrackingError(
            "A models:/ handle names a model in an MLflow registry, but none is configured: "
            "set MLFLOW_TRACKING_URI (or run where ./mlruns/mlflow.db, the local store, is). "
            f"{received(tracking_uri=None)}"
        )
    return uri


def resolve(handle: str) -> Path:
    """The module directory of a registered model version (downloaded once, verified).

    Raises:
        ModelNotFoundError: malformed handle, or no such model, version or alias.
        TrackingError: the registry cannot be reached.
        ChecksumError: the downloaded module does not match its manifest.
    """
    from graft.config import graft_home
    from graft.module.io import is_module_dir, verify
    from graft.tracking.tracker import Tracker, _short, cache_key, pointed

    match = HANDLE.fullmatch(handle)
    if not match:
        raise ModelNotFoundError(f"A registry handle is {FORMS}. {received(handle=handle)}")
    name = match["name"]
    uri = registry_uri()

    def cached(version) -> tuple[Path, bool]:
        """The version's folder in the cache, and whether a verified copy is there."""
        path = graft_home() / "mlflow" / cache_key(uri) / name / str(int(version))
        if is_module_dir(path):
            verify(path)
            return path, True
        return path, False

    if match["version"]:  # an immutable version: the cached copy needs no registry
        dest, hit = cached(match["version"])
        if hit:
            return dest
    tracker = Tracker(uri)
    try:
        client = tracker.client()
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"]).version
        else:
            version = client.get_model_version(name, match["version"]).version
    except Exception as exc:
        text = f"{getattr(exc, 'error_code', '')} {exc}"
        if "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower():
            raise ModelNotFoundError(
                f"The registry at {uri} has no {handle[len('models:/') :]} ({_short(exc)}). "
                f"{received(handle=handle)}"
            ) from None
        raise TrackingError(
            f"Cannot ask the MLflow registry at {uri} for {handle} ({_short(exc)}). "
            f"{received(handle=handle)}"
        ) from None
    dest, hit = cached(version)
    if hit:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
    try:
        with pointed(uri) as mlflow:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=str(tmp), tracking_uri=uri
            )
        module = Path(local) / "artifacts" / "module"
        verify(module)
        try:
            os.replace(module, dest)
        except OSError:  # another process put it there first
            if not is_module_dir(dest):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
