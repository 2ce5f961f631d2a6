"""The steps of ``graft.ensemble``: per member features -> out-of-fold and final heads; the
meta-learner and its cross-validated accuracy; then one module, the report and run.json."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.data.dataset import DataSplits, LabeledData
from graft.training import stacking
from graft.training.linear import LinearHead
from graft.training.loop import write_json
from graft.training.members import Member, decode_size, extractor_for, member_branch
from graft.training.tfidf import TFIDF


@dataclass
class Fitted:
    """Everything the module and the report are made of."""

    branches: list = field(default_factory=list)  # one Keras model per member
    oof: list[np.ndarray] = field(default_factory=list)  # member outputs, out of fold
    test: list[np.ndarray] = field(default_factory=list)  # member outputs on the test split
    rows: list[dict] = field(default_factory=list)  # the comparison table
    meta: LinearHead | None = None
    combiner: str = "stack"  # or "mean": whichever scored better out of fold
    test_probs: np.ndarray | None = None
    decoded: tuple[int, int] | None = None
    timings: dict = field(default_factory=dict)


def _accuracy(probs: np.ndarray, labels) -> float:
    return float((np.asarray(probs).argmax(1) == np.asarray(labels)).mean())


def describe_head(head: LinearHead) -> str:
    """One line: how a convex head was fitted."""
    transform = "power-normalised" if head.transform == "power" else "standardised"
    return (
        f"logistic regression on {transform} inputs, L2 strength {head.lam:.2g} chosen by "
        f"{head.selection}" + (", balanced class weights" if head.class_weighted else "")
    )


def _fit_member(
    index: int,
    member: Member,
    splits: DataSplits,
    pooled: LabeledData,
    assignment: np.ndarray,
    fitted: Fitted,
    config,
    progress,
) -> None:
    from graft.training.stages import FeatureStore

    n = len(splits.class_names)
    y = np.asarray(pooled.labels, int)
    report = progress or (lambda *a: None)
    stage = f"features {member.name}"
    start = time.perf_counter()
    extractor = extractor_for(member, fitted.decoded, pooled.items, config.runtime)
    store = FeatureStore(extractor)
    every = [*pooled.items, *splits.test.items]
    done = [0]

    def count(k: int) -> None:
        done[0] += k
        report(stage, done[0], len(every))

    features = store(every, progress=count)
    features_s = time.perf_counter() - start
    x, x_test = features[: len(pooled)], features[len(pooled) :]
    plan = stacking.plan_for(x, sparse=member.name == TFIDF)
    start = time.perf_counter()
    stage = f"heads {member.name}"
    folds = int(assignment.max()) + 1
    oof = stacking.out_of_fold(
        x, y, assignment, n, plan, config.seed, on_fold=lambda f: report(stage, f + 1, folds + 1)
    )
    head = stacking.fit_head(x, y, n, plan, config.seed)
    report(stage, folds + 1, folds + 1)
    heads_s = time.perf_counter() - start
    test_out = stacking.member_outputs(head, x_test)
    output = "log_softmax" if stacking.STACK_ON == "log_probabilities" else "softmax"
    fitted.branches.append(member_branch(member, index, extractor.keras_model(), head, output))
    fitted.oof.append(oof)
    fitted.test.append(test_out)
    resized = getattr(extractor, "decoded", None)
    fitted.rows.append(
        {
            "name": member.name,
            "role": "member",
            "features": f"{x.shape[1]}-d ({extractor.runtime}"
            + (f"; decoded at {resized[0]}x{resized[1]}, resized inside" if resized else "")
            + ")",
            "head": describe_head(head),
            "oof_accuracy": _accuracy(stacking.to_probabilities(oof), y),
            "test_accuracy": _accuracy(stacking.to_probabilities(test_out), splits.test.labels),
            "features_s": features_s,
            "heads_s": heads_s,
        }
    )


def fit_ensemble(
    members: list[Member],
    splits: DataSplits,
    pooled: LabeledData,
    assignment: np.ndarray,
    config,
    progress,
) -> Fitted:
    """Every member's out-of-fold and final head, then the meta-learner on their outputs."""
    fitted = Fitted(decoded=decode_size(members) if splits.kind == "image" else None)
    for index, member in enumerate(members):
        _fit_member(index, member, splits, pooled, assignment, fitted, config, progress)
    y = np.asarray(pooled.labels, int)
    n = len(splits.class_names)
    start = time.perf_counter()
    z = stacking.meta_inputs(fitted.oof)
    fitted.meta = stacking.fit_meta(z, y, n, config.seed)
    stack_oof = stacking.stack_out_of_fold(z, y, assignment, n, config.seed)
    stack_test = fitted.meta.predict_proba(stacking.meta_inputs(fitted.test)).astype(np.float32)
    fitted.timings["meta_s"] = time.perf_counter() - start
    mean_oof = np.mean([stacking.to_probabilities(o) for o in fitted.oof], axis=0)
    mean_test = np.mean([stacking.to_probabilities(o) for o in fitted.test], axis=0)
    # The module combines its members the way that scored better out of fold: a meta-learner
    # can overfit a few hundred examples where the plain mean of the members does not. (The
    # stack's out-of-fold score is itself cross-validated, so the two compare fairly.)
    stack_acc, mean_acc = _accuracy(stack_oof, y), _accuracy(mean_oof, y)
    # A tie keeps the mean: nothing is fitted on top of the members.
    fitted.combiner = "stack" if stack_acc > mean_acc else "mean"
    fitted.test_probs = (stack_test if fitted.combiner == "stack" else mean_test).astype(np.float32)
    what = "log-probabilities" if stacking.STACK_ON == "log_probabilities" else "probabilities"
    chosen = " (saved module)"
    fitted.rows.append(
        {
            "name": "stack" + (chosen if fitted.combiner == "stack" else ""),
            "role": "ensemble" if fitted.combiner == "stack" else "reference",
            "features": f"{z.shape[1]} member {what} (out of fold)",
            "head": describe_head(fitted.meta),
            "oof_accuracy": stack_acc,
            "test_accuracy": _accuracy(stack_test, splits.test.labels),
        }
    )
    fitted.rows.append(
        {
            "name": "mean of members" + (chosen if fitted.combiner == "mean" else ""),
            "role": "ensemble" if fitted.combiner == "mean" else "reference",
            "features": "member probabilities",
            "head": "plain average of the members' probabilities",
            "oof_accuracy": mean_acc,
            "test_accuracy": _accuracy(mean_test, splits.test.labels),
        }
    )
    return fitted


def _manifest(out: Path, config, members: list[Member], splits: DataSplits, fitted, metrics):
    from graft.module.manifest import InputSpec, Manifest, OutputSpec, Provenance
    from graft.training.run import _module_name

    kind, names = splits.kind, splits.class_names
    if kind == "image":
        inputs = InputSpec(
            kind="image",
            size=fitted.decoded,
            encoded=True,
            normalization="encoded JPEG/PNG/GIF/BMP bytes; decoded once, resized and "
            "normalised inside for each member",
        )
    else:
        lengths = [m.max_length for m in members if m.max_length]
        inputs = InputSpec(
            kind="text",
            normalization="raw text; each member tokenises inside",
            max_length=max(lengths) if lengths else None,
        )
    sources = ", ".join(f"{m.name}" + (f" ({m.sha256[:12]})" if m.sha256 else "") for m in members)
    return Manifest(
        name=_module_name(out),
        task=f"{kind}-classifier",
        description=f"{len(names)}-class {kind} classifier: a stack of {len(members)} members "
        f"({', '.join(m.name for m in members)}) trained by graft ensemble",
        inputs=inputs,
        outputs=OutputSpec(kind="probabilities", dim=len(names)),
        labels=names,
        license="; ".join(dict.fromkeys(f"{m.name}: {m.license}" for m in members)),
        provenance=Provenance(
            source=splits.describe("graft ensemble"),
            source_sha256=splits.fingerprint(),
            converted_from=sources,
        ),
        metrics=metrics,
        tags=("graft-ensemble", kind),
    )


def finish(out: Path, config, members: list[Member], splits: DataSplits, fitted: Fitted):
    """Saves the module, writes report.html, metrics.json and run.json."""
    from graft.evaluation.report import write_report
    from graft.module.io import save
    from graft.training.assemble import ensemble_model
    from graft.training.ensemble import EnsembleRun

    stack = next(r for r in fitted.rows if r["name"].startswith("stack"))
    chosen = next(r for r in fitted.rows if r["role"] == "ensemble")
    summary = {
        "members": ", ".join(m.name for m in members),
        "data": f"{splits.train.source}: {len(splits.train)} train + {len(splits.val)} "
        f"validation in {config.folds} stratified folds, {len(splits.test)} test, "
        f"{len(splits.class_names)} classes",
        "stacking": f"each member's convex head fitted {config.folds} times (out of fold) and "
        f"once on all train + validation; meta-learner: {stack['head']} on {stack['features']}",
        "combination": combination_reason(fitted),
        "settings": f"folds={config.folds}, seed={config.seed}, runtime={config.runtime}",
    }
    if fitted.decoded:
        summary["decoding"] = f"once, at {fitted.decoded[0]}x{fitted.decoded[1]}"
    evaluation = write_report(
        out,
        kind=splits.kind,
        items=splits.test.items,
        y_true=splits.test.labels,
        probs=fitted.test_probs,
        class_names=splits.class_names,
        title=f"graft ensemble {out.name}",
        skipped=splits.skipped,
        summary=summary,
        members=fitted.rows,
    )
    metrics = evaluation.metrics
    headline = {
        "test_accuracy": metrics["accuracy"],
        "test_macro_f1": metrics["macro_f1"],
        "cv_accuracy": chosen["oof_accuracy"],
    }
    headline.update({f"test_top{k}_accuracy": v for k, v in metrics["top_k_accuracy"].items()})
    start = time.perf_counter()
    meta = fitted.meta if fitted.combiner == "stack" else None
    log_probabilities = stacking.STACK_ON == "log_probabilities"
    model = ensemble_model(fitted.branches, meta, splits.kind, fitted.decoded, log_probabilities)
    manifest = _manifest(out, config, members, splits, fitted, headline)
    save(model, out / "module", manifest, overwrite=True)
    fitted.timings["save_s"] = time.perf_counter() - start
    timings = {
        **fitted.timings,
        "members": {
            r["name"]: {"features_s": r["features_s"], "heads_s": r["heads_s"]}
            for r in fitted.rows
            if r["role"] == "member"
        },
    }
    meta = {k: v for k, v in fitted.meta.summary().items() if k != "scores"}
    write_json(
        out / "run.json",
        {"metrics": headline, "members": fitted.rows, "meta": meta, "timings": timings},
    )
    return EnsembleRun(
        directory=out,
        config=config,
        class_names=splits.class_names,
        kind=splits.kind,
        metrics=metrics,
        members=fitted.rows,
        timings=timings,
        skipped=splits.skipped,
        test_probs=fitted.test_probs,
        combination=combination_reason(fitted),
    )


def combination_reason(fitted) -> str:
    """Which combination the module uses, and why (for the CLI, the report and run.json)."""
    chosen = next(r for r in fitted.rows if r["role"] == "ensemble")
    other = next(r for r in fitted.rows if r["name"] in ("stack", "mean of members"))
    what = "the meta-learner (stack)" if fitted.combiner == "stack" else "the mean of the members"
    if chosen["oof_accuracy"] == other["oof_accuracy"]:
        why = "a tie, which keeps the mean: nothing is fitted on top of the members"
    else:
        why = "the better cross-validated accuracy"
    return (
        f"{what}: cross-validated accuracy {chosen['oof_accuracy']:.4f}, against "
        f"{other['oof_accuracy']:.4f} for the {other['name']} ({why})"
    )
