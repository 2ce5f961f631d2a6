"""The zoo registry: one table of ``arch.tag`` names with metadata, importable without TensorFlow.

Entries register themselves from the families' ``presets.py`` files, which hold only data; the
heavy builder each entry names (``"module:function"``) is imported when the entry is
materialised.
"""

from __future__ import annotations

import builtins
import difflib
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any

from graft.errors import InvalidArgumentError, ModelNotFoundError, received
from graft.module.manifest import TASKS, InputSpec, OutputSpec

_REGISTRY: dict[str, ModelSpec] = {}
_PRESET_MODULES = (
    "graft.models.efficientnet_lite.presets",
    "graft.models.minilm.presets",
    "graft.models.keras_apps",
)
HANDLE_FORMS = (
    "a zoo name 'arch.tag' (see `graft models list`), a hub handle "
    "'hub://host:port/name[@version|@label]' (hubs:// for HTTPS), an http(s):// URL of a module "
    "archive (.tar, .tar.gz; '#sha256=<hex>' pins it), an MLflow registry handle "
    "'models:/NAME@alias' or 'models:/NAME/VERSION', "
    "a local module directory holding manifest.json and model.keras, "
    "or a run folder of `graft train` (its module/ is used)"
)


@dataclass(frozen=True)
class ModelSpec:
    """A zoo entry: everything known about a model before anything is built.

    Attributes:
        name: ``arch.tag``, for example ``efficientnet_lite0.imagenet``.
        task: one of ``graft.module.manifest.TASKS``.
        inputs: what the model takes.
        outputs: what it returns.
        params: parameter count of the built model.
        license: license of the weights.
        source: where the weights come from (a package or URL).
        builder: ``"module:function"`` that turns the spec into a module's contents.
        description: one line for tables.
        labels: ``"imagenet"`` for ImageNet classifiers.
        options: builder arguments.
        version: module version materialised in the cache.
    """

    name: str
    task: str
    inputs: InputSpec
    outputs: OutputSpec
    params: int
    license: str
    source: str
    builder: str
    description: str = ""
    labels: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    version: str = "1"

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    def build_function(self):
        """Imports and returns the builder callable (this may import TensorFlow)."""
        module_name, _, attr = self.builder.partition(":")
        return getattr(importlib.import_module(module_name), attr)


def register(spec: ModelSpec) -> ModelSpec:
    """Adds an entry to the zoo.

    Raises:
        InvalidArgumentError: the name is not ``arch.tag``, the task is unknown, or the name is
            taken.
    """
    if spec.name.count(".") != 1 or not all(spec.name.split(".")):
        raise InvalidArgumentError(
            f"Zoo names have the form 'arch.tag', for example 'efficientnet_lite0.imagenet'. "
            f"{received(name=spec.name)}"
        )
    if spec.task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {TASKS}. {received(task=spec.task)}")
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise InvalidArgumentError(f"A zoo entry with this name exists. {received(name=spec.name)}")
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_loaded() -> None:
    for module in _PRESET_MODULES:
        importlib.import_module(module)


def get(name: str) -> ModelSpec:
    """Returns the zoo entry called ``name``.

    Example:
        >>> get("efficientnet_lite0.imagenet").outputs.dim
        1280

    Raises:
        ModelNotFoundError: no such entry; the message lists close matches.
    """
    _ensure_loaded()
    if not isinstance(name, str):
        raise ModelNotFoundError(f"A model name is a string 'arch.tag'. {received(name=name)}")
    try:
        return _REGISTRY[name]
    except KeyError:
        pass
    close = difflib.get_close_matches(name, _REGISTRY, n=4, cutoff=0.5)
    close += [n for n in sorted(_REGISTRY) if n.startswith(name + ".") and n not in close]
    hint = f" Did you mean: {', '.join(repr(c) for c in close[:5])}?" if close else ""
    raise ModelNotFoundError(
        f"Unknown model {name!r}.{hint} A handle is {HANDLE_FORMS}. {received(name=name)}"
    )


def list(pattern: str | None = None, task: str | None = None) -> builtins.list[ModelSpec]:  # noqa: A001
    """Lists zoo entries, sorted by name.

    Args:
        pattern: shell-style pattern on names (``"efficientnet*"``); a pattern without
            wildcards matches as a substring.
        task: keep only entries of this task.

    Example:
        >>> [s.name for s in list("minilm*")]
        ['minilm_l6.sentence']

    Raises:
        InvalidArgumentError: ``task`` is not a known task.
    """
    _ensure_loaded()
    if task is not None and task not in TASKS:
        raise InvalidArgumentError(f"task must be one of {', '.join(TASKS)}. {received(task=task)}")
    if pattern and not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    specs = sorted(_REGISTRY.values(), key=lambda s: s.name)
    return [
        s
        for s in specs
        if (pattern is None or fnmatch.fnmatchcase(s.name, pattern))
        and (task is None or s.task == task)
    ]
