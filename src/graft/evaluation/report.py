"""Writes an evaluation: metrics.json, predictions.csv, misclassified.csv, confusion matrix
(CSV and PNG), training curves and one self-contained report.html (images inlined)."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.evaluation.metrics import compute_metrics
from graft.evaluation.plots import confusion_matrix_png, curves_png, selection_png

MAX_THUMBNAILS = 48


@dataclass(frozen=True)
class EvalReport:
    """What an evaluation measured and where it wrote it."""

    metrics: dict
    directory: Path

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def html(self) -> Path:
        return self.directory / "report.html"


def _b64_png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _thumbnail(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((96, 96))
            if min(image.size) < 48:
                scale = 48 / min(image.size)
                image = image.resize(
                    (round(image.width * scale), round(image.height * scale)), Image.NEAREST
                )
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            return base64.b64encode(buffer.getvalue()).decode("ascii")
    except OSError:
        return None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(
    directory: str | Path,
    *,
    kind: str,
    items: Sequence[str],
    y_true: Sequence[int],
    probs: np.ndarray,
    class_names: Sequence[str],
    title: str,
    history: dict | None = None,
    skipped: Sequence = (),
    summary: dict | None = None,
    folds: dict | None = None,
    selection: dict | None = None,
    members: Sequence[dict] | None = None,
    explanations: tuple[dict[str, dict], str] | None = None,
) -> EvalReport:
    """Computes metrics and writes every evaluation file into ``directory``.

    Args:
        directory: output folder (created).
        kind: ``"image"`` (``items`` are paths; misclassified ones get thumbnails) or ``"text"``.
        items: the evaluated examples.
        y_true: their true class indices.
        probs: ``(n, classes)`` predicted probabilities.
        class_names: class names in index order.
        title: report heading.
        history: per-stage training logs, for the curves.
        skipped: examples left out of the data (``Skipped``), listed in the report.
        summary: extra facts for the report's header table (model, timings...).
        folds: cross-validation figures (``accuracy_mean``, ``accuracy_sd``, ``per_fold``); the
            other arguments then hold the out-of-fold predictions of every example.
        selection: how the model was chosen (``run.json``'s ``selection``): the convex head's
            held-out scores per strength are plotted (``selection.png``).
        members: an ensemble's comparison rows (``name``, ``role``: member, ensemble or
            reference, ``features``, ``head``, ``oof_accuracy``, ``test_accuracy``), shown as a
            table and kept in metrics.json.
        explanations: ``({item: {"overlay": base64 PNG} or {"html": ...}}, note)`` for
            misclassified examples (``graft.explanation.report.explain_misclassified``).

    Returns:
        The metrics and the folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(y_true, probs, class_names)
    metrics["skipped"] = len(skipped)
    if folds:
        metrics["folds"] = folds
    if members:
        metrics["members"] = [dict(m) for m in members]
    names = list(class_names)
    y_pred = probs.argmax(axis=1)
    top3 = np.argsort(-probs, axis=1)[:, :3]

    rows = []
    for i, item in enumerate(items):
        rows.append(
            {
                "item": item,
                "true": names[y_true[i]],
                "predicted": names[y_pred[i]],
                "probability": float(probs[i, y_pred[i]]),
                "top3": "; ".join(f"{names[j]}:{probs[i, j]:.4f}" for j in top3[i]),
            }
        )
    for filename, selected in (
        ("predictions.csv", rows),
        ("misclassified.csv", [r for r in rows if r["true"] != r["predicted"]]),
    ):
        buffer = io.StringIO()
        writer = csv.DictWriter(
            buffer, fieldnames=["item", "true", "predicted", "probability", "top3"]
        )
        writer.writeheader()
        writer.writerows(selected)
        _write_text(directory / filename, buffer.getvalue())

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true \\ predicted", *names])
    for name, row in zip(names, metrics["confusion_matrix"], strict=True):
        writer.writerow([name, *row])
    _write_text(directory / "confusion_matrix.csv", buffer.getvalue())
    confusion_matrix_png(metrics["confusion_matrix"], names, directory / "confusion_matrix.png")
    images = {"confusion": _b64_png(directory / "confusion_matrix.png")}
    if history:
        curves_png(history, directory / "curves.png")
        images["curves"] = _b64_png(directory / "curves.png")
    scores = (selection or {}).get("head", {}).get("scores")
    if scores:
        chosen = max(scores, key=lambda s: (s["accuracy"], -s["log_loss"]))
        selection_png(scores, chosen, directory / "selection.png")
        images["selection"] = _b64_png(directory / "selection.png")
    _write_text(directory / "metrics.json", json.dumps(metrics, indent=2) + "\n")

    wrong = [r for r in rows if r["true"] != r["predicted"]]
    shown = wrong[:MAX_THUMBNAILS]
    explained, explain_note = explanations or ({}, "")
    for r in shown:
        if kind == "image":
            r["thumbnail"] = _thumbnail(r["item"])
        r["explanation"] = explained.get(r["item"], {})
    html = (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            kind=kind,
            metrics=metrics,
            summary=summary or {},
            images=images,
            misclassified=shown,
            misclassified_total=len(wrong),
            explain_note=explain_note,
            skipped=list(skipped),
            class_names=names,
            confusion=list(zip(names, metrics["confusion_matrix"], strict=True)),
            exports_html="",
            folds=folds,
            members=list(members or ()),
        )
    )
    _write_text(directory / "report.html", html)
    return EvalReport(metrics=metrics, directory=directory)


EXPORTS_START, EXPORTS_END = "<!-- graft:exports -->", "<!-- /graft:exports -->"
SEARCH_START, SEARCH_END = "<!-- graft:search -->", "<!-- /graft:search -->"


def add_search(report: str | Path, search: dict) -> None:
    """Adds (or replaces) the Search section of ``report.html``, before the exports.

    Args:
        report: the report file.
        search: ``run.json``'s ``search`` plus ``trials`` (number, state, value, params,
            seconds, default per trial).

    Example:
        >>> add_search("runs/tuned/report.html", search)  # doctest: +SKIP
    """
    report = Path(report)
    html = report.read_text(encoding="utf-8")
    body = _environment().get_template("search.html.j2").render(search=search)
    section = SEARCH_START + body + SEARCH_END
    if SEARCH_START in html and SEARCH_END in html:
        head, rest = html.split(SEARCH_START, 1)
        html = head + section + rest.split(SEARCH_END, 1)[1]
    elif EXPORTS_START in html:
        html = html.replace(EXPORTS_START, section + EXPORTS_START, 1)
    else:
        html = html.replace("</body>", section + "\n</body>", 1)
    _write_text(report, html)


def _environment():
    from jinja2 import Environment, PackageLoader, select_autoescape

    return Environment(
        loader=PackageLoader("graft.evaluation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )


def render_exports(exports: Sequence[dict]) -> str:
    """The HTML of export comparison sections (``export_report.json`` dicts plus ``out``)."""
    return _environment().get_template("exports.html.j2").render(exports=list(exports))


def add_exports(report: str | Path, exports: Sequence[dict]) -> None:
    """Replaces the export sections of an existing ``report.html`` (atomically)."""
    report = Path(report)
    html = report.read_text(encoding="utf-8")
    section = EXPORTS_START + render_exports(exports) + EXPORTS_END
    if EXPORTS_START in html and EXPORTS_END in html:
        head, rest = html.split(EXPORTS_START, 1)
        html = head + section + rest.split(EXPORTS_END, 1)[1]
    else:  # a report written before export sections existed
        html = html.replace("</body>", section + "\n</body>", 1)
    _write_text(report, html)


def write_export_page(directory: str | Path, export: dict) -> Path:
    """A standalone ``report.html`` for one export directory."""
    from html import escape

    body = render_exports([export])
    title = escape(f"graft export of {export['module']}")
    page = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{title}</title>\n<style>{EXPORT_CSS}</style>\n</head>\n<body>\n"
        f"<h1>{title}</h1>\n{body}\n</body>\n</html>\n"
    )
    path = Path(directory) / "report.html"
    _write_text(path, page)
    return path


EXPORT_CSS = (
    "body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; } "
    "table { border-collapse: collapse; margin: .5rem 0; } "
    "th, td { border: 1px solid #ddd; padding: .3rem .6rem; text-align: left; } "
    "td.num { text-align: right; font-variant-numeric: tabular-nums; }"
)
