"""Which models to serve: a base directory (TF Serving's ``<root>/<model>/<version>/``) or
TF Serving's own ``models.config`` (protobuf text format), with version policies and labels.

Example ``models.config``::

    model_config_list {
      config {
        name: "digits"
        base_path: "/models/digits"
        model_platform: "tensorflow"
        model_version_policy { latest { num_versions: 2 } }
        version_labels { key: "stable" value: 1 }
        version_labels { key: "canary" value: 2 }
      }
    }
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from graft.errors import InvalidArgumentError, received

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
NAME_RULE = "1-128 letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True)
class ModelConfig:
    """One served model.

    Args:
        name: the ``{model}`` in ``/v1/models/{model}``.
        base_path: holds one directory per version (``1/``, ``2/`` ...).
        policy: ``latest`` (the ``num_versions`` highest), ``all``, or ``specific``
            (``versions``).
        labels: ``{label: version}`` for ``/labels/{label}`` requests.
        single: a module or SavedModel directory served as version 1 (no version folders).
    """

    name: str
    base_path: Path
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: dict[str, int] = field(default_factory=dict)
    single: bool = False

    def aspired(self, on_disk: list[int]) -> set[int]:
        """The versions this policy wants loaded, out of those on disk."""
        if self.policy == "all":
            wanted = set(on_disk)
        elif self.policy == "specific":
            wanted = set(self.versions) & set(on_disk)
        else:
            wanted = set(sorted(on_disk)[-self.num_versions :]) if on_disk else set()
        return wanted | (set(self.labels.values()) & set(on_disk))

    def list_versions(self) -> dict[int, Path]:
        if self.single:
            return {1: self.base_path} if self.base_path.is_dir() else {}
        if not self.base_path.is_dir():
            return {}
        out = {}
        for child in self.base_path.iterdir():
            if child.is_dir() and child.name.isdigit() and len(child.name) < 19:
                out[int(child.name)] = child
        return out


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidArgumentError(f"A model name is {NAME_RULE}. {received(name=name)}")
    return name


def _is_version_root(path: Path) -> bool:
    return (path / "manifest.json").is_file() or (path / "saved_model.pb").is_file()


def discover(model_dir: str | Path, model_name: str | None = None) -> list[ModelConfig]:
    """Models under ``model_dir``:

    - ``model_dir`` is itself a module or SavedModel: one model, version 1;
    - it is a run folder of ``graft train`` (a ``module/`` inside): that module, named after
      the run;
    - it has numbered subdirectories: one model with those versions;
    - otherwise each subdirectory is a model with numbered version subdirectories.

    Raises:
        InvalidArgumentError: ``model_dir`` is not a directory.
    """
    handle = str(model_dir)
    if handle.startswith(("models:/", "hub://", "hubs://", "http://", "https://")):
        from graft.handles import resolve

        name = model_name or handle.split("/")[-1].split("@")[0].split("#")[0] or "model"
        if handle.startswith("models:/"):
            name = model_name or handle.removeprefix("models:/").split("@")[0].split("/")[0]
        return [ModelConfig(check_name(name), resolve(handle), single=True)]
    root = Path(model_dir)
    if not root.is_dir():
        raise InvalidArgumentError(
            "--model-dir must be a directory laid out as DIR/<model>/<version>/ (TF Serving's "
            f"base path), one model's DIR/<version>/, or a single module. "
            f"{received(model_dir=str(model_dir))}"
        )
    if _is_version_root(root):
        return [ModelConfig(check_name(model_name or "model"), root, single=True)]
    if _is_version_root(root / "module"):
        from graft.handles import notice

        notice(f"{root} is a run folder: serving its module, {root / 'module'}.")
        return [ModelConfig(check_name(model_name or root.name), root / "module", single=True)]
    children = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if any(p.name.isdigit() for p in children):
        return [ModelConfig(check_name(model_name or root.name), root)]
    return [ModelConfig(check_name(p.name), p) for p in children if NAME.match(p.name)]


# -- protobuf text format (the subset models.config uses) ------------------------------------
_TOKEN = re.compile(
    r"""\s*(?:(?P<comment>\#[^\n]*)|(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<num>-?\d+(?:\.\d+)?)|(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)|(?P<punct>[{}:<>;,]))""",
    re.S,
)


def _tokens(text: str, source: str):
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            return
        m = _TOKEN.match(text, pos)
        if not m:
            line = text.count("\n", 0, pos) + 1
            raise InvalidArgumentError(
                f"{source}:{line}: cannot read the model config (protobuf text format). "
                f"{received(text=text[pos : pos + 20])}"
            )
        pos = m.end()
        if m.lastgroup != "comment":
            yield m.lastgroup, m.group(m.lastgroup), text.count("\n", 0, m.start()) + 1


def parse_pbtxt(text: str, source: str = "models.config") -> dict:
    """Parses protobuf text format into ``{field: [values]}`` (nested messages are dicts).

    Raises:
        InvalidArgumentError: a syntax error, with the line number.
    """
    tokens = list(_tokens(text, source))
    pos = 0

    def fail(message: str, line: int):
        raise InvalidArgumentError(f"{source}:{line}: {message}")

    def message(closing: str | None) -> dict:
        nonlocal pos
        out: dict[str, list] = {}
        while pos < len(tokens):
            kind, value, line = tokens[pos]
            if kind == "punct" and value in ("}", ">"):
                if closing is None or value != closing:
                    fail(f"unexpected {value!r}. {received(token=value)}", line)
                pos += 1
                return out
            if kind == "punct" and value in (";", ","):
                pos += 1
                continue
            if kind != "ident":
                fail(f"expected a field name. {received(token=value)}", line)
            pos += 1
            if pos < len(tokens) and tokens[pos][1] == ":":
                pos += 1
            if pos >= len(tokens):
                fail(f"field {value!r} has no value. {received(field=value)}", line)
            vkind, vvalue, vline = tokens[pos]
            pos += 1
            if vkind == "punct" and vvalue in ("{", "<"):
                item = message("}" if vvalue == "{" else ">")
            elif vkind == "str":
                item = bytes(vvalue[1:-1], "utf-8").decode("unicode_escape")
            elif vkind == "num":
                item = float(vvalue) if "." in vvalue else int(vvalue)
            elif vkind == "ident":
                item = vvalue
            else:
                fail(f"field {value!r} has no value. {received(token=vvalue)}", vline)
            out.setdefault(value, []).append(item)
        if closing is not None:
            fail(f"missing {closing!r} at the end. {received(closing=closing)}", tokens[-1][2])
        return out

    return message(None)


def _one(msg: dict, key: str, default=None):
    values = msg.get(key)
    return values[-1] if values else default


def read_model_config(path: str | Path) -> list[ModelConfig]:
    """TF Serving's ``--model_config_file``: names, base paths, version policies, labels.

    Relative base paths are relative to the config file.

    Raises:
        InvalidArgumentError: unreadable or invalid, naming the line or field.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidArgumentError(
            f"Cannot read the model config file: {exc.strerror}. {received(path=str(path))}"
        ) from None
    doc = parse_pbtxt(text, str(path))
    lists = doc.get("model_config_list", [])
    if len(lists) != 1 or not isinstance(lists[0], dict):
        raise InvalidArgumentError(
            f"{path}: expected one `model_config_list {{ config {{ ... }} }}`. "
            f"{received(fields=sorted(doc))}"
        )
    configs = []
    for entry in lists[0].get("config", []):
        name = _one(entry, "name")
        base = _one(entry, "base_path")
        if not isinstance(name, str) or not isinstance(base, str):
            raise InvalidArgumentError(
                f"{path}: every config needs `name` and `base_path` strings. "
                f"{received(name=name, base_path=base)}"
            )
        check_name(name)
        platform = _one(entry, "model_platform", "tensorflow")
        if platform != "tensorflow":
            raise InvalidArgumentError(
                f"{path}: model_platform must be 'tensorflow' (graft modules and SavedModels). "
                f"{received(model_platform=platform)}"
            )
        policy, num, versions = "latest", 1, ()
        spec = _one(entry, "model_version_policy", {})
        if "all" in spec:
            policy = "all"
        elif "specific" in spec:
            policy = "specific"
            versions = tuple(int(v) for v in _one(spec, "specific").get("versions", []))
        elif "latest" in spec:
            num = int(_one(_one(spec, "latest"), "num_versions", 1))
            if num < 1:
                raise InvalidArgumentError(
                    f"{path}: latest.num_versions must be at least 1. {received(num_versions=num)}"
                )
        labels = {}
        for item in entry.get("version_labels", []):
            key, value = _one(item, "key"), _one(item, "value")
            if not isinstance(key, str) or not isinstance(value, int):
                raise InvalidArgumentError(
                    f"{path}: version_labels need a string key and an integer value. "
                    f"{received(key=key, value=value)}"
                )
            labels[key] = value
        base_path = Path(base)
        if not base_path.is_absolute():
            base_path = path.parent / base_path
        configs.append(
            ModelConfig(name, base_path, policy, num, versions, labels, _is_version_root(base_path))
        )
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"{path}: model names must be unique. {received(names=names)}")
    return configs
