"""The ``tfidf`` ensemble member: word and bigram TF-IDF vectors of texts, computed in Keras.

A ``TextVectorization(output_mode="tf_idf")`` layer is adapted on the training texts; its
vocabulary and IDF weights are saved inside ``model.keras`` (as a Keras asset and a weight), so
the saved ensemble takes raw strings and loads with graft's class allowlist and
``safe_mode=True``. Vectors are computed once per run and kept in memory (adapting is the
expensive part, and it depends on the run's texts).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

TFIDF = "tfidf"
MAX_TOKENS = 20_000
NGRAMS = 2
BATCH = 512


def adapt_tfidf(texts: Sequence[str], max_tokens: int = MAX_TOKENS, ngrams: int = NGRAMS):
    """A ``TextVectorization`` layer (lowercased, punctuation stripped, words and up to
    ``ngrams``-grams, the ``max_tokens`` most frequent) adapted on ``texts``.

    Example:
        >>> layer = adapt_tfidf(["the cat sat", "the dog ran"])  # doctest: +SKIP
        >>> layer.vocabulary_size()  # doctest: +SKIP
        10
    """
    import keras
    import tensorflow as tf

    layer = keras.layers.TextVectorization(
        max_tokens=max_tokens, ngrams=ngrams, output_mode="tf_idf", name="tfidf"
    )
    layer.adapt(tf.constant(list(texts), tf.string), batch_size=BATCH)
    return layer


class TfidfFeatures:
    """The feature-extractor interface of ``FeatureExtractor`` for the ``tfidf`` member.

    Args:
        texts: the texts to adapt the vocabulary and IDF weights on (train + validation).
        max_tokens: vocabulary size at most (the ``[UNK]`` entry included).
        ngrams: longest n-gram.

    Example:
        >>> fx = TfidfFeatures(train_texts)  # doctest: +SKIP
        >>> fx(["a new text"]).shape  # doctest: +SKIP
        (1, 20000)
    """

    kind = "text"
    runtime = "keras"

    def __init__(
        self, texts: Sequence[str], max_tokens: int = MAX_TOKENS, ngrams: int = NGRAMS
    ) -> None:
        start = time.perf_counter()
        self.layer = adapt_tfidf(texts, max_tokens, ngrams)
        self.adapt_seconds = time.perf_counter() - start
        self.output_shape: tuple[int, ...] = (int(self.layer.vocabulary_size()),)
        self._model = None

    def keras_model(self):
        """Strings -> TF-IDF vectors (the layer the saved ensemble holds)."""
        if self._model is None:
            import keras

            inputs = keras.Input(shape=(), dtype="string", name="text")
            self._model = keras.Model(inputs, self.layer(inputs), name="tfidf_features")
        return self._model

    def __call__(
        self, items: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """``(n, vocabulary size)`` float32 TF-IDF vectors."""
        import tensorflow as tf

        out = np.zeros((len(items), *self.output_shape), np.float32)
        for start in range(0, len(items), BATCH):
            chunk = list(items[start : start + BATCH])
            out[start : start + len(chunk)] = np.asarray(self.layer(tf.constant(chunk, tf.string)))
            if progress:
                progress(len(chunk))
        return out
