"""The deletion check: is an explanation faithful to the model, or only a plausible picture?

Hide the most-attributed 20% of an input and, separately, a random 20%: if the attributions
point at what the model uses, hiding them lowers the explained class's probability more. Images
are hidden patch by patch on a grid (a patch takes the image's mean colour), so the top and the
random masks have the same shape statistics; texts lose whole words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class DeletionCheck:
    """The outcome over a set of inputs.

    Attributes:
        fraction: the share of each input hidden (0.2).
        examples: how many inputs were checked.
        wins: inputs where hiding the top attributions lowered the probability more than hiding
            random parts (averaged over ``repeats`` random draws).
        top_drop: mean drop of the explained class's probability, top parts hidden.
        random_drop: the same with random parts hidden.
        drops: per input, ``(top_drop, random_drop)``.
    """

    fraction: float
    examples: int
    wins: int
    top_drop: float
    random_drop: float
    drops: tuple[tuple[float, float], ...]

    @property
    def win_rate(self) -> float:
        """The share of inputs where the explanation beat random hiding."""
        return self.wins / self.examples if self.examples else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["win_rate"] = self.win_rate
        out["drops"] = [list(d) for d in self.drops]
        return out

    def describe(self) -> str:
        return (
            f"Deletion check: hiding the top {self.fraction:.0%} most-attributed parts lowered "
            f"the explained class's probability more than hiding a random {self.fraction:.0%} on "
            f"{self.wins} of {self.examples} inputs ({self.win_rate:.0%}); mean drop "
            f"{self.top_drop:.3f} against {self.random_drop:.3f}."
        )


def _summary(drops: list[tuple[float, float]], fraction: float) -> DeletionCheck:
    arr = np.asarray(drops, np.float64).reshape(-1, 2)
    return DeletionCheck(
        fraction=fraction,
        examples=len(drops),
        wins=int((arr[:, 0] > arr[:, 1]).sum()),
        top_drop=float(arr[:, 0].mean()) if len(arr) else 0.0,
        random_drop=float(arr[:, 1].mean()) if len(arr) else 0.0,
        drops=tuple((round(float(a), 6), round(float(b), 6)) for a, b in arr),
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
    """Deletion check of attribution maps (``(n, h, w)``, at the images' size)."""
    rng = np.random.default_rng(seed)
    grid = patch_grid(images.shape[1:3], cells)
    n_patches = cells * cells
    k = max(1, round(fraction * n_patches))
    counts = np.bincount(grid.ravel(), minlength=n_patches)
    batch, owners = [], []
    for i, (image, amap) in enumerate(zip(images, maps, strict=True)):
        scores = np.bincount(grid.ravel(), weights=amap.ravel(), minlength=n_patches) / counts
        chosen = [np.argsort(-scores, kind="stable")[:k]]
        chosen += [rng.choice(n_patches, k, replace=False) for _ in range(repeats)]
        fill = image.mean(axis=(0, 1))
        batch.append(image)
        for patches in chosen:
            masked = image.copy()
            masked[np.isin(grid, patches)] = fill
            batch.append(masked)
        owners.append(i)
    probs = np.concatenate(
        [probabilities(np.asarray(batch[s : s + 32])) for s in range(0, len(batch), 32)]
    )
    per = repeats + 2
    drops = []
    for i, target in zip(owners, targets, strict=True):
        p = probs[i * per : (i + 1) * per, target]
        drops.append((float(p[0] - p[1]), float(np.mean(p[0] - p[2:]))))
    return _summary(drops, fraction)


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
    """Deletion check of per-word attributions (words are replaced by a space)."""
    rng = np.random.default_rng(seed)
    batch, sizes = [], []
    for text, words, values in zip(texts, spans, attributions, strict=True):
        n = len(words)
        variants = [text]
        if n:
            k = max(1, math.ceil(fraction * n))
            chosen = [np.argsort(-np.asarray(values), kind="stable")[:k]]
            chosen += [rng.choice(n, k, replace=False) for _ in range(repeats)]
            variants += [_without(text, words, set(c.tolist())) for c in chosen]
        batch.extend(variants)
        sizes.append(len(variants))
    probs = probabilities(batch) if batch else np.zeros((0, 1))
    drops, start = [], 0
    for size, target in zip(sizes, targets, strict=True):
        p = probs[start : start + size, target]
        start += size
        if size > 1:
            drops.append((float(p[0] - p[1]), float(np.mean(p[0] - p[2:]))))
    return _summary(drops, fraction)


def _without(text: str, words: Sequence[tuple[int, int]], hidden: set[int]) -> str:
    parts, pos = [], 0
    for i, (a, b) in enumerate(words):
        if i in hidden:
            parts.append(text[pos:a] + " ")
            pos = b
    parts.append(text[pos:])
    return " ".join("".join(parts).split())
