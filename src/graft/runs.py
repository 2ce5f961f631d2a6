"""Run folders on this machine: list them, show one, compare several (``graft runs``).

A run folder is what ``graft train``, ``graft tune`` and ``graft ensemble`` write: it holds
``config.json`` and ``splits.json`` from its first second, then ``state.json`` and checkpoints
while it trains, and ``module/``, ``metrics.json`` and ``run.json`` once it has finished. That
is enough to tell a run's status without any database:

- ``finished``: the module and the test metrics are there;
- ``resumable``: it stopped after a checkpoint (``state.json`` says which epoch of which stage);
  ``--resume`` continues from there;
- ``killed``: it stopped before its first checkpoint (while computing features, or while fitting
  a convex head); ``--resume`` starts it again from the cached features.

``graft rl train`` run folders (``config.json`` naming a Gymnasium environment, ``checkpoint/``
while training, ``metrics.json`` with the mean return) are listed too, as kind ``rl``.

Only JSON is read: no TensorFlow, so ``graft runs`` answers at once.

Example:
    >>> from graft.runs import find_runs
    >>> [(r.name, r.status) for r in find_runs("runs")]  # doctest: +SKIP
    [('flowers', 'finished'), ('flowers-ft', 'resumable')]
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from graft.errors import InvalidArgumentError, received

_NOT_RUNS = {"module", "checkpoints", "tensorboard", "trials", "members", "__pycache__"}


@dataclass(frozen=True)
class RunInfo:
    """What a run folder says about itself.

    Attributes:
        path: the folder.
        name: its path relative to the listed root.
        kind: ``train``, ``tune``, ``ensemble`` or ``rl``.
        status: ``finished``, ``resumable`` or ``killed``.
        started: when it started (seconds since the epoch: ``config.json`` written).
        backbone: the backbone, or the members joined by ``+``.
        data: the data's name and its train/validation/test counts.
        accuracy: test accuracy (``None`` until it has finished, and for ``rl`` runs).
        seconds: time spent, from the recorded stage timings.
        progress: where an unfinished run got to (``head epoch 7``).
        config, metrics, run: ``config.json``, ``metrics.json`` and ``run.json`` as read.
        mean_return: an ``rl`` run's final mean return.
    """

    path: Path
    name: str
    kind: str
    status: str
    started: float
    backbone: str
    data: str
    accuracy: float | None
    seconds: float | None
    progress: str = ""
    config: dict = field(default_factory=dict, repr=False)
    metrics: dict = field(default_factory=dict, repr=False)
    run: dict = field(default_factory=dict, repr=False)
    mean_return: float | None = None
    task_accuracy: dict | None = None  # a multi-task run: test accuracy per task

    @property
    def result(self) -> str:
        """The headline figure in words: the accuracy (per task for a multi-task run), or an
        ``rl`` run's mean return."""
        if self.mean_return is not None:
            return f"return {self.mean_return:.1f}"
        if self.task_accuracy:
            return ", ".join(f"{t} {a:.4f}" for t, a in self.task_accuracy.items())
        return "—" if self.accuracy is None else f"{self.accuracy:.4f}"

    def summary(self) -> dict:
        """A JSON-ready row (what ``graft runs ls --json`` prints)."""
        return {
            "name": self.name,
            "path": str(self.path),
            "kind": self.kind,
            "status": self.status,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "backbone": self.backbone,
            "data": self.data,
            "accuracy": self.accuracy,
            "mean_return": self.mean_return,
            "seconds": self.seconds,
            "progress": self.progress,
        }


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_rl(path: Path) -> bool:
    config = _json(path / "config.json")
    return "environment" in config and "env_id" in (config.get("config") or {})


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a run folder (``config.json`` and ``splits.json``, or an ``rl``
    run's ``config.json``)."""
    if not (path / "config.json").is_file():
        return False
    return (path / "splits.json").is_file() or _is_rl(path)


def _read_rl(path: Path, name: str | None) -> RunInfo:
    config = _json(path / "config.json")
    settings = config.get("config") or {}
    metrics = _json(path / "metrics.json")
    state = _json(path / "checkpoint" / "state.json")
    finished = (path / "module" / "manifest.json").is_file() and "mean_return" in metrics
    status = "finished" if finished else ("resumable" if state else "killed")
    steps = settings.get("steps")
    hidden = "x".join(str(h) for h in settings.get("hidden", ()))
    return RunInfo(
        path=path,
        name=name or path.name,
        kind="rl",
        status=status,
        started=(path / "config.json").stat().st_mtime,
        backbone=f"DQN ({hidden})" if hidden else "DQN",
        data=str(settings.get("env_id", "?")),
        accuracy=None,
        seconds=(metrics.get("seconds") if finished else state.get("seconds")) or None,
        progress="" if finished or not state else f"step {state.get('step', 0):,} of {steps:,}",
        config=config,
        metrics=metrics,
        mean_return=float(metrics["mean_return"]) if finished else None,
    )


def _seconds(timings) -> float:
    """The sum of every ``*_s`` figure in a (nested) timings dict."""
    total = 0.0
    for key, value in (timings or {}).items():
        if isinstance(value, dict):
            total += _seconds(value)
        elif key.endswith("_s") and isinstance(value, int | float) and math.isfinite(value):
            total += float(value)
    return total


def _data(path: Path) -> str:
    splits = _json(path / "splits.json")
    source = Path(str(splits.get("source", "?"))).name or "?"
    counts = [len((splits.get(s) or {}).get("items", ())) for s in ("train", "val", "test")]
    return f"{source} ({'/'.join(map(str, counts))})"


def _progress(state: dict) -> str:
    parts = []
    for stage, info in state.items():
        if isinstance(info, dict) and "epochs_done" in info:
            parts.append(f"{stage} epoch {info['epochs_done']}")
    return ", ".join(parts)


def read_run(path: str | os.PathLike, name: str | None = None) -> RunInfo:
    """Reads one run folder.

    Raises:
        InvalidArgumentError: ``path`` is not a run folder.

    Example:
        >>> read_run("runs/flowers").status  # doctest: +SKIP
        'finished'
    """
    path = Path(path)
    if not is_run_folder(path):
        raise InvalidArgumentError(
            f"{path} is not a run folder: graft train, tune and ensemble write config.json and "
            f"splits.json into theirs, graft rl train a config.json naming its environment "
            f"(`graft runs ls` lists the runs under a folder). {received(run=str(path))}"
        )
    if _is_rl(path):
        return _read_rl(path, name)
    config = _json(path / "config.json")
    metrics = _json(path / "metrics.json")
    run = _json(path / "run.json")
    state = _json(path / "state.json")
    if (path / "tune.json").is_file():
        kind = "tune"
    elif "models" in config:
        kind = "ensemble"
    elif "tasks" in config:
        kind = "multi-task"
    else:
        kind = "train"
    backbone = "+".join(config["models"]) if kind == "ensemble" else str(config.get("model", "?"))
    tasks = {t: float(m["accuracy"]) for t, m in (metrics.get("tasks") or {}).items()}
    if tasks:  # a multi-task run: its headline accuracy is the mean over the tasks
        metrics = {**metrics, "accuracy": sum(tasks.values()) / len(tasks)}
    finished = (path / "module" / "manifest.json").is_file() and "accuracy" in metrics
    if finished:
        status = "finished"
    elif state:
        status = "resumable"
    else:
        status = "killed"
    seconds = _seconds(run.get("timings"))
    if not finished:
        seconds = sum(
            sum(info.get("history", {}).get("seconds", []) or [])
            for info in state.values()
            if isinstance(info, dict)
        )
    return RunInfo(
        path=path,
        name=name or path.name,
        kind=kind,
        status=status,
        started=(path / "config.json").stat().st_mtime,
        backbone=backbone,
        data=_data(path),
        accuracy=float(metrics["accuracy"]) if finished else None,
        seconds=seconds or None,
        progress="" if finished else _progress(state),
        config=config,
        metrics=metrics,
        run=run,
        task_accuracy=tasks or None,
    )


def find_runs(root: str | os.PathLike = "runs", depth: int = 3) -> list[RunInfo]:
    """Every run folder under ``root`` (``root`` itself included), newest first.

    Raises:
        InvalidArgumentError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidArgumentError(
            f"No such folder: {root}. graft runs ls lists the run folders under a folder "
            f"(default: runs). {received(root=str(root))}"
        )
    found: list[RunInfo] = []

    def walk(folder: Path, level: int) -> None:
        if is_run_folder(folder):
            found.append(read_run(folder, str(folder.relative_to(root)) or folder.name))
            return
        if level >= depth:
            return
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child.name not in _NOT_RUNS and not child.name.startswith("."):
                walk(child, level + 1)

    walk(root, 0)
    return sorted(found, key=lambda r: r.started, reverse=True)


def flatten(data: dict, prefix: str = "") -> dict:
    """Nested dicts as ``{"a.b": value}`` (lists left out).

    Example:
        >>> flatten({"a": {"b": 1, "c": [2]}, "d": 3})
        {'a.b': 1, 'd': 3}
    """
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        elif not isinstance(value, list):
            out[f"{prefix}{key}"] = value
    return out


def _head(head: dict) -> str | None:
    """``convex (power-normalised, L2 0.0032)``, or the head's kind."""
    if not head.get("kind"):
        return None
    if head["kind"] != "convex" or head.get("lam") is None:
        return str(head["kind"])
    transform = {"power": "power-normalised", "none": "standardised"}.get(
        head.get("transform"), head.get("transform")
    )
    return f"convex ({transform}, L2 {head['lam']:.3g})"


def headline(run: RunInfo) -> dict:
    """The figures a comparison shows for a run: test metrics, time and what was kept."""
    m = run.metrics
    if run.kind == "rl":
        return {
            "status": run.status,
            "mean return": m.get("mean_return"),
            "sd of return": m.get("std_return"),
            "evaluation episodes": m.get("eval_episodes"),
            "steps": m.get("steps"),
            "training episodes": m.get("episodes"),
            "seconds": None if run.seconds is None else round(run.seconds, 1),
            "kept": m.get("kept") and f"step {m.get('kept_step'):,} ({m.get('kept')})",
        }
    selection = run.run.get("selection") or {}
    head = selection.get("head") or {}
    out = {
        "status": run.status,
        "accuracy": m.get("accuracy"),
        "macro F1": m.get("macro_f1"),
        "test examples": m.get("examples"),
        "seconds": None if run.seconds is None else round(run.seconds, 1),
        "kept": selection.get("kept"),
        "head": _head(head),
    }
    for k, value in (m.get("top_k_accuracy") or {}).items():
        out[f"top-{k} accuracy"] = value
    return out


def compare(runs: list[RunInfo], everything: bool = False) -> tuple[list[tuple], list[tuple]]:
    """Config and results of several runs side by side.

    Returns:
        ``(config_rows, result_rows)``, each a list of ``(key, value_per_run...)``; config rows
        are only the keys whose values differ unless ``everything``.

    Raises:
        InvalidArgumentError: fewer than two runs.
    """
    if len(runs) < 2:
        raise InvalidArgumentError(
            "Comparing needs at least two run folders. "
            f"{received(runs=[str(r.path) for r in runs])}"
        )
    configs = [flatten({"kind": r.kind, "data": r.data, **r.config}) for r in runs]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    config_rows = [
        (key, *(c.get(key, "—") for c in configs))
        for key in keys
        if everything or len({json.dumps(c.get(key), default=str) for c in configs}) > 1
    ]
    results = [headline(r) for r in runs]
    result_keys = list(dict.fromkeys(k for h in results for k in h))
    result_rows = [(key, *(h.get(key) for h in results)) for key in result_keys]
    return config_rows, result_rows
