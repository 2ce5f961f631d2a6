"""The deletion check: is an explanation faithful to the model, or only a plausible picture?

Hide the most-attributed 20% of an input and, separately, a random 20%: if the attributions
point at what the model uses, hiding them lowers the explained class's probability more. The
same comparison over 10-50% hidden gives the deletion score. Images are hidden patch by patch on
a grid, so the top and the random masks have the same shapes; texts lose whole words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class DeletionCheck:
    """The outcome over a set of inputs.

    Two measures, both comparing the most-attributed parts of each input with random parts
    (averaged over ``repeats`` random draws):

    - at ``fraction`` (20%) hidden: ``wins`` counts the inputs where hiding the top parts
      lowered the explained class's probability more (``top_drop``, ``random_drop``: mean drops);
    - the deletion score (Petsiuk et al., 2018): the mean probability left while 10%, 20% ...
      50% are hidden, top parts first (``top_score``) or random ones (``random_score``); lower
      is more faithful, and ``score_wins`` counts the inputs where the top parts' is lower.

    ``drops`` holds ``(top_drop, random_drop)`` per input.
    """

    fraction: float
    examples: int
    wins: int
    top_drop: float
    random_drop: float
    score_wins: int
    top_score: float
    random_score: float
    drops: tuple[tuple[float, float], ...]

    @property
    def win_rate(self) -> float:
        """The share of inputs where hiding the top 20% beat hiding a random 20%."""
        return self.wins / self.examples if self.examples else 0.0

    @property
    def score_win_rate(self) -> float:
        """The share of inputs whose deletion score beat random deletion."""
        return self.score_wins / self.examples if self.examples else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["win_rate"] = self.win_rate
        out["score_win_rate"] = self.score_win_rate
        out["drops"] = [list(d) for d in self.drops]
        return out

    def describe(self) -> str:
        return (
            f"Deletion check on {self.examples} inputs: hiding the top {self.fraction:.0%} "
            f"most-attributed parts lowered the explained class's probability more than hiding "
            f"a random {self.fraction:.0%} on {self.wins} ({self.win_rate:.0%}; mean drop "
            f"{self.top_drop:.3f} against {self.random_drop:.3f}); deletion score (mean "
            f"probability while 10-50% is hidden, lower is better) beat random on "
            f"{self.score_wins} ({self.score_win_rate:.0%}; {self.top_score:.3f} against "
            f"{self.random_score:.3f})."
        )


def _summary(curves: list[np.ndarray], fraction: float) -> DeletionCheck:
    """``curves``: per input, ``(1 + repeats, 1 + len(FRACTIONS))`` probabilities (row 0 top
    first, then random orders; column 0 nothing hidden)."""
    at = 1 + FRACTIONS.index(fraction)
    drops = np.asarray([(c[0, 0] - c[0, at], np.mean(c[1:, 0] - c[1:, at])) for c in curves])
    scores = np.asarray([(c[0, 1:].mean(), c[1:, 1:].mean()) for c in curves])
    drops = drops.reshape(-1, 2)
    scores = scores.reshape(-1, 2)
    mean = lambda a: float(a.mean()) if len(a) else 0.0  # noqa: E731
    return DeletionCheck(
        fraction=fraction,
        examples=len(curves),
        wins=int((drops[:, 0] > drops[:, 1]).sum()),
        top_drop=mean(drops[:, 0]),
        random_drop=mean(drops[:, 1]),
        score_wins=int((scores[:, 0] < scores[:, 1]).sum()),
        top_score=mean(scores[:, 0]),
        random_score=mean(scores[:, 1]),
        drops=tuple((round(float(a), 6), round(float(b), 6)) for a, b in drops),
    )


def patch_grid(size: tuple[int, int], cells: int = 14) -> np.ndarray:
    """``(h, w)`` integer patch ids of a ``cells`` x ``cells`` grid over an image."""
    h, w = size
    rows = np.minimum(np.arange(h) * cells // h, cells - 1)
    cols = np.minimum(np.arange(w) * cells // w, cells - 1)
    return rows[:, None] * cells + cols[None, :]


def check_images(
    probabilities: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    maps: np.ndarray,
    targets: Sequence[int],
    *,
    fraction: float = 0.2,
    cells: int = 14,
    repeats: int = 3,
    seed: int = 0,
) -> DeletionCheck:
    """Deletion check of attribution maps (``(n, h, w)``, at the images' size).

    Patches of a ``cells`` x ``cells`` grid are ranked by their mean attribution; a hidden
    patch shows the image blurred (Gaussian, sigma one patch), which removes what the patch
    shows without painting a shape the model never saw (a flat colour or black patch is itself
    evidence to a CNN, and hides the bright strokes of a digit more than its dark holes).
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    grid = patch_grid(images.shape[1:3], cells)
    n_patches = cells * cells
    counts = np.bincount(grid.ravel(), minlength=n_patches)
    sigma = images.shape[1] / cells
    curves = []
    for image, amap, target in zip(images, maps, targets, strict=True):
        scores = np.bincount(grid.ravel(), weights=amap.ravel(), minlength=n_patches) / counts
        orders = [np.argsort(-scores, kind="stable")]
        orders += [rng.permutation(n_patches) for _ in range(repeats)]
        blurred = gaussian_filter(image, (sigma, sigma, 0))
        batch = [image]
        for order in orders:
            for f in FRACTIONS:
                hidden = np.isin(grid, order[: max(1, round(f * n_patches))])
                masked = image.copy()
                masked[hidden] = blurred[hidden]
                batch.append(masked)
        p = probabilities(np.asarray(batch, np.float32))[:, target]
        curves.append(_curves(p, len(orders)))
    return _summary(curves, fraction)


def _curves(p: np.ndarray, orders: int) -> np.ndarray:
    """Probabilities of [original, then each order's fractions] as one row per order, with the
    original's probability in column 0."""
    rows = p[1:].reshape(orders, len(FRACTIONS))
    return np.concatenate([np.full((orders, 1), p[0]), rows], axis=1)


def check_texts(
    probabilities: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    attributions: Sequence[np.ndarray],
    targets: Sequence[int],
    *,
    fraction: float = 0.2,
    repeats: int = 3,
    seed: int = 0,
) -> DeletionCheck:
    """Deletion check of per-word attributions (hidden words are removed; at least one word is
    hidden at every step). Texts without words are left out."""
    rng = np.random.default_rng(seed)
    batch, owners = [], []
    for i, (text, words, values) in enumerate(zip(texts, spans, attributions, strict=True)):
        n = len(words)
        if not n:
            continue
        orders = [np.argsort(-np.asarray(values), kind="stable")]
        orders += [rng.permutation(n) for _ in range(repeats)]
        batch.append(text)
        for order in orders:
            for f in FRACTIONS:
                hidden = set(order[: max(1, math.ceil(f * n))].tolist())
                batch.append(_without(text, words, hidden))
        owners.append(i)
    probs = probabilities(batch) if batch else np.zeros((0, 1))
    per = 1 + (1 + repeats) * len(FRACTIONS)
    curves = [
        _curves(probs[k * per : (k + 1) * per, targets[i]], 1 + repeats)
        for k, i in enumerate(owners)
    ]
    return _summary(curves, fraction)


def _without(text: str, words: Sequence[tuple[int, int]], hidden: set[int]) -> str:
    parts, pos = [], 0
    for i, (a, b) in enumerate(words):
        if i in hidden:
            parts.append(text[pos:a] + " ")
            pos = b
    parts.append(text[pos:])
    return " ".join("".join(parts).split())
