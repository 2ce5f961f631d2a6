"""all-MiniLM-L6-v2: embeddings equal sentence-transformers' (recorded goldens)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA


@pytest.fixture
def encoder(zoo_home):
    import graft

    return graft.load("minilm_l6.sentence")


def embed(model, sentences):
    import tensorflow as tf

    return model.predict(tf.constant(sentences), verbose=0)


def test_matches_sentence_transformers(encoder):
    golden = np.load(DATA / "minilm_l6_golden.npz")
    sentences = [str(s) for s in golden["sentences"]]  # incl. empty, accents, emoji, 300 words
    out = embed(encoder, sentences)
    assert out.shape == (len(sentences), 384)
    np.testing.assert_allclose(out, golden["embeddings"], atol=1e-3, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[0, :5], [0.00971, 0.02829, 0.07901, 0.08067, 0.04338], atol=1e-4)


def test_paraphrase_ranks_above_unrelated(encoder):
    query, paraphrase, unrelated = embed(
        encoder,
        [
            "Quarterly revenue grew by twelve percent.",
            "The company's sales rose 12% this quarter.",
            "A cat sat on the warm windowsill.",
        ],
    )
    assert query @ paraphrase > query @ unrelated + 0.3


def test_groups_are_transformer_layers(encoder):
    names = [g.name for g in encoder.graft_manifest.groups]
    assert names == ["embeddings"] + [f"transformer_layer_{i}" for i in range(6)]
    assert encoder.count_params() == 22_713_216


def test_top_layer_fine_tuning(encoder):
    import graft

    graft.models.set_trainable(encoder, encoder.graft_manifest.groups, top_groups=1)
    paths = {w.path for w in encoder.trainable_weights}
    assert paths and all(p.startswith("transformer_layer_5/") for p in paths)


def test_text_classifier_from_strings(zoo_home):
    import keras
    import tensorflow as tf

    import graft

    model = keras.Sequential(
        [
            keras.Input(shape=(), dtype="string"),
            graft.load("minilm_l6.sentence"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    texts = tf.constant(["great film", "loved it", "terrible film", "hated it"] * 2)
    labels = np.array([1, 1, 0, 0] * 2)
    before = [w.numpy().copy() for w in model.layers[0].weights[:2]]
    model.fit(texts, labels, epochs=1, batch_size=4, verbose=0)
    after = [w.numpy() for w in model.layers[0].weights[:2]]
    assert all(np.array_equal(b, a) for b, a in zip(before, after, strict=True))  # frozen
    assert model.predict(tf.constant(["fine"]), verbose=0).shape == (1, 2)
