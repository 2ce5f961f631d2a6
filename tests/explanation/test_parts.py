"""The pieces of graft explain that need no trained model: the word split, the deletion check
on a model whose evidence is known, and the pages."""

from __future__ import annotations

import numpy as np
import pytest

from graft.explanation import deletion
from graft.explanation.shapley import WordTokenizer, word_spans


def test_word_split_keeps_every_character():
    text = "  Don't stop, 2 go!"
    spans = word_spans(text)
    assert [text[a:b] for a, b in spans] == ["Don't", "stop", "2", "go"]
    tokens = WordTokenizer()(text)
    assert tokens["offset_mapping"][0] == (0, 7)  # leading spaces join the first word
    assert WordTokenizer()("")["input_ids"] == []
    assert WordTokenizer()(" ")["input_ids"] == [" "]  # SHAP's mask-token lookup needs one
    assert deletion._without(text, spans, {1, 3}) == "Don't , 2 !"  # punctuation stays


def _corner_model(images: np.ndarray) -> np.ndarray:
    """Class 1's evidence is the brightness of the top-left quarter only."""
    h, w = images.shape[1:3]
    p = images[:, : h // 2, : w // 2].mean(axis=(1, 2, 3))
    return np.stack([1 - p, p], axis=1)


def test_deletion_check_tells_a_faithful_map_from_a_wrong_one():
    rng = np.random.default_rng(0)
    images = rng.uniform(0.0, 1.0, (12, 32, 32, 3)).astype(np.float32)
    images[:, :16, :16] = 1.0  # bright evidence where the model looks
    faithful = np.zeros((12, 32, 32), np.float32)
    faithful[:, :16, :16] = 1.0
    wrong = 1.0 - faithful
    good = deletion.check_images(_corner_model, images, faithful, [1] * 12, cells=8)
    bad = deletion.check_images(_corner_model, images, wrong, [1] * 12, cells=8)
    assert good.examples == 12 and good.wins == 12 and good.score_wins == 12
    assert good.top_drop > good.random_drop > 0
    assert bad.wins == 0 and bad.top_drop == pytest.approx(0.0, abs=1e-6)
    assert "12 inputs" in good.describe()
    assert good.to_dict()["win_rate"] == 1.0


def test_text_deletion_check_hides_the_top_words():
    def model(texts):
        p = np.array([0.9 if "storm" in t else 0.1 for t in texts])
        return np.stack([1 - p, p], axis=1)

    texts = ["a b storm c d", "storm e f g h i j"]
    spans = [word_spans(t) for t in texts]
    right = [np.array([0, 0, 1.0, 0, 0]), np.array([1.0, 0, 0, 0, 0, 0, 0])]
    check = deletion.check_texts(model, texts, spans, right, [1, 1])
    assert check.wins == 2 and check.top_drop == pytest.approx(0.8)
    assert check.random_drop < 0.8


def test_coloured_text_escapes_and_colours():
    from graft.explanation.render import coloured_text

    text = "<b>storm</b> & sun"
    html = coloured_text(text, word_spans(text), [0.0, 0.5, 0.0, -0.25])
    assert "&lt;" in html and "<b>" not in html and "&amp;" in html
    assert 'title="+0.5000">storm<' in html and "rgba(220,38,38,0.85)" in html
    assert 'rgba(37,99,235,0.42)" title="-0.2500">sun<' in html
