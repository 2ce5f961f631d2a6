"""Grad-CAM (Selvaraju et al., 2017) on an image classifier module's last convolutional block.

A module is ``image_bytes -> DecodeImage -> backbone -> head``, the backbone nested as one
layer. A sub-model to an inner layer of a nested backbone is not connected to the outer inputs,
so the gradient model is built on the backbone's own graph (images in, the last 4-D activation
and the features out) and the head runs after it inside the same tape. The gradient is taken of
the class logit (the last Dense layer without its softmax), not of the probability, which
saturates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class ClassifierParts:
    """The pieces of an image classifier module that Grad-CAM and SHAP run separately."""

    core: object  # float images in [0, 1] -> probabilities (the network after decoding)
    backbone: object | None  # images -> features, or None when the module has no single one
    head: object | None  # features -> probabilities
    size: tuple[int, int]


def split_classifier(model, size) -> ClassifierParts:
    """Finds the backbone and the head of a classifier module (a graft train module, or any
    image model whose last two layers are a 4-D-activation backbone and a head).

    An ensemble module has no single backbone: ``backbone`` and ``head`` are then None, and only
    model-agnostic methods (SHAP) apply.
    """
    import keras

    from graft.export.graphs import core_of

    core = core_of(model, "image", True, size)
    layers = [layer for layer in core.layers if not isinstance(layer, keras.layers.InputLayer)]
    backbone = head = None
    if len(layers) == 2 and all(isinstance(layer, keras.Model) for layer in layers):
        candidate, head_candidate = layers
        if last_conv_layer(candidate) is not None:
            backbone, head = candidate, head_candidate
    return ClassifierParts(core=core, backbone=backbone, head=head, size=tuple(size))


def last_conv_layer(backbone):
    """The backbone's last layer with a 4-D (batch, height, width, channels) output, or None."""
    import keras

    for layer in reversed(backbone.layers):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        shape = getattr(layer.output, "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] and shape[1] > 1:
            return layer
    return None


def finer_conv_layer(backbone):
    """The last 4-D layer whose grid is finer than the last one's (the end of the previous
    stage: Lite0's ``block5c_add`` at 14x14 before its 7x7 top), or the last 4-D layer."""
    last = last_conv_layer(backbone)
    if last is None:
        return None
    for layer in reversed(backbone.layers):
        shape = getattr(layer.output, "shape", None)
        if shape is not None and len(shape) == 4 and shape[1] and shape[1] > last.output.shape[1]:
            return layer
    return last


def head_logits(head, features):
    """The head's output before its final softmax: the head's layers run in order (graft's heads
    are chains), the last Dense layer as ``x @ kernel + bias``."""
    import keras

    layers = [layer for layer in head.layers if not isinstance(layer, keras.layers.InputLayer)]
    x = features
    for layer in layers[:-1]:
        x = layer(x, training=False) if _takes_training(layer) else layer(x)
    last = layers[-1]
    if isinstance(last, keras.layers.Dense):
        x = keras.ops.matmul(x, last.kernel)
        return x + last.bias if last.use_bias else x
    return keras.ops.log(keras.ops.maximum(last(x), 1e-12))  # a head of another shape


def _takes_training(layer) -> bool:
    import keras

    return isinstance(layer, keras.layers.Dropout | keras.layers.BatchNormalization)


class GradCam:
    """Class activation maps of an image classifier, at the grid of the backbone's last
    convolutional block (or of ``layer``, any 4-D layer of the backbone).

    With ``hires=True`` it is HiResCAM (Draelos and Carin, 2020): the gradient times the
    activation summed over channels at each location, without Grad-CAM's spatial averaging of
    the gradient, by default one stage earlier (``finer_conv_layer``), where locations see
    smaller parts of the image.

    Example:
        >>> cam = GradCam(split_classifier(model, (224, 224)))  # doctest: +SKIP
        >>> maps, probs = cam(images, targets=[3, 7])  # doctest: +SKIP
        >>> maps.shape  # doctest: +SKIP
        (2, 7, 7)
    """

    def __init__(
        self,
        parts: ClassifierParts,
        layer: str | None = None,
        batch_size: int = 16,
        hires: bool = False,
    ) -> None:
        import keras

        if parts.backbone is None:
            raise InvalidArgumentError(
                "Grad-CAM needs one convolutional backbone followed by a head; this module has "
                "none (an ensemble, or a network without 4-D activations). Use method='shap', "
                f"which explains any image model. {received(method='gradcam')}"
            )
        self.parts = parts
        self.hires = hires
        if layer is not None:
            self.layer = _layer(parts, layer)
        elif hires:
            self.layer = finer_conv_layer(parts.backbone)
        else:
            self.layer = last_conv_layer(parts.backbone)
        self.batch_size = batch_size
        self._model = keras.Model(
            parts.backbone.inputs, [self.layer.output, parts.backbone.outputs[0]]
        )

    def __call__(self, images: np.ndarray, targets) -> tuple[np.ndarray, np.ndarray]:
        """Maps for ``targets`` (one class index per image).

        Returns:
            ``(maps, probabilities)``: maps ``(n, h, w)`` scaled to [0, 1] per image (all zeros
            where no region raises the class logit), and the module's probabilities ``(n,
            classes)``.
        """
        maps, probs = [], []
        targets = np.asarray(targets, np.int32)
        for start in range(0, len(images), self.batch_size):
            m, p = self._batch(
                images[start : start + self.batch_size], targets[start : start + self.batch_size]
            )
            maps.append(m)
            probs.append(p)
        return np.concatenate(maps), np.concatenate(probs)

    def _batch(self, images, targets):
        import tensorflow as tf

        x = tf.constant(images, tf.float32)
        with tf.GradientTape() as tape:
            activations, features = self._model(x, training=False)
            logits = head_logits(self.parts.head, features)
            chosen = tf.gather(logits, targets, axis=1, batch_dims=1)
        grads = tape.gradient(chosen, activations)
        weights = grads if self.hires else tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1)).numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)
        return cam.astype(np.float32), tf.nn.softmax(logits).numpy()


def _layer(parts: ClassifierParts, name: str):
    names = [
        layer.name
        for layer in parts.backbone.layers
        if len(getattr(layer.output, "shape", ())) == 4
    ]
    if name not in names:
        raise InvalidArgumentError(
            f"Grad-CAM's layer must be a layer of the backbone with a 4-D output; the backbone "
            f"{parts.backbone.name} has {len(names)}, the last ones {names[-5:]}. "
            f"{received(layer=name)}"
        )
    return parts.backbone.get_layer(name)


def upsample(maps: np.ndarray, size) -> np.ndarray:
    """Bilinear resize of ``(n, h, w)`` maps to ``size`` (height, width)."""
    import tensorflow as tf

    resized = tf.image.resize(maps[..., None], tuple(size), method="bilinear")
    return resized.numpy()[..., 0]
