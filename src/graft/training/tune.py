"""``graft.tune``: hyperparameter search with Optuna, then the best configuration trained and
saved like a ``graft train`` run.

The backbone runs once per example (cached features); each trial trains only a head on them
and is scored by k-fold cross-validated accuracy on train+val (``trials.py``), so the test
split stays untouched until the final evaluation. graft's default configuration is the first
trial, so the search never ends below it on that score. The study lives in ``study.db``
(SQLite) in the run folder: a killed search resumes where it stopped, and
``optuna-dashboard RUN/study.db`` shows it.

Run folder (``runs/NAME``)::

    tune.json  study.db  trials.csv  trials.json     the search and every trial
    config.json  splits.json  module/  report.html  run.json ...   the best configuration,
                                                         trained as ``graft train`` would
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits
from graft.errors import InvalidArgumentError, ModuleExistsError, received
from graft.evaluation.metrics import standard_error
from graft.training.loop import write_json
from graft.training.run import Run, RunFolder

STUDY = "graft-tune"
FINISHED = ("COMPLETE", "PRUNED")
_CHECKED = ("model", "seed", "fine_tune")  # settings a resumed search must keep


@dataclass(frozen=True)
class TuneResult(RunFolder):
    """A finished search and the run trained with its best configuration.

    Attributes:
        directory: the run folder.
        best_number: the best trial's number.
        best_value: its cross-validated accuracy.
        best_params: its parameters.
        default_value: the score of graft's default configuration (trial 0).
        trials: every trial: number, state, value, params, seconds, default.
        importances: parameter importances per group of trials, or why there are none.
        run: the ``Run`` trained with the best configuration.
        selection: why the default was kept over a trial that scored higher, if it was.
    """

    directory: Path
    best_number: int
    best_value: float
    best_params: dict
    default_value: float | None
    trials: tuple[dict, ...]
    importances: dict
    run: Run
    selection: str = ""


def tune(
    data: str | Path | DataSplits,
    model: str = "efficientnet_lite0.imagenet",
    *,
    out: str | Path | None = None,
    trials: int = 20,
    timeout: float | None = None,
    resume: bool = False,
    fine_tune: bool = False,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    on_trial: Callable[[dict], None] | None = None,
) -> TuneResult:
    """Searches head (and optionally fine-tuning) settings, then trains the best into ``out``.

    Searched: the head kind; for the convex head its L2 strength and feature transform; for the
    SGD head hidden units, dropout, label smoothing, learning rate and epochs; with
    ``fine_tune`` also the number of fine-tuned top blocks (0-3) and their learning rate. TPE
    proposes, the median pruner stops SGD and fine-tune trials whose held-out accuracy falls
    behind after an epoch.

    Args:
        data: a folder of class subfolders, a .csv/.tsv/.jsonl of texts, or ``DataSplits``.
        model: a feature-vector or text-embedding zoo entry or module.
        out: the run folder (default ``runs/tune-<time>``).
        trials: finished (complete or pruned) trials to reach, counting resumed ones.
        timeout: start no trial after this many seconds (of this call).
        resume: continue the search in ``out``: finished trials are kept, a trial that was
            running when the search was killed is marked failed and not counted.
        fine_tune: also search fine-tuning of the top blocks (trials take minutes).
        seed: seed of the split, the folds, the sampler and training.
        progress: called as ``progress(stage, done, total)``.
        on_trial: called with each finished trial's record.

    Returns:
        The ``TuneResult``: best trial, default trial's score, every trial, the trained run.

    Raises:
        InvalidArgumentError: bad ``trials``/``timeout``, a backbone of the wrong kind, or a
            resumed search with other settings.
        ModelNotFoundError: ``model`` names nothing graft knows.
        ModuleExistsError: ``out`` holds something and ``resume`` is false.

    Example:
        >>> result = tune("data/digits", trials=30, out="runs/digits-tuned")  # doctest: +SKIP
        >>> print(result.best_value, result.default_value)  # doctest: +SKIP
    """
    import optuna

    import graft.data
    from graft.training.features import FeatureExtractor
    from graft.training.run import FEATURE_TASKS, read_splits, resolve_backbone, write_splits
    from graft.training.stages import FeatureStore
    from graft.training.trials import MAX_FINE_TUNE_BLOCKS, Objective, SearchData, default_params

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidArgumentError(
            f"trials must be a whole number of at least 1. {received(trials=trials)}"
        )
    if timeout is not None and not timeout > 0:
        raise InvalidArgumentError(
            f"timeout must be a positive number of seconds (or None). {received(timeout=timeout)}"
        )
    backbone_dir, manifest = resolve_backbone(model)
    out = Path(out or f"runs/tune-{time.strftime('%Y%m%d-%H%M%S')}")
    settings = {"model": model, "seed": seed, "fine_tune": fine_tune}
    if resume:
        _prepare(out, resume, settings)
    if resume and (out / "splits.json").is_file():
        splits, skipped = read_splits(out)
    else:
        splits = data if isinstance(data, DataSplits) else graft.data.load(str(data), seed=seed)
        skipped = splits.skipped
    kind = FEATURE_TASKS[manifest.task]
    if splits.kind != kind:
        raise InvalidArgumentError(
            f"{model} takes {kind} input but the data is {splits.kind}. "
            f"{received(model=model, data_kind=splits.kind)}"
        )
    if not resume:  # after the checks, so a refused search leaves no folder behind
        _prepare(out, resume, settings)
    write_splits(out, splits, skipped)

    store = FeatureStore(FeatureExtractor(backbone_dir))
    total = len(splits.train) + len(splits.val)
    done = [0]

    def count(k: int) -> None:
        done[0] += k
        if progress:
            progress("features", done[0], total)

    search = SearchData.build(splits, lambda items: store(items, progress=count), seed)
    study = _study(out)
    pending = (*FINISHED, "WAITING")  # a default trial killed while running is enqueued again
    if not any(t.user_attrs.get("default") and t.state.name in pending for t in study.trials):
        study.enqueue_trial(default_params(search, seed, fine_tune), user_attrs={"default": True})
    objective = Objective(
        search,
        seed=seed,
        backbone_dir=backbone_dir,
        max_blocks=min(MAX_FINE_TUNE_BLOCKS, len(manifest.groups)) if fine_tune else 0,
        work_dir=out / "trials",
        model=model,
    )

    def finished(_study, trial) -> None:
        if on_trial and trial.state.name in FINISHED:
            on_trial(_record(trial))

    start = time.monotonic()
    while (n_done := sum(t.state.name in FINISHED for t in study.trials)) < trials:
        if timeout is not None and time.monotonic() - start >= timeout:
            break
        # A sampler seeded per trial: a resumed search proposes what an uninterrupted one
        # would, instead of replaying the proposals of its first trials.
        study.sampler = optuna.samplers.TPESampler(seed=_sampler_seed(seed, n_done))
        study.optimize(objective, n_trials=1, callbacks=[finished])
        if progress:
            progress("trials", min(n_done + 1, trials), trials)
    return _finish(out, study, splits, model, seed, search.k, progress)


def _prepare(out: Path, resume: bool, settings: dict) -> None:
    """Checks and starts the run folder: new, or resumed with the same settings."""
    if not resume:
        if out.exists() and any(out.iterdir()):
            raise ModuleExistsError(
                f"{out} already holds a run. Continue its search with --resume (the resume "
                f"argument in Python), or choose another output folder. {received(out=str(out))}"
            )
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "tune.json", settings)
        return
    if not (out / "tune.json").is_file() or not (out / "study.db").is_file():
        raise InvalidArgumentError(
            f"Nothing to resume in {out}: it has no tune.json and study.db from an earlier "
            f"graft tune. {received(out=str(out))}"
        )
    saved = json.loads((out / "tune.json").read_text())
    diff = {k: v for k, v in settings.items() if k in _CHECKED and saved.get(k) != v}
    if diff:
        raise InvalidArgumentError(
            f"--resume continues a search with its own settings; these differ from the saved "
            f"tune.json: {diff}. {received(out=str(out))}"
        )
    import shutil

    shutil.rmtree(out / "trials", ignore_errors=True)  # checkpoints of an interrupted trial


def _study(out: Path):
    """The study in ``out/study.db``; a trial left running by a killed search is marked failed."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'study.db').resolve()}")
    study = optuna.create_study(
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=0),  # replaced per trial (see tune)
        pruner=optuna.pruners.MedianPruner(),
        study_name=STUDY,
        direction="maximize",
        load_if_exists=True,
    )
    study_id = storage.get_study_id_from_name(STUDY)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_user_attr(trial_id, "interrupted", True)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return study


def _sampler_seed(seed: int, finished: int) -> int:
    return int(np.random.SeedSequence([seed, finished]).generate_state(1)[0])


def _record(trial) -> dict:
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.value,
        "params": dict(trial.params),
        "seconds": trial.duration.total_seconds() if trial.duration else None,
        "default": bool(trial.user_attrs.get("default")),
    }


def _importances(study, seed: int) -> dict:
    """fANOVA importances over all completed trials (their common parameters) and per head
    kind (its conditional parameters), or the reason a group has none."""
    import optuna

    groups = {
        "all trials": None,
        "convex head": ["lam", "transform"],
        "SGD head": ["hidden_units", "dropout", "label_smoothing", "lr", "epochs"],
    }
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    result = {}
    for name, params in groups.items():
        if params is not None:
            params = [p for p in params if any(p in t.params for t in complete)]
        having = [t for t in complete if set(params or ()) <= set(t.params)]
        if len(having) < 2 or params == []:
            result[name] = f"not enough completed trials ({len(having)}; at least 2 are needed)"
            continue
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            scores = optuna.importance.get_param_importances(
                study, evaluator=evaluator, params=params
            )
        except (ValueError, RuntimeError) as exc:
            result[name] = f"not available: {exc}"
            continue
        result[name] = {k: float(v) for k, v in scores.items()}
    return result


def _write_trials(out: Path, records: list[dict]) -> None:
    from graft._atomic import write_bytes

    write_json(out / "trials.json", records)
    names = sorted({p for r in records for p in r["params"]})
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["number", "state", "value", "seconds", "default", *names])
    for r in records:
        writer.writerow(
            [r["number"], r["state"], r["value"], r["seconds"], r["default"]]
            + [r["params"].get(n, "") for n in names]
        )
    write_bytes(out / "trials.csv", buffer.getvalue().encode("utf-8"))


def best_trial(study, examples: int | None = None):
    """The trial whose configuration the run is trained with.

    The completed trial with the highest score; among scores within ``1e-4`` of it (less than
    one example of a cross-validated accuracy below 10,000 examples: the fold scores of
    different head kinds differ in the last digits) the earliest. With ``examples`` (the size
    of the cross-validated pool) it must also beat graft's default configuration (trial 0) by
    more than the standard error of the default's accuracy, ``sqrt(p (1 - p) / examples)``;
    otherwise the default is kept: a smaller lead is within what the choice of folds moves.

    Example:
        >>> best_trial(optuna.load_study(...), examples=1600).number  # doctest: +SKIP
        0
    """
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    top = max(t.value for t in complete)
    best = min((t for t in complete if t.value >= top - 1e-4), key=lambda t: t.number)
    default = next((t for t in complete if t.user_attrs.get("default")), None)
    if examples is None or default is None or best.number == default.number:
        return best
    return best if best.value - default.value > standard_error(default.value, examples) else default


def _finish(out: Path, study, splits, model: str, seed: int, folds: int, progress) -> TuneResult:
    """Trains the best configuration into ``out`` (resumable) and writes the search records."""
    from dataclasses import asdict

    import graft
    from graft.evaluation.report import add_search
    from graft.training.run import TrainConfig
    from graft.training.trials import train_settings

    examples = len(splits.train) + len(splits.val)  # the cross-validated pool
    best = best_trial(study, examples)
    settings = train_settings(best.params)
    config = asdict(TrainConfig(model=model, seed=seed, **settings))
    saved = out / "config.json"
    if saved.is_file() and json.loads(saved.read_text()) != config:  # an earlier best's run
        import shutil

        for stale in ("config.json", "state.json", "checkpoints", "tensorboard"):
            path = out / stale
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    if not saved.is_file():
        write_json(saved, config)  # a run folder graft.train continues (resume=True)
    run = graft.train(splits, model, out=out, resume=True, progress=progress, seed=seed, **settings)

    records = [_record(t) for t in study.trials]
    default = next((r for r in records if r["default"] and r["state"] == "COMPLETE"), None)
    importances = _importances(study, seed)
    _write_trials(out, records)
    top = best_trial(study)
    rule = f"standard error of the default's accuracy on {examples} examples"
    if default is None:
        selection = f"Trial {best.number} scored best (the default trial did not finish)."
    elif best.number == default["number"] and top.number == best.number:
        selection = "The default configuration scored best; it is kept."
    elif best.number == top.number:
        lead = best.value - default["value"]
        selection = (
            f"Trial {best.number} leads the default by {lead:.4f}, more than the {rule} "
            f"({standard_error(default['value'], examples):.4f}), so its configuration is used."
        )
    else:
        selection = (
            f"Trial {top.number} scored {top.value:.4f}, ahead of the default by "
            f"{top.value - best.value:.4f}: less than the {rule} "
            f"({standard_error(best.value, examples):.4f}), so the default configuration is kept."
        )
    search = {
        "objective": f"{folds}-fold cross-validated accuracy on train+val",
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": dict(best.params),
        "train_settings": settings,
        "default_value": default["value"] if default else None,
        "states": {s: sum(r["state"] == s for r in records) for s in {r["state"] for r in records}},
        "importances": importances,
        "selection": selection,
    }
    run_json = json.loads((out / "run.json").read_text())
    run_json["search"] = search
    write_json(out / "run.json", run_json)
    add_search(out / "report.html", {**search, "trials": records})
    return TuneResult(
        directory=out,
        best_number=best.number,
        best_value=float(best.value),
        best_params=dict(best.params),
        default_value=search["default_value"],
        trials=tuple(records),
        importances=importances,
        run=run,
        selection=selection,
    )
