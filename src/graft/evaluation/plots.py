"""PNG plots with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def confusion_matrix_png(matrix: Sequence[Sequence[int]], class_names, path: Path) -> Path:
    """Draws the confusion matrix with counts in the cells."""
    plt = _pyplot()
    m = np.asarray(matrix)
    n = len(class_names)
    side = min(2.0 + 0.5 * n, 16)
    fig, ax = plt.subplots(figsize=(side, side))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        threshold = m.max() / 2 if m.size else 0
        for i in range(n):
            for j in range(n):
                color = "white" if m[i, j] > threshold else "black"
                ax.text(j, i, str(m[i, j]), ha="center", va="center", color=color, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def curves_png(history: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """Loss and accuracy per epoch for each stage (train and validation)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    offset = 0
    for stage, logs in history.items():
        epochs = len(logs.get("loss", []))
        xs = np.arange(offset + 1, offset + epochs + 1)
        for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = logs.get(prefix + metric)
                if values:
                    ax.plot(xs, values, style, label=f"{stage} {prefix or 'train_'}{metric}")
        offset += epochs
    for ax, metric in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def selection_png(scores: Sequence[dict], chosen: dict, path: Path) -> Path:
    """Held-out accuracy and log loss against the L2 strength, one line per feature transform,
    with the chosen point marked (the convex head's model selection)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    transforms = list(dict.fromkeys(s.get("transform", "none") for s in scores))
    for transform in transforms:
        rows = [s for s in scores if s.get("transform", "none") == transform]
        lams = [s["lam"] for s in rows]
        for ax, metric in zip(axes, ("accuracy", "log_loss"), strict=True):
            ax.plot(lams, [s[metric] for s in rows], "o-", ms=3, label=f"{transform} features")
    for ax, metric in zip(axes, ("accuracy", "log_loss"), strict=True):
        ax.plot([chosen["lam"]], [chosen[metric]], "r*", ms=14, label="chosen")
        ax.set_xscale("log")
        ax.set_xlabel("L2 strength (per example)")
        ax.set_ylabel(f"held-out {metric.replace('_', ' ')}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
