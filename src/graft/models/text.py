"""graft's text encoder layout, taken apart: tokenizer and network on token arrays.

A text module is ``strings -> BertTextPreprocessor -> *Backbone -> MaskedMeanPooling ->
[normalisation]``. Split at the tokenizer, the network runs on int32 token arrays of any
length up to the tokenizer's, which is how texts are batched by length (a short text need not
pay attention over 256 padded positions) and how text models are exported without string ops.
"""

from __future__ import annotations

from graft.errors import InvalidArgumentError, received

TEXT_INPUTS = ("token_ids", "padding_mask", "segment_ids")


def split_encoder(encoder):
    """``(preprocessor, features)``: the encoder's ``BertTextPreprocessor`` layer, and a model
    from the three token arrays (``(batch, length)`` int32) to what ``encoder`` outputs.

    Raises:
        InvalidArgumentError: ``encoder`` does not have graft's text layout.

    Example:
        >>> encoder = graft.load("minilm_l6.sentence")  # doctest: +SKIP
        >>> preprocessor, features = split_encoder(encoder)  # doctest: +SKIP
    """
    import keras

    from graft.models.layers import BertTextPreprocessor, MaskedMeanPooling

    inner = getattr(encoder, "layers", [])
    if not (
        any(isinstance(layer, BertTextPreprocessor) for layer in inner)
        and any(isinstance(layer, MaskedMeanPooling) for layer in inner)
    ):
        kinds = [type(layer).__name__ for layer in inner] or [type(encoder).__name__]
        raise InvalidArgumentError(
            "This needs graft's text layout (a sentence encoder with BertTextPreprocessor and "
            f"MaskedMeanPooling). {received(layers=kinds)}"
        )
    preprocessor = next(layer for layer in inner if isinstance(layer, BertTextPreprocessor))
    inputs = {name: keras.Input((None,), dtype="int32", name=name) for name in TEXT_INPUTS}
    x = None
    for layer in inner:
        if isinstance(layer, keras.layers.InputLayer | BertTextPreprocessor):
            continue
        if isinstance(layer, MaskedMeanPooling):
            x = layer(x, inputs["padding_mask"])
        elif type(layer).__name__.endswith("Backbone"):
            x = layer(inputs)["sequence_output"]
        else:
            x = layer(x)
    return preprocessor, keras.Model(inputs, x, name=f"{encoder.name}_features")


class TextEngine:
    """Runs a text encoder on texts batched by length.

    Texts are tokenized, sorted by token count, and each batch is cut to its longest text
    (rounded up to a multiple of 16, so few shapes are traced); the padding mask keeps the
    result equal to the padded model's. On sentence-length texts this is several times faster
    than running every text at the full sequence length.

    Example:
        >>> engine = TextEngine(graft.load("minilm_l6.sentence"))  # doctest: +SKIP
        >>> engine(["a short text", "another one"]).shape  # doctest: +SKIP
        (2, 384)
    """

    def __init__(self, encoder, batch_size: int = 32) -> None:
        import tensorflow as tf

        self.preprocessor, self.features = split_encoder(encoder)
        self.batch_size = batch_size
        signature = {name: tf.TensorSpec((None, None), tf.int32, name) for name in TEXT_INPUTS}
        self._run = tf.function(
            lambda inputs: self.features(inputs, training=False),
            input_signature=[signature],
            reduce_retracing=True,
        )

    def tokenize(self, texts) -> dict:
        """The three int32 token arrays of ``texts`` at the full sequence length."""
        import numpy as np

        out = self.preprocessor(np.asarray(list(texts), dtype=object))
        return {k: np.asarray(v).astype("int32") for k, v in out.items()}

    def __call__(self, texts):
        import numpy as np

        texts = list(texts)
        if not texts:
            return np.zeros((0, self.features.output.shape[-1]), np.float32)
        tokens = self.tokenize(texts)
        lengths = tokens["padding_mask"].sum(axis=1)
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), self.features.output.shape[-1]), np.float32)
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = int(lengths[rows].max())
            width = min(tokens["token_ids"].shape[1], max(16, -(-width // 16) * 16))
            batch = {k: v[rows, :width] for k, v in tokens.items()}
            out[rows] = np.asarray(self._run(batch))
        return out
