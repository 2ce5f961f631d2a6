"""Magnitude pruning during training, on a polynomial-decay sparsity schedule.

What tfmot's ``prune_low_magnitude`` with ``PolynomialDecay`` did, for Keras 3: the kernels being
trained (the head's Dense layers, and the unfrozen backbone blocks when fine-tuning) lose their
smallest-magnitude weights as training goes, from ``initial`` to ``final`` sparsity along

    s(t) = final + (initial - final) * (1 - (t - begin) / (end - begin)) ** 3

and the pruned weights are held at zero after every optimizer step. The masks live in the
callback, not in the model, so the saved module holds plain layers whose zeros compress (see
the gzip sizes ``graft export`` reports): nothing has to be stripped before export.

Example:
    >>> schedule = PolynomialDecay(0.5, 0.9, begin_step=0, end_step=100)
    >>> [round(schedule(t), 3) for t in (0, 50, 100, 200)]
    [0.5, 0.85, 0.9, 0.9]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRUNABLE = ("Dense", "Conv2D", "DepthwiseConv2D", "EinsumDense")


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity at step ``t``: ``initial`` at ``begin_step``, ``final`` from ``end_step`` on."""

    initial: float
    final: float
    begin_step: int
    end_step: int
    power: float = 3.0

    def __call__(self, step: int) -> float:
        if step <= self.begin_step:
            return self.initial
        if step >= self.end_step:
            return self.final
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final + (self.initial - self.final) * (1 - progress) ** self.power


def _kernel(layer):
    """The weight matrix a layer's pruning applies to (``depthwise_kernel`` for depthwise)."""
    kernel = getattr(layer, "depthwise_kernel", None)
    return kernel if kernel is not None else getattr(layer, "kernel", None)


def prunable_kernels(model) -> list:
    """The trainable kernels of Dense/Conv2D/DepthwiseConv2D/EinsumDense layers in ``model``."""
    kernels = []
    for layer in model._flatten_layers(include_self=False):
        if type(layer).__name__ in PRUNABLE and layer.trainable:
            kernel = _kernel(layer)
            if kernel is not None and kernel.trainable:
                kernels.append((layer.name, kernel))
    return kernels


def sparsity_by_layer(model, minimum: float = 0.0) -> dict[str, dict]:
    """``{layer: {"params": n, "sparsity": zeros / n}}`` for every Dense/Conv kernel.

    Example:
        >>> sparsity_by_layer(module_model, minimum=0.01)  # doctest: +SKIP
        {'predictions': {'params': 12800, 'sparsity': 0.9}}
    """
    out = {}
    for layer in model._flatten_layers(include_self=False):
        if type(layer).__name__ not in PRUNABLE:
            continue
        kernel = _kernel(layer)
        if kernel is None:
            continue
        value = np.asarray(kernel.numpy())
        share = float((value == 0).mean())
        if share >= minimum:
            out[layer.name] = {"params": int(value.size), "sparsity": round(share, 4)}
    return out


class Pruning:
    """Keras callback factory: ``callback()`` returns the callback; one instance per stage.

    Args:
        schedule: the sparsity schedule over the stage's optimizer steps.
        frequency: recompute the masks every this many steps (they are applied every step).
    """

    def __init__(self, schedule: PolynomialDecay, frequency: int = 10) -> None:
        self.schedule = schedule
        self.frequency = max(1, int(frequency))
        self.step = 0
        self.masks: dict[int, np.ndarray] = {}
        self.kernels: list = []
        self._final = False

    def attach(self, model, step: int = 0) -> None:
        """Targets ``model``'s trainable kernels; a resumed stage re-reads masks from zeros."""
        self.kernels = prunable_kernels(model)
        self.step = step
        self._final = False
        self.masks = {}
        for i, (_, kernel) in enumerate(self.kernels):
            value = np.asarray(kernel.numpy())
            if step and (value == 0).any():
                self.masks[i] = value != 0
        self._final = bool(self.masks) and self.reached()

    def _update_masks(self) -> None:
        target = self.schedule(self.step)
        for i, (_, kernel) in enumerate(self.kernels):
            value = np.abs(np.asarray(kernel.numpy()))
            k = int(round(target * value.size))
            if k <= 0:
                self.masks.pop(i, None)
                continue
            threshold = np.partition(value.ravel(), k - 1)[k - 1]
            mask = value > threshold
            # Ties at the threshold: keep exactly size - k weights.
            extra = int(mask.size - k - mask.sum())
            if extra > 0:
                ties = np.flatnonzero((value == threshold).ravel())[:extra]
                mask.ravel()[ties] = True
            self.masks[i] = mask

    def _apply(self) -> None:
        for i, mask in self.masks.items():
            kernel = self.kernels[i][1]
            kernel.assign(np.asarray(kernel.numpy()) * mask)

    def on_batch(self) -> None:
        """After each optimizer step: maybe recompute the masks, then zero the pruned weights."""
        self.step += 1
        if self.step < self.schedule.begin_step:
            return
        if not self._final and (self.step % self.frequency == 0 or self.reached()):
            self._update_masks()
            self._final = self.reached()
        self._apply()

    def callback(self):
        import keras

        pruning = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                pruning.on_batch()

        return _Callback()

    def reached(self) -> bool:
        """True once the schedule is at its final sparsity."""
        return self.step >= self.schedule.end_step
