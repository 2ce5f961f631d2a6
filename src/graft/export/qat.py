"""Quantization-aware training of the fine-tuned layers (the head), for int8 TFLite.

What tfmot's ``quantize_apply`` did, for the part of a graft module that was trained: the
frozen backbone runs as its own int8 TFLite model (its exact integer kernels, so the head sees
the features the device will compute, not a float simulation of them), and the head is trained
on those features with fake-quantized weights (per-channel symmetric int8, as the converter
quantizes them) and fake-quantized outputs (8-bit asymmetric, range tracked by a moving
average), with straight-through gradients. The trained head goes back into the float module
graph, and the whole graph is then converted to full int8 as usual.

Post-training int8 shifts the backbone's features (on scikit-learn's digits, cosine 0.97 to
the float features); a head fitted to float features can lose ten points on them, while a head
trained on the integer features loses about none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.errors import InvalidArgumentError, received

EPOCHS = 10
LEARNING_RATE = 1e-3
BATCH = 32
EMA = 0.99


@dataclass(frozen=True)
class QatResult:
    """The new core (float graph, head trained quantization-aware) and its training log."""

    core: object
    val_accuracy: list[float]
    best_epoch: int


def split_head(core):
    """``(backbone_model, head_model)`` of a graft classifier core (``... -> head``).

    Raises:
        InvalidArgumentError: the core has no ``head`` layer of graft's head layers.
    """
    import keras

    inner = [layer for layer in core.layers if not isinstance(layer, keras.layers.InputLayer)]
    names = [layer.name for layer in inner]
    if names[-1:] != ["head"] or len(inner) != 2 or not isinstance(inner[0], keras.Model):
        raise InvalidArgumentError(
            "Quantization-aware training needs a module trained by graft (a backbone model, "
            f"then the `head` model). {received(layers=names[-3:])}"
        )
    from graft.models.layers import FeatureScaling, PowerNormalization

    head = inner[1]
    for layer in head.layers:
        if not isinstance(
            layer,
            keras.layers.InputLayer
            | keras.layers.Dense
            | keras.layers.Dropout
            | FeatureScaling
            | PowerNormalization,
        ):
            raise InvalidArgumentError(
                "Quantization-aware training supports heads made of Dense, Dropout, "
                "FeatureScaling and PowerNormalization layers. "
                f"{received(layer=f'{layer.name} ({type(layer).__name__})')}"
            )
    return inner[0], head


def fresh_inputs(model):
    """New ``keras.Input`` s shaped like ``model``'s inputs (a tensor or a dict of them)."""
    import keras

    return keras.tree.map_structure(
        lambda t: keras.Input(t.shape[1:], dtype=t.dtype, name=t.name.split(":")[0]), model.input
    )


def _fake_quant_layer():
    import keras
    from keras import ops

    def fake_quant(x, low, high):
        """8-bit asymmetric fake quantization of ``x`` to ``[low, high]`` (``low <= 0``)."""
        low = ops.minimum(low, 0.0)
        high = ops.maximum(high, low + 1e-6)
        scale = (high - low) / 255.0
        zero = ops.round(-low / scale)
        q = ops.clip(ops.round(x / scale) + zero, 0.0, 255.0)
        return x + ops.stop_gradient((q - zero) * scale - x)

    class QuantAwareDense(keras.layers.Layer):
        """A Dense layer trained as its int8 TFLite kernel will run it."""

        def __init__(self, dense, **kwargs):
            super().__init__(name=dense.name, **kwargs)
            self.units = dense.units
            self.activation_name = keras.activations.serialize(dense.activation)
            self.activation = dense.activation
            self.initial = [np.asarray(w) for w in dense.get_weights()]
            self.calibrating = True

        def build(self, input_shape):
            kernel, bias = self.initial
            self.kernel = self.add_weight(
                shape=kernel.shape, initializer=keras.initializers.Constant(kernel), name="kernel"
            )
            self.bias = self.add_weight(
                shape=bias.shape, initializer=keras.initializers.Constant(bias), name="bias"
            )
            self.low = self.add_weight(shape=(), initializer="zeros", trainable=False, name="low")
            self.high = self.add_weight(shape=(), initializer="zeros", trainable=False, name="high")

        def call(self, x, training=False):
            scale = ops.maximum(ops.max(ops.abs(self.kernel), axis=0), 1e-12) / 127.0
            quantized = ops.clip(ops.round(self.kernel / scale), -127.0, 127.0) * scale
            kernel = self.kernel + ops.stop_gradient(quantized - self.kernel)
            y = ops.matmul(x, kernel) + self.bias
            # TFLite fuses ReLU into the kernel and quantizes after it; softmax follows a
            # quantized logits tensor.
            softmax = self.activation_name == "softmax"
            y = y if softmax else self.activation(y)
            if self.calibrating:
                self.low.assign(ops.minimum(self.low, ops.min(y)))
                self.high.assign(ops.maximum(self.high, ops.max(y)))
            elif training:
                self.low.assign(EMA * self.low + (1 - EMA) * ops.min(y))
                self.high.assign(EMA * self.high + (1 - EMA) * ops.max(y))
            y = fake_quant(y, self.low, self.high)
            return ops.softmax(y) if softmax else y

    return QuantAwareDense


def quant_aware_head(head):
    """A trainable copy of ``head`` whose Dense layers are quantization-aware."""
    import keras

    QuantAwareDense = _fake_quant_layer()
    x = inputs = keras.Input(head.inputs[0].shape[1:], name="features")
    dense = []
    for layer in head.layers[1:]:
        if isinstance(layer, keras.layers.Dense):
            layer = QuantAwareDense(layer)
            dense.append(layer)
        else:  # fixed: Dropout, FeatureScaling, PowerNormalization
            layer = type(layer).from_config(layer.get_config())
        x = layer(x)
    return keras.Model(inputs, x, name="head"), dense


def train_head(
    backbone_core,
    head,
    features_train: np.ndarray,
    y_train: np.ndarray,
    features_val: np.ndarray,
    y_val: np.ndarray,
    *,
    epochs: int = EPOCHS,
    seed: int = 0,
):
    """Trains the quantization-aware head; returns a plain head holding the best weights.

    ``features_*`` are the int8 backbone's (dequantized) outputs; ``y_*`` integer labels.
    """
    import keras

    keras.utils.set_random_seed(seed)
    qat, dense = quant_aware_head(head)
    for start in range(0, len(features_train), 256):  # the output ranges, before training
        qat(features_train[start : start + 256], training=False)
    for layer in dense:
        layer.calibrating = False
    n = head.outputs[0].shape[-1]
    qat.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=["accuracy"],
    )
    onehot = np.eye(n, dtype="float32")[y_train]
    best, best_weights, history = (-1.0, None, [])
    for epoch in range(epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(onehot))
        qat.fit(features_train[order], onehot[order], batch_size=BATCH, epochs=1, verbose=0)
        accuracy = float((qat.predict(features_val, verbose=0).argmax(1) == y_val).mean())
        history.append(accuracy)
        if accuracy > best:
            best, best_weights, best_epoch = (
                accuracy,
                [layer.get_weights() for layer in dense],
                epoch,
            )
    plain = keras.models.clone_model(head)
    plain.set_weights(head.get_weights())
    for layer, weights in zip(dense, best_weights, strict=True):
        plain.get_layer(layer.name).set_weights(weights[:2])  # kernel, bias (not the ranges)
    inputs = fresh_inputs(backbone_core)
    core = keras.Model(inputs, plain(backbone_core(inputs)), name="classifier_core_qat")
    return QatResult(core=core, val_accuracy=history, best_epoch=best_epoch)
