"""SHAP's Partition explainer on graft modules: images (a constant-colour image masker) and
texts (a text masker over graft's word split).

SHAP is an optional dependency (``pip install 'graft[explain]'``). The image masker replaces
hidden regions by the image's mean colour rather than a blur or inpainting, which would need
OpenCV. The text masker hides whole words (``word_spans``), not BERT's word pieces, and
replaces them by a space: SHAP's default ``"..."`` would glue onto the next word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from graft.errors import MissingDependencyError

WORD = re.compile(r"\w+(?:['’]\w+)*")


def import_shap():
    """``shap``, or a clear error naming the extra."""
    try:
        import shap
    except ImportError:
        raise MissingDependencyError(
            "SHAP explanations need the `shap` package: pip install 'graft[explain]' "
            "(HiResCAM and Grad-CAM, for images, do not). Received: method='shap'"
        ) from None
    return shap


def word_spans(text: str) -> list[tuple[int, int]]:
    """graft's word split: ``(start, end)`` of every word (letters, digits, ``_``, and inner
    apostrophes); punctuation and spaces belong to no word.

    Example:
        >>> [("don't stop, 2 go!"[a:b]) for a, b in word_spans("don't stop, 2 go!")]
        ["don't", 'stop', '2', 'go']
    """
    return [m.span() for m in WORD.finditer(text)]


class WordTokenizer:
    """graft's word split in the minimal Hugging Face tokenizer protocol SHAP's ``Text`` masker
    reads (``input_ids`` and ``offset_mapping``). Text before the first word joins the first
    token, so masking never loses a character; a text without words is one token."""

    def __call__(self, s: str, return_offsets_mapping: bool = True) -> dict:
        spans = word_spans(s)
        if not spans:
            spans = [(0, len(s))] if s else []
        elif spans[0][0] > 0:
            spans[0] = (0, spans[0][1])
        out = {"input_ids": [s[a:b] for a, b in spans]}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


def explain_texts(
    probabilities: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    targets: Sequence[int],
    *,
    max_evals: int = 200,
    batch_size: int = 64,
) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
    """Per-word SHAP values of the target class's probability.

    Args:
        probabilities: texts -> ``(n, classes)`` probabilities.
        texts: the texts to explain.
        targets: the class index to explain, per text.
        max_evals: model evaluations per text (Partition explainer).
        batch_size: texts per model call.

    Returns:
        Per text: the word spans (``WordTokenizer``'s offsets) and their attributions.
    """
    shap = import_shap()
    masker = shap.maskers.Text(WordTokenizer(), mask_token=" ", collapse_mask_token=True)

    def f(batch) -> np.ndarray:
        return probabilities([str(t) for t in batch])

    explainer = shap.explainers.Partition(f, masker)
    out = []
    for text, target in zip(texts, targets, strict=True):
        spans = WordTokenizer()(text)["offset_mapping"]
        if len(spans) < 2:  # nothing to share out: all of the change is the only word's
            p = probabilities([text, " "])
            out.append((spans, np.asarray([p[0, target] - p[1, target]][: len(spans)])))
            continue
        result = explainer(
            [text],
            max_evals=max(max_evals, 2 * len(spans) + 1),
            batch_size=batch_size,
            silent=True,
        )
        out.append((spans, np.asarray(result.values[0])[:, target].astype(np.float32)))
    return out


def explain_images(
    probabilities: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    targets: Sequence[int],
    *,
    max_evals: int = 300,
    batch_size: int = 50,
) -> np.ndarray:
    """Per-pixel SHAP values (summed over RGB) of the target class's probability.

    Args:
        probabilities: float images ``(n, h, w, 3)`` in [0, 1] -> ``(n, classes)``.
        images: the images to explain.
        targets: the class index to explain, per image.
        max_evals: model evaluations per image (Partition explainer over image regions).
        batch_size: images per model call.

    Returns:
        ``(n, h, w)`` attributions.
    """
    shap = import_shap()
    maps = []
    for image, target in zip(images, targets, strict=True):
        background = np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
        masker = shap.maskers.Image(background.copy(), image.shape)

        def f(batch, target=target) -> np.ndarray:
            return probabilities(np.asarray(batch, np.float32))[:, [target]]

        explainer = shap.explainers.Partition(f, masker)
        result = explainer(image[None], max_evals=max_evals, batch_size=batch_size, silent=True)
        maps.append(np.asarray(result.values[0])[..., 0].sum(axis=-1))
    return np.stack(maps).astype(np.float32)
