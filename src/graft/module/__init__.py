"""The module format: ``manifest.json`` + ``model.keras`` + ``assets/``."""

from graft.module.io import LoadedModule, is_module_dir, load, save, sha256_file, verify
from graft.module.manifest import (
    FileEntry,
    InputSpec,
    LayerGroup,
    Manifest,
    OutputSpec,
    Provenance,
)

__all__ = [
    "FileEntry",
    "InputSpec",
    "LayerGroup",
    "LoadedModule",
    "Manifest",
    "OutputSpec",
    "Provenance",
    "is_module_dir",
    "load",
    "save",
    "sha256_file",
    "verify",
]
