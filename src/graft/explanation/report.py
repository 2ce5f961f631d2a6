"""Explanations of a report's misclassified examples: computed for those few only (HiResCAM for
images, SHAP for texts), so a run or an evaluation gets slower by seconds, not minutes."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

log = logging.getLogger(__name__)
LIMIT = 12  # misclassified examples explained per report (the first ones shown)


def explain_misclassified(
    model,
    kind: str,
    size,
    items: Sequence[str],
    y_true: Sequence[int],
    probs: np.ndarray,
    labels: Sequence[str],
    limit: int = LIMIT,
) -> tuple[dict[str, dict], str]:
    """Explanations of the predicted (wrong) class of the first ``limit`` misclassified
    examples.

    Returns:
        ``({item: {"overlay": base64 PNG} | {"html": coloured text}}, note)``; the note says
        what was explained, or why nothing was (an explanation never fails a run).
    """
    from graft.explanation import render
    from graft.explanation.api import run
    from graft.explanation.explainer import Explainer, check_method

    predicted = np.asarray(probs).argmax(axis=1)
    wrong = [i for i in range(len(items)) if predicted[i] != y_true[i]][:limit]
    if not wrong:
        return {}, ""
    method = check_method("auto", kind)
    chosen = [items[i] for i in wrong]
    try:
        explainer = Explainer(model, kind, size)
        if kind == "image" and explainer.parts.backbone is None:
            method = "shap"
        results = run(
            explainer, chosen, list(labels), method, targets=[int(predicted[i]) for i in wrong]
        )
    except ImportError as exc:
        return {}, f"Misclassified examples are not explained: {exc}"
    except Exception as exc:  # an explanation must never cost the user a finished run
        log.warning("explaining the misclassified examples failed: %s", exc)
        return {}, f"Explaining the misclassified examples failed: {exc}"
    out = {}
    for e in results:
        if kind == "image":
            picture = render.overlay(
                e.item, e.attribution, f"{e.label} {e.probability:.2f}", signed=method == "shap"
            )
            out[e.item] = {"overlay": render.b64(render.png_bytes(picture, max_side=160))}
        else:
            out[e.item] = {"html": render.coloured_text(e.item, e.words, e.attribution)}
    name = {"hirescam": "HiResCAM", "gradcam": "Grad-CAM"}.get(method, "SHAP")
    what = (
        "warm colours: where the model saw evidence for the predicted class"
        if kind == "image"
        else "red words raised the predicted class's probability, blue words lowered it"
    )
    return out, f"The first {len(out)} misclassified examples are explained with {name} ({what})."
