"""A tiny sentence encoder with graft's text layout (MiniLM's vocabulary and tokenizer, a
2-layer, 32-wide BERT with seeded random weights): the export and serving paths of a text
module in seconds instead of the minutes the 22M-parameter MiniLM takes to convert.

Importing this module registers ``tiny_bert.test``.
"""

from __future__ import annotations

from graft.module.manifest import InputSpec
from tests._tiny_zoo import register_test_entry

SEQUENCE_LENGTH = 32

SPEC = register_test_entry(
    "tiny_bert.test",
    InputSpec(kind="text", max_length=SEQUENCE_LENGTH),
    32,
    "tests._tiny_bert:build",
    "test entry: MiniLM's WordPiece vocabulary, 2 random BERT layers, mean pool",
)


def build(spec):
    import keras
    import keras_hub

    from graft.models._build import Built
    from graft.models.minilm.model import encoder_groups, model_dir, text_encoder
    from graft.module.manifest import Provenance

    keras.utils.set_random_seed(4321)
    vocabulary = (model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary),
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        intermediate_dim=64,
        max_sequence_length=SEQUENCE_LENGTH,
        name="bert_backbone",
    )
    model = text_encoder(backbone, vocabulary, SEQUENCE_LENGTH, name="tiny_bert")
    return Built(model=model, provenance=Provenance(source="test"), groups=encoder_groups(model))
