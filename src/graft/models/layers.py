"""graft's own Keras layers: registered under the ``graft>`` package so saved modules load them
by name (and only them) with ``safe_mode=True``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="graft")
class MaskedMeanPooling(keras.layers.Layer):
    """Averages token vectors over the positions the padding mask keeps.

    This is sentence-transformers' mean pooling: ``sum(h * m) / max(sum(m), 1e-9)``.

    Example:
        >>> import numpy as np
        >>> h = np.ones((1, 3, 2), "float32"); m = np.array([[True, True, False]])
        >>> np.asarray(MaskedMeanPooling()(h, m)).tolist()
        [[1.0, 1.0]]
    """

    def call(self, sequence, padding_mask):
        mask = ops.expand_dims(ops.cast(padding_mask, sequence.dtype), -1)
        total = ops.sum(sequence * mask, axis=1)
        count = ops.maximum(ops.sum(mask, axis=1), 1e-9)
        return total / count

    def compute_output_shape(self, sequence_shape, padding_mask_shape=None):
        return (sequence_shape[0], sequence_shape[-1])


CUSTOM_LAYERS = {"graft>MaskedMeanPooling": MaskedMeanPooling}


@keras.saving.register_keras_serializable(package="graft")
class BertTextPreprocessor(keras.layers.Layer):
    """Raw strings to BERT inputs (``token_ids``, ``padding_mask``, ``segment_ids``).

    Unlike KerasHub's preprocessor, the vocabulary lives in the layer config, so the layer
    works as soon as it is constructed, which a saved functional model needs to rebuild its
    graph. Tokenisation follows Hugging Face's ``BertNormalizer``: lowercasing strips accents.

    Args:
        vocabulary: the WordPiece vocabulary, one token per entry.
        sequence_length: inputs are truncated or padded to this many tokens.
        lowercase: lowercase (and strip accents from) the text first.

    Example:
        >>> p = BertTextPreprocessor(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hi"], 6)
        >>> np.asarray(p(["Hi"])["token_ids"]).tolist()  # doctest: +SKIP
        [[2, 4, 3, 0, 0, 0]]
    """

    def __init__(
        self,
        vocabulary: list[str],
        sequence_length: int = 256,
        lowercase: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        import keras_hub

        self.vocabulary = list(vocabulary)
        self.sequence_length = int(sequence_length)
        self.lowercase = bool(lowercase)
        tokenizer = keras_hub.models.BertTokenizer(
            vocabulary=self.vocabulary, lowercase=self.lowercase, strip_accents=self.lowercase
        )
        self.preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
            tokenizer, sequence_length=self.sequence_length, name="bert_preprocessor"
        )

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        return self.preprocessor(inputs)

    def compute_output_spec(self, inputs):
        shape = (inputs.shape[0], self.sequence_length)
        return {
            "token_ids": keras.KerasTensor(shape, dtype="int32"),
            "padding_mask": keras.KerasTensor(shape, dtype="bool"),
            "segment_ids": keras.KerasTensor(shape, dtype="int32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update(
            vocabulary=self.vocabulary,
            sequence_length=self.sequence_length,
            lowercase=self.lowercase,
        )
        return config


CUSTOM_LAYERS["graft>BertTextPreprocessor"] = BertTextPreprocessor


@keras.saving.register_keras_serializable(package="graft")
class ImageNormalization(keras.layers.Layer):
    """``y = x[..., order] * scale + offset`` per channel, for backbones whose expected input
    cannot be written as one ``Rescaling`` (ResNet's BGR mean subtraction).

    Args:
        scale: one factor per channel (or one for all).
        offset: one offset per channel (or one for all).
        reverse_channels: RGB to BGR before scaling.

    Example:
        >>> n = ImageNormalization(scale=[255.0] * 3, offset=[-1.0, -2.0, -3.0],
        ...                        reverse_channels=True)
        >>> np.asarray(n(np.array([[[[0.0, 0.5, 1.0]]]], "float32"))).tolist()
        [[[[254.0, 125.5, -3.0]]]]
    """

    def __init__(self, scale, offset, reverse_channels: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(v) for v in np.ravel(scale)]
        self.offset = [float(v) for v in np.ravel(offset)]
        self.reverse_channels = bool(reverse_channels)

    def call(self, inputs):
        if self.reverse_channels:
            inputs = ops.flip(inputs, axis=-1)
        scale = ops.convert_to_tensor(self.scale, dtype=inputs.dtype)
        offset = ops.convert_to_tensor(self.offset, dtype=inputs.dtype)
        return inputs * scale + offset

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(scale=self.scale, offset=self.offset, reverse_channels=self.reverse_channels)
        return config


CUSTOM_LAYERS["graft>ImageNormalization"] = ImageNormalization


@keras.saving.register_keras_serializable(package="graft")
class DecodeImage(keras.layers.Layer):
    """Encoded image files (a ``(batch,)`` string tensor) to float32 RGB in [0, 1].

    Uses the same TensorFlow ops as graft's training pipeline (``graft.data.images``), so a
    saved classifier takes raw JPEG/PNG/GIF/BMP bytes and sees what training saw.

    Args:
        size: ``(height, width)`` to resize to (bilinear, antialiased).
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(v) for v in size)

    def build(self, input_shape):
        self.built = True

    def call(self, inputs):
        import tensorflow as tf

        from graft.data.images import decode_resize

        return tf.map_fn(
            lambda data: decode_resize(data, self.size),
            inputs,
            fn_output_signature=tf.TensorSpec([*self.size, 3], tf.float32),
        )

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs.shape[0], *self.size, 3), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size))
        return config


CUSTOM_LAYERS["graft>DecodeImage"] = DecodeImage


@keras.saving.register_keras_serializable(package="graft")
class PowerNormalization(keras.layers.Layer):
    """Signed square root, then L2 normalisation of each feature vector.

    ``y = x / sqrt(|x| + eps)`` (that is ``sign(x) * sqrt(|x|)``), then ``y / ||y||``: the
    power normalisation that makes linear classifiers on pooled CNN features better (fewer
    dominant activations). graft's convex head puts it in front of its ``Dense`` layer when
    cross-validation prefers it. Written with ``rsqrt`` so int8 TFLite kernels exist for it.

    Example:
        >>> np.round(np.asarray(PowerNormalization()(np.array([[4.0, 0.0, 9.0]], "float32"))), 4)
        array([[0.5547, 0.    , 0.8321]], dtype=float32)
    """

    def __init__(self, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def call(self, inputs):
        y = inputs * ops.rsqrt(ops.abs(inputs) + self.epsilon)
        return y * ops.rsqrt(ops.sum(y * y, axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(epsilon=self.epsilon)
        return config


CUSTOM_LAYERS["graft>PowerNormalization"] = PowerNormalization


@keras.saving.register_keras_serializable(package="graft")
class FeatureScaling(keras.layers.Layer):
    """``y = (x - mean) / scale`` per feature, with fixed constants (no trainable weights).

    The convex head's centring and scaling: kept as a layer rather than folded into the Dense
    kernel, so the kernel stays well scaled for int8 quantization.

    Args:
        mean: one value per feature.
        scale: one positive value per feature.

    Example:
        >>> s = FeatureScaling(mean=[1.0, 2.0], scale=[2.0, 4.0])
        >>> np.asarray(s(np.array([[3.0, 2.0]], "float32"))).tolist()
        [[1.0, 0.0]]
    """

    def __init__(self, mean, scale, **kwargs):
        super().__init__(**kwargs)
        self.mean = [float(v) for v in np.ravel(mean)]
        self.scale = [float(v) for v in np.ravel(scale)]

    def call(self, inputs):
        mean = ops.convert_to_tensor(self.mean, dtype=inputs.dtype)
        inverse = ops.convert_to_tensor([1.0 / v for v in self.scale], dtype=inputs.dtype)
        return (inputs - mean) * inverse

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(mean=self.mean, scale=self.scale)
        return config


CUSTOM_LAYERS["graft>FeatureScaling"] = FeatureScaling


@keras.saving.register_keras_serializable(package="graft")
class ResizeImage(keras.layers.Layer):
    """Bilinear resize of float images to ``size`` (no antialiasing; TFLite's
    ``RESIZE_BILINEAR``), for an ensemble member whose input is smaller than the shared
    decoding size.

    Not ``keras.layers.Resizing``: its ``call`` defaults to ``training=True``, and when a model
    is called without ``training`` Keras passes that default on to the layers after it, so a
    backbone's BatchNormalization would normalise with batch statistics.

    Args:
        size: ``(height, width)``.

    Example:
        >>> r = ResizeImage((2, 2))
        >>> np.asarray(r(np.ones((1, 4, 4, 3), "float32"))).shape
        (1, 2, 2, 3)
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(v) for v in size)

    def call(self, inputs):
        return ops.image.resize(inputs, self.size, interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(size=list(self.size))
        return config


CUSTOM_LAYERS["graft>ResizeImage"] = ResizeImage


@keras.saving.register_keras_serializable(package="graft")
class GreedyAction(keras.layers.Layer):
    """The index of the largest value on the last axis, as int32: a Q-network's greedy action.

    Example:
        >>> np.asarray(GreedyAction()(np.array([[0.1, 0.7, 0.2]], "float32"))).tolist()
        [1]
    """

    def call(self, inputs):
        import tensorflow as tf

        # tf.argmax, not keras.ops.argmax: Keras adds a -0.0 check (BitwiseAnd) that TFLite
        # has no builtin for.
        return tf.math.argmax(inputs, axis=-1, output_type=tf.int32)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs.shape[:-1], dtype="int32")


CUSTOM_LAYERS["graft>GreedyAction"] = GreedyAction
