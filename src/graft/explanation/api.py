"""``graft.explain``: why a classifier module predicts what it does, per input, as pictures,
coloured text and JSON, with an optional deletion check of the explanations' faithfulness."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class Explanation:
    """The explanation of one input.

    Attributes:
        item: the image file or the text.
        method: ``"gradcam"``, ``"hirescam"`` or ``"shap"``.
        label: the explained class (the predicted one unless another was asked for).
        probability: the module's probability of ``label``.
        predicted: the predicted class, and ``predicted_probability`` its probability.
        attribution: images: an ``(h, w)`` map at the module's input size (Grad-CAM in [0, 1];
            SHAP signed, in probability units); texts: one SHAP value per word of ``words``.
        words: texts: the ``(start, end)`` span of each word in ``item``.
        file: the overlay PNG written for an image (relative to the output folder), if any.
    """

    item: str
    method: str
    label: str
    probability: float
    predicted: str
    predicted_probability: float
    attribution: np.ndarray = field(repr=False)
    words: tuple[tuple[int, int], ...] = ()
    file: str = ""

    def top_words(self, k: int = 5) -> list[tuple[str, float]]:
        """Texts: the ``k`` words that raised the explained class's probability most."""
        order = np.argsort(-self.attribution, kind="stable")[:k]
        return [(self.item[slice(*self.words[i])], float(self.attribution[i])) for i in order]

    def to_dict(self) -> dict:
        out = {
            "input": self.item,
            "method": self.method,
            "label": self.label,
            "probability": round(self.probability, 6),
            "predicted": self.predicted,
            "predicted_probability": round(self.predicted_probability, 6),
        }
        if self.words:
            out["words"] = [
                {"word": self.item[a:b], "start": a, "end": b, "attribution": round(float(v), 6)}
                for (a, b), v in zip(self.words, self.attribution, strict=True)
            ]
        else:
            from graft.explanation.deletion import patch_grid

            grid = patch_grid(self.attribution.shape, 14)
            cells = np.bincount(grid.ravel(), weights=self.attribution.ravel(), minlength=196)
            cells /= np.bincount(grid.ravel(), minlength=196)
            out["attribution_14x14"] = np.round(cells.reshape(14, 14), 5).tolist()
            out["file"] = self.file
        return out


class Explanations(list):
    """``Explanation`` per readable input, in order; ``check`` holds the deletion check when it
    was asked for, ``out`` the folder written (or None), ``skipped`` the unreadable inputs."""

    check = None
    out: Path | None = None
    skipped: tuple = ()


def explain(
    module: str | Path,
    inputs: Sequence[str],
    *,
    out: str | Path | None = None,
    method: str = "auto",
    label: str | None = None,
    check: bool = False,
    max_evals: int | None = None,
    layer: str | None = None,
    task: str | None = None,
    runtime: str = "auto",
) -> Explanations:
    """Explains a classifier module's predictions on image files or texts.

    Images: Grad-CAM on the backbone's last convolutional block (``method="gradcam"``, the
    default), HiResCAM one stage earlier (``"hirescam"``: finer, and more faithful on the
    digits bench), or SHAP's Partition explainer over image regions (``"shap"``). Texts:
    SHAP's Partition explainer over words.

    Args:
        module: a classifier module handle (directory, run folder, hub handle...).
        inputs: image files or folders of images (image modules), or texts (text modules).
        out: a folder to write: an overlay PNG per image or coloured text, ``index.html`` and
            ``explanations.json``. Nothing is written without it.
        method: ``"auto"`` (HiResCAM for images, SHAP for texts), ``"hirescam"``,
            ``"gradcam"`` or ``"shap"``.
        label: the class to explain for every input (default: each input's predicted class).
        check: also run the deletion check (``Explanations.check``).
        max_evals: SHAP's model evaluations per input (default 300 for images, 200 for texts).
        layer: the CAM's layer of the backbone (default: the last convolutional block for
            Grad-CAM, the end of the stage before it for HiResCAM).
        task: a multi-task module: the task to explain (default: its first).
        runtime: how images run for SHAP and the check: ``auto``/``tflite``/``keras``.

    Returns:
        ``Explanations``.

    Raises:
        InvalidArgumentError: the module is not a classifier, ``label`` is not one of its
            labels, the method does not apply, or no input could be read.

    Example:
        >>> e = graft.explain("runs/digits", ["seven.png"], out="why")  # doctest: +SKIP
        >>> e[0].label, e[0].attribution.shape  # doctest: +SKIP
        ('7', (224, 224))
    """
    from graft._engines import check_runtime
    from graft.explanation.explainer import Explainer, check_method
    from graft.inference import load_classifier, readable_inputs

    check_runtime(runtime)
    model = load_classifier(module, "explain")
    manifest = model.graft_manifest
    kind = manifest.inputs.kind
    method = check_method(method, kind)
    labels = list(manifest.labels)
    if manifest.heads:
        model, labels = one_task(model, manifest, task)
    elif task is not None:
        raise InvalidArgumentError(
            f"task applies to multi-task modules; {manifest.name} has one output. "
            f"{received(task=task)}"
        )
    if label is not None and label not in labels:
        raise InvalidArgumentError(
            f"The class to explain must be one of the module's labels: {labels}. "
            f"{received(label=label)}"
        )
    if max_evals is not None and max_evals < 10:
        raise InvalidArgumentError(
            f"max_evals must be at least 10 model evaluations per input. "
            f"{received(max_evals=max_evals)}"
        )
    items = _expand(kind, [str(i) for i in inputs])
    items, skipped = readable_inputs(kind, items)
    if not items:
        raise InvalidArgumentError(
            "None of the inputs can be explained: "
            + "; ".join(f"{s.item}: {s.reason}" for s in skipped[:5])
            + f". The module takes {kind} input. {received(inputs=list(inputs)[:5])}"
        )
    size = tuple(manifest.inputs.size) if kind == "image" else None
    if layer is not None and method not in ("gradcam", "hirescam"):
        raise InvalidArgumentError(
            "layer applies to Grad-CAM and HiResCAM only (method='gradcam' or 'hirescam'). "
            f"{received(layer=layer)}"
        )
    explainer = Explainer(model, kind, size, layer=layer)
    if kind == "image" and (method == "shap" or check) and not manifest.heads:
        explainer.use_fast_engine(manifest, runtime)
    prepared = _prepared(explainer, items)
    results = run(
        explainer, items, labels, method, label=label, max_evals=max_evals, prepared=prepared
    )
    results.skipped = skipped
    if check:
        results.check = explainer.deletion_check(
            prepared,
            [(e.words, e.attribution) if kind == "text" else e.attribution for e in results],
            [labels.index(e.label) for e in results],
        )
    if out is not None:
        write(results, Path(out), kind, title=f"Explanations of {manifest.name}")
    return results


def one_task(model, manifest, task: str | None):
    """``(model, labels)``: a multi-task module's network with one task's output only.

    Raises:
        InvalidArgumentError: ``task`` is not one of the module's tasks.
    """
    import keras

    heads = {h.name: list(h.labels) for h in manifest.heads}
    task = task or manifest.heads[0].name
    if task not in heads:
        raise InvalidArgumentError(
            f"The task to explain must be one of the module's tasks: {list(heads)}. "
            f"{received(task=task)}"
        )
    single = keras.Model(model.inputs, model.output[task])
    single.graft_manifest = manifest
    return single, heads[task]


def _expand(kind: str, items: list[str]) -> list[str]:
    """Image folders become their image files (sorted, recursively)."""
    if kind != "image":
        return items
    from graft.data.images import IMAGE_SUFFIXES

    out = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            out += sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            out.append(item)
    return out


def _prepared(explainer, items: list[str]):
    if explainer.kind == "text":
        return items
    from graft.data.images import load_images

    return load_images(items, explainer.size)


def run(
    explainer,
    items: list[str],
    labels: list[str],
    method: str,
    *,
    label: str | None = None,
    targets: Sequence[int] | None = None,
    max_evals: int | None = None,
    prepared=None,
) -> Explanations:
    """Explains ``items`` (readable files or texts) with an ``Explainer``: the class ``label``,
    else ``targets`` (class indices), else each input's predicted class. ``prepared``: the
    items already decoded (images), when the caller has them."""
    if prepared is None:
        prepared = _prepared(explainer, items)
    probs = explainer.probabilities(prepared)
    predicted = probs.argmax(axis=1)
    if label is not None:
        targets = [labels.index(label)] * len(items)
    elif targets is None:
        targets = predicted.tolist()
    attributions = explainer.attributions(prepared, targets, method, max_evals)
    results = Explanations()
    for i, item in enumerate(items):
        t, p = int(targets[i]), int(predicted[i])
        words, values = (
            (tuple(attributions[i][0]), np.asarray(attributions[i][1], np.float32))
            if explainer.kind == "text"
            else ((), np.asarray(attributions[i], np.float32))
        )
        results.append(
            Explanation(
                item=item,
                method=method,
                label=labels[t],
                probability=float(probs[i, t]),
                predicted=labels[p],
                predicted_probability=float(probs[i, p]),
                attribution=values,
                words=words,
            )
        )
    return results


def write(results: Explanations, out: Path, kind: str, title: str) -> None:
    """Writes overlays (images), ``explanations.json`` and ``index.html`` into ``out``; every
    file whole or not at all."""
    from dataclasses import replace

    from graft.explanation import render

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, e in enumerate(results):
        if kind == "image":
            name = f"{i:03d}-{Path(e.item).stem[:60]}.{e.method}.png"
            picture = render.overlay(
                e.item, e.attribution, f"{e.label} {e.probability:.2f}", signed=e.method == "shap"
            )
            render.write_atomic(out / name, render.png_bytes(picture))
            results[i] = e = replace(e, file=name)
        row = e.to_dict() | {"item": e.item}
        if kind == "text":
            row["html"] = render.coloured_text(e.item, e.words, e.attribution)
        rows.append(row)
    check = results.check.to_dict() if results.check else None
    document = {"explanations": [e.to_dict() for e in results]}
    if check:
        document["deletion_check"] = check
    render.write_atomic(out / "explanations.json", json.dumps(document, indent=1) + "\n")
    notes = (
        [
            f"{len(results.skipped)} input(s) skipped: "
            + "; ".join(f"{s.item} ({s.reason})" for s in results.skipped)
        ]
        if results.skipped
        else []
    )
    render.write_atomic(out / "index.html", render.gallery(title, kind, rows, check, notes))
    results.out = out
