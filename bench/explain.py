"""Benchmark: what graft explain costs and how faithful it is.

    .venv/bin/python bench/explain.py

- Time per explanation, warm (the model loaded, SHAP's first call done): Grad-CAM, HiResCAM and SHAP
  (Partition, 300 evaluations) on the EfficientNet-Lite0 digits module (``make demo``'s), and
  SHAP (200 evaluations) on a MiniLM text classifier (planted-keyword texts, trained here).
- Faithfulness: the deletion check of each on the test split (the CAMs: all of it; SHAP: the
  first 20 inputs), against random hiding in the same run.
- The report's overhead: a cached-features digits run's ``explain_s`` (its first 12
  misclassified test examples explained) against the run's wall time.

Figures go into bench/RESULTS.md between the ``explain`` markers.
"""

from __future__ import annotations

import csv
import os
import random
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, cpu_flags, digits_module, machine, write_section  # noqa: E402

WORK = Path(__file__).resolve().parent / ".work" / "explain"


def _planted_texts(n_per_class: int = 60) -> Path:
    rng = random.Random(0)
    filler = (
        "the a this that today yesterday we they it was is very quite some many people place "
        "thing went saw made found really just about around over under with from into after"
    ).split()
    rows = []
    for label, key in {"weather": "thunderstorm", "food": "pizza", "money": "mortgage"}.items():
        for _ in range(n_per_class):
            words = [rng.choice(filler) for _ in range(rng.randint(6, 12))]
            words.insert(rng.randint(0, len(words)), key)
            rows.append({"text": " ".join(words), "label": label})
    rng.shuffle(rows)
    path = WORK / "planted.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def _test_items(run_dir: Path) -> list[str]:
    with open(run_dir / "predictions.csv", newline="") as f:
        return [row["item"] for row in csv.DictReader(f)]


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    import graft

    module = digits_module()
    items = _test_items(module.parent)
    rows = []

    graft.explain(module, items[:2])  # load, trace
    _, t = _timed(graft.explain, module, items[:32])
    gradcam_s = t / 32
    cam, t_check = _timed(graft.explain, module, items, check=True)
    graft.explain(module, items[:2], method="hirescam")
    _, t = _timed(graft.explain, module, items[:32], method="hirescam")
    hires_s = t / 32
    hires = graft.explain(module, items, method="hirescam", check=True)
    graft.explain(module, items[:1], method="shap", max_evals=300)  # SHAP's first call
    _, t = _timed(graft.explain, module, items[:5], method="shap", max_evals=300)
    shap_image_s = t / 5
    shap_img = graft.explain(module, items[:20], method="shap", max_evals=300, check=True)
    rows.append(("Lite0 digits (224x224)", "Grad-CAM, last block", gradcam_s, cam.check))
    rows.append(("Lite0 digits (224x224)", "HiResCAM, stage before", hires_s, hires.check))
    rows.append(("Lite0 digits (224x224)", "SHAP, 300 evaluations", shap_image_s, shap_img.check))

    text_run = WORK / "planted-run"
    if not (text_run / "module").is_dir():
        shutil.rmtree(text_run, ignore_errors=True)
        graft.train(_planted_texts(), "minilm_l6.sentence", out=text_run)
    texts = _test_items(text_run) + [r["text"] for r in csv.DictReader(open(WORK / "planted.csv"))]
    texts = texts[:40]
    graft.explain(text_run, texts[:1])
    _, t = _timed(graft.explain, text_run, texts[:20])
    shap_text_s = t / 20
    shap_txt = graft.explain(text_run, texts[:20], check=True)
    rows.append(("MiniLM planted keywords", "SHAP, 200 evaluations", shap_text_s, shap_txt.check))
    planted = sum(e.top_words(1)[0][0] in {"thunderstorm", "pizza", "mortgage"} for e in shap_txt)

    run_dir = WORK / "digits-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    run = graft.train(ROOT / "data" / "digits", out=run_dir)
    wall = time.perf_counter() - start
    explain_s = run.timings["explain_s"]
    wrong = sum(1 for _ in csv.DictReader(open(run_dir / "misclassified.csv")))

    lines = [
        f"## Explanations (`bench/explain.py`, {time.strftime('%Y-%m-%d')})",
        "",
        f"Machine: {machine(('tensorflow', 'keras', 'shap'))}; CPU flags: {cpu_flags()}.",
        "",
        "Time per input, warm; the deletion check hides the top 20% most-attributed parts "
        "(image patches of a 14x14 grid, blurred; words) against a random 20% (3 draws), and "
        "the deletion score is the mean probability left while 10-50% is hidden (lower is "
        "more faithful; random order in the same run).",
        "",
        "| model | method | s / input | inputs checked | beats random at 20% | "
        "deletion score beats random | mean score: explained vs random |",
        "|---|---|--:|--:|--:|--:|--:|",
    ]
    for model, method, seconds, check in rows:
        lines.append(
            f"| {model} | {method} | {seconds:.3f} | {check.examples} | "
            f"{check.win_rate:.0%} | {check.score_win_rate:.0%} | "
            f"{check.top_score:.3f} vs {check.random_score:.3f} |"
        )
    lines += [
        "",
        f"- Planted keyword ranked first by SHAP on {planted} of {len(shap_txt)} texts.",
        f"- Whole check of Grad-CAM on the {len(items)} test images: {t_check:.1f} s.",
        f"- Report overhead: a digits run (features cached) took {wall:.1f} s, of which "
        f"{explain_s:.2f} s explained its first {min(wrong, 12)} misclassified test examples "
        f"({wrong} in all).",
    ]
    section = "\n".join(lines)
    print(section)
    write_section("explain", section)


if __name__ == "__main__":
    main()
