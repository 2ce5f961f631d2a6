"""Benchmark: graft's accuracy against a tuned logistic regression on the same features.

    .venv/bin/python bench/quality.py                 # everything (about two hours on 2 cores)
    .venv/bin/python bench/quality.py --datasets digits64 --methods lr_val,default

Three real data sets (``bench/_datasets.py``), each split into the same 5 stratified folds for
every method: each fold is the test set once, a validation split comes from the rest (graft's
``fold_splits``). Per fold and method the test accuracy and the wall time are recorded; the
table gives mean +- sd over the folds.

Methods:
- ``lr_val``: scikit-learn ``LogisticRegression`` on the backbone's features, C picked on the
  validation split from 13 values (the baseline the issue names);
- ``lr_cv``: the same with standardised features and C picked by 5-fold cross-validation on
  train+validation, refitted on both (a better-tuned baseline);
- ``default``: ``graft.train`` with default settings;
- ``finetune2``: ``--fine-tune-blocks 2`` (default augmentation policy), and
  ``finetune2_none``: the same with ``--augment none`` (cached block activations for images);
- ``tune20``: ``graft tune`` with 20 trials;
- ``ensemble``: ``graft ensemble`` over two backbones (images: EfficientNet-Lite0 + Lite1;
  text: MiniLM + word TF-IDF).

Every (data set, method, fold) runs in its own process with a shared feature cache; results
are kept in ``bench/.work/quality/`` so an interrupted run continues. Figures go into
bench/RESULTS.md between the ``quality`` markers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, machine, run_child, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "quality"
HOME = HERE / ".work" / "quality_home"  # GRAFT_HOME shared by every child (features cached)
FOLDS = 5
LITE0, LITE1, MINILM = (
    "efficientnet_lite0.imagenet",
    "efficientnet_lite1.imagenet",
    "minilm_l6.sentence",
)
DATASETS = {
    "digits64": ("digits64", LITE0, (LITE0, LITE1)),
    "twemoji": ("twemoji", LITE0, (LITE0, LITE1)),
    "fortunes": ("fortunes", MINILM, (MINILM, "tfidf")),
}
METHODS = ("lr_val", "lr_cv", "default", "finetune2", "finetune2_none", "tune20", "ensemble")
GRID = [float(c) for c in (10.0 ** (i / 2) for i in range(-8, 5))]  # 1e-4 ... 1e2


def _data_path(dataset: str) -> Path:
    import _datasets

    return getattr(_datasets, DATASETS[dataset][0])()


def _folds(dataset: str):
    """The same 5 folds for every method: ``[(DataSplits), ...]``."""
    import graft.data
    from graft.training.linear import _fold_assignment
    from graft.training.stages import _pool, fold_splits

    everything = _pool(graft.data.load(str(_data_path(dataset)), seed=0))
    import numpy as np

    assignment = _fold_assignment(np.asarray(everything.labels), FOLDS, 0)
    return list(fold_splits(everything, assignment, 0.1, 0))


# -- children: one (data set, method, fold) each ---------------------------------------------
def child_features(dataset: str, fold: int) -> dict:
    """Backbone features of every example (cached), saved for the scikit-learn baselines."""
    import numpy as np

    import graft
    from graft.training.features import FeatureExtractor

    splits = _folds(dataset)[fold]
    fx = FeatureExtractor(graft.models.materialize(DATASETS[dataset][1]))
    out = WORK / dataset / f"features_{fold}.npz"
    parts = splits.named()
    np.savez(
        out,
        **{f"x_{n}": fx(list(p.items)) for n, p in parts.items()},
        **{f"y_{n}": np.asarray(p.labels) for n, p in parts.items()},
    )
    return {"path": str(out)}


def child_graft(dataset: str, method: str, fold: int) -> dict:
    import graft

    splits = _folds(dataset)[fold]
    _, model, members = DATASETS[dataset]
    out = WORK / dataset / method / f"run_{fold}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if method == "default":
        run = graft.train(splits, model, out=out)
    elif method == "finetune2":
        run = graft.train(splits, model, out=out, fine_tune_blocks=2)
    elif method == "finetune2_none":
        run = graft.train(splits, model, out=out, fine_tune_blocks=2, augment="none")
    elif method == "tune20":
        run = graft.tune(splits, model, out=out, trials=20)
    elif method == "ensemble":
        run = graft.ensemble(splits, models=list(members), out=out)
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    result = {"accuracy": metrics["accuracy"], "seconds": seconds}
    run_json = out / "run.json"
    if run_json.is_file():
        info = json.loads(run_json.read_text())
        selection = info.get("selection") or {}
        result["kept"] = selection.get("kept")
        timings = info.get("timings", {})
        result["timings"] = {k: v for k, v in timings.items() if k.endswith("_s")}
        if "finetune" in selection:
            history = json.loads((out / "state.json").read_text())["finetune"]["history"]
            result["finetune_epochs"] = len(history["loss"])
            if history.get("seconds"):
                result["finetune_epoch_s"] = float(
                    sorted(history["seconds"])[len(history["seconds"]) // 2]
                )
            result["finetune_val"] = selection["finetune"]["val_accuracy"]
            result["head_val"] = selection["head"]["val_accuracy"]
    del run
    shutil.rmtree(out / "module", ignore_errors=True)  # 20-90 MB each; the figures stay
    return result


def _run_child(*args: str) -> dict:
    env = {"GRAFT_HOME": str(HOME), "MLFLOW_DISABLE_TELEMETRY": "true"}
    return run_child(__file__, *args, env=env)


# -- baselines in this process (scikit-learn on the saved features) ---------------------------
def lr_baseline(dataset: str, method: str, fold: int) -> dict:
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    path = WORK / dataset / f"features_{fold}.npz"
    if not path.is_file():
        _run_child("features", dataset, str(fold))
    d = np.load(path)
    start = time.perf_counter()
    if method == "lr_val":  # the C path, warm-started from the previous C
        best, clf = None, LogisticRegression(max_iter=1000, warm_start=True)
        for c in GRID:
            clf.set_params(C=c).fit(d["x_train"], d["y_train"])
            score = (clf.predict(d["x_val"]) == d["y_val"]).mean()
            if best is None or score > best[0]:
                best = (score, clf.predict(d["x_test"]))
        predicted = best[1]
    else:
        x = np.concatenate([d["x_train"], d["x_val"]])
        y = np.concatenate([d["y_train"], d["y_val"]])
        scaler = StandardScaler().fit(x)
        xs = scaler.transform(x)
        scores = np.zeros(len(GRID))
        for a, b in StratifiedKFold(5, shuffle=True, random_state=0).split(xs, y):
            clf = LogisticRegression(max_iter=1000, warm_start=True)
            for i, c in enumerate(GRID):
                clf.set_params(C=c).fit(xs[a], y[a])
                scores[i] += (clf.predict(xs[b]) == y[b]).mean()
        clf = LogisticRegression(C=GRID[int(scores.argmax())], max_iter=1000).fit(xs, y)
        predicted = clf.predict(scaler.transform(d["x_test"]))
    seconds = time.perf_counter() - start
    return {"accuracy": float((predicted == d["y_test"]).mean()), "seconds": seconds}


def measure(dataset: str, method: str, fold: int) -> dict:
    path = WORK / dataset / method / f"fold_{fold}.json"
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    if method.startswith("lr_"):
        result = lr_baseline(dataset, method, fold)
    else:
        result = _run_child("graft", dataset, method, str(fold))
    path.write_text(json.dumps(result, indent=2))
    print(dataset, method, fold, json.dumps(result)[:300], flush=True)
    return result


def cold_train_2000() -> dict:
    """A default ``graft train`` on 2,000 images from a cold cache (no features, no TFLite
    engine; the zoo module itself converted already): digits64 plus 203 of its images shifted
    by one pixel, as files."""
    from PIL import Image, ImageChops

    data = WORK / "cold2000"
    if not data.is_dir():
        source = _data_path("digits64")
        tmp = WORK / "cold2000.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        files = sorted(source.rglob("*.png"))[:203]
        for f in files:
            with Image.open(f) as image:
                shifted = ImageChops.offset(image, 1, 1)
                shifted.save(tmp / f.parent.name / f"shifted_{f.name}")
        tmp.rename(data)
    home = WORK / "cold_home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    zoo = HOME / "modules"
    if zoo.is_dir():  # the converted zoo entries, not features or engines
        shutil.copytree(zoo, home / "modules")
    out = WORK / "cold2000_run"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "GRAFT_HOME": str(home)}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "graft.cli.main", "train", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    images = sum(1 for _ in data.rglob("*.png"))
    timings = json.loads((out / "run.json").read_text())["timings"]
    accuracy = json.loads((out / "metrics.json").read_text())["accuracy"]
    return {"images": images, "seconds": seconds, "timings": timings, "accuracy": accuracy}


def _summary(values: list[float]) -> str:
    import numpy as np

    if not values:
        return "-"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{np.mean(values):.4f} +- {sd:.4f}"


def table(datasets, methods) -> str:
    import numpy as np

    names = {
        "lr_val": "logistic regression, C on the validation split",
        "lr_cv": "logistic regression, standardised, C by 5-fold CV",
        "default": "graft train (default)",
        "finetune2": "graft train --fine-tune-blocks 2",
        "finetune2_none": "graft train --fine-tune-blocks 2 --augment none",
        "tune20": "graft tune --trials 20",
        "ensemble": "graft ensemble (two backbones)",
    }
    lines = []
    for dataset in datasets:
        data = _data_path(dataset)
        _, model, members = DATASETS[dataset]
        lines += [
            f"### {dataset} ({model}; ensemble: {' + '.join(members)})",
            "",
            f"Data: `{data.relative_to(HERE.parent)}`. Test accuracy, mean +- sd over "
            f"{FOLDS} folds; time per fold.",
            "",
            "| method | accuracy | per fold | vs LR (val) | time per fold (s) |",
            "|---|---|---|---|---|",
        ]
        base = None
        for method in methods:
            results = [
                json.loads(p.read_text())
                for p in sorted((WORK / dataset / method).glob("fold_*.json"))
            ]
            if not results:
                continue
            acc = [r["accuracy"] for r in results]
            if method == "lr_val":
                base = float(np.mean(acc))
            delta = f"{(np.mean(acc) - base) * 100:+.2f} points" if base is not None else ""
            seconds = np.mean([r["seconds"] for r in results])
            partial = f" (only {len(acc)} of {FOLDS} folds run)" if len(acc) < FOLDS else ""
            lines.append(
                f"| {names[method]}{partial} | **{_summary(acc)}** | "
                f"{' '.join(f'{a:.3f}' for a in acc)} | {delta} | {seconds:.1f} |"
            )
        for method, policy in (("finetune2", "default"), ("finetune2_none", "none")):
            kept = [
                json.loads(p.read_text()).get("kept")
                for p in sorted((WORK / dataset / method).glob("fold_*.json"))
            ]
            if kept:
                lines += [
                    "",
                    f"Fine-tuning (`--augment {policy}`) kept per fold: "
                    f"{', '.join(map(str, kept))}.",
                ]
        per_epoch = {}
        for method in ("finetune2", "finetune2_none"):
            values = [
                r["finetune_epoch_s"]
                for p in sorted((WORK / dataset / method).glob("fold_*.json"))
                if "finetune_epoch_s" in (r := json.loads(p.read_text()))
            ]
            if values:
                per_epoch[method] = float(np.median(values))
        if len(per_epoch) == 2 and model != MINILM:  # texts: no cached-activation path
            lines += [
                "",
                f"Time per fine-tuning epoch (2 blocks, median over folds): "
                f"{per_epoch['finetune2']:.1f} s with augmentation (the whole network runs), "
                f"{per_epoch['finetune2_none']:.1f} s with `--augment none` (cached activations: "
                f"only the unfrozen blocks run), "
                f"{per_epoch['finetune2'] / per_epoch['finetune2_none']:.1f}x.",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--cold", action="store_true", help="also time a cold 2,000-image run")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    methods = [m for m in args.methods.split(",") if m]
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for dataset in datasets:
        for method in methods:
            for fold in range(FOLDS):
                measure(dataset, method, fold)
    cold = ""
    cold_json = WORK / "cold2000.json"
    if args.cold:
        cold_json.write_text(json.dumps(cold_train_2000(), indent=2))
    if cold_json.is_file():  # the last cold measurement, kept for later invocations
        c = json.loads(cold_json.read_text())
        parts = ", ".join(
            f"{k.removesuffix('_s')} {v:.1f}s" for k, v in c["timings"].items() if k.endswith("_s")
        )
        cold = (
            f"\nA default `graft train` on {c['images']} images (digits64 plus 203 shifted copies) "
            f"from a cold cache (no cached features or TFLite engine; the zoo module converted "
            f"already) took **{c['seconds']:.1f} s** end to end, process start included ({parts}); "
            f"test accuracy {c['accuracy']:.4f}. Target: under 60 s.\n"
        )
    section = (
        f"## Quality (`bench/quality.py`, {time.strftime('%Y-%m-%d')})\n\n"
        f"Machine: {machine(('tensorflow', 'keras', 'scikit-learn'))}.\n"
        f"CPU flags: {cpu_flags()}.\n\n" + table(list(DATASETS), METHODS) + cold
    )
    write_section("quality", section)
    print(section)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "features":
            result = child_features(sys.argv[3], int(sys.argv[4]))
        else:
            result = child_graft(sys.argv[3], sys.argv[4], int(sys.argv[5]))
        print(json.dumps(result))
    else:
        main()
