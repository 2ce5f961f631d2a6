"""The module manifest: what a saved module is, what it takes and returns, where it came from.

A manifest is a frozen pydantic model that round-trips through ``manifest.json``. It is metadata
only; the network itself lives in ``model.keras`` beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from graft.errors import ManifestError, received

FORMAT_VERSION = 1
TASKS = (
    "image-feature-vector",
    "image-classifier",
    "text-embedding",
    "text-classifier",
    "rl-policy",
)
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_.-")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """What the model's input must look like.

    Images are float32 ``(batch, height, width, 3)`` RGB in ``value_range``; the module's own
    first layers apply ``normalization``. With ``encoded``, images are instead a ``(batch,)``
    string tensor of encoded files (JPEG, PNG, GIF, BMP) that the module decodes and resizes to
    ``size`` itself. Text is a ``(batch,)`` string tensor. An observation (a reinforcement
    learning policy's input) is float32 ``(batch, *shape)`` from the Gymnasium environment
    ``environment``.
    """

    kind: Literal["image", "text", "observation"]
    encoded: bool = False
    size: tuple[int, int] | None = None
    value_range: tuple[float, float] | None = None
    normalization: str = ""
    max_length: int | None = None
    shape: tuple[int, ...] | None = None
    environment: str | None = None


class OutputSpec(_Frozen):
    """What the model returns."""

    kind: Literal["feature_vector", "probabilities", "logits", "q_values"]
    dim: int = Field(gt=0)


class HeadSpec(_Frozen):
    """One task of a multi-task classifier: the name of its output and its labels."""

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
    labels: tuple[str, ...]


class Provenance(_Frozen):
    """Where the weights came from and how they were turned into this module."""

    source: str
    converted_from: str = ""
    source_sha256: str = ""
    reference: str = ""


class FileEntry(_Frozen):
    """A file of the module, with the checksum ``graft.module.load`` verifies."""

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class LayerGroup(_Frozen):
    """A named block of layers; groups are listed from input to output."""

    name: str
    layers: tuple[str, ...]


class Manifest(_Frozen):
    """Metadata of one module version (``manifest.json``).

    Example:
        >>> m = Manifest(name="demo.tiny", task="image-feature-vector",
        ...              inputs=InputSpec(kind="image", size=(16, 16), value_range=(0, 1)),
        ...              outputs=OutputSpec(kind="feature_vector", dim=8))
        >>> Manifest.from_json(m.to_json()) == m
        True
    """

    format_version: int = FORMAT_VERSION
    name: str
    version: str = "1"
    task: Literal[
        "image-feature-vector", "image-classifier", "text-embedding", "text-classifier", "rl-policy"
    ]
    description: str = ""
    inputs: InputSpec
    outputs: OutputSpec
    labels: tuple[str, ...] | None = None
    license: str = ""
    provenance: Provenance | None = None
    params: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    groups: tuple[LayerGroup, ...] = ()
    # A multi-task classifier: one output per head, named by the head (its model returns a
    # dict); ``labels`` and ``outputs`` then describe the first head.
    heads: tuple[HeadSpec, ...] | None = None
    tags: tuple[str, ...] = ()
    files: dict[str, FileEntry] = Field(default_factory=dict)

    @field_validator("format_version")
    @classmethod
    def _known_format(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(
                f"this graft reads manifest format_version {FORMAT_VERSION}; upgrade graft to "
                f"read newer modules. {received(format_version=value)}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not value or not set(value) <= _NAME_CHARS or value[0] in ".-":
            raise ValueError(
                "a module name uses lowercase letters, digits, '_', '.' and '-', and starts "
                f"with a letter or digit (for example 'flowers.v2'). {received(name=value)}"
            )
        return value

    def to_json(self) -> str:
        """Serialises to the JSON text of ``manifest.json``."""
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "manifest.json") -> Manifest:
        """Parses and validates manifest JSON text.

        Raises:
            ManifestError: the text is not JSON or does not match the schema.
        """
        try:
            return cls.model_validate(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ManifestError(
                f"{source} is not valid JSON ({exc.msg} at line {exc.lineno}). "
                f"{received(path=source)}"
            ) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ManifestError(
                f"{source} does not match the graft manifest schema: {problems}. "
                f"{received(path=source)}"
            ) from None

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Reads ``manifest.json`` from a file path."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ManifestError(
                f"No manifest.json in {path.parent}: a graft module is a directory with "
                f"manifest.json, model.keras and optional assets/. {received(path=str(path))}"
            ) from None
        return cls.from_json(text, source=str(path))
