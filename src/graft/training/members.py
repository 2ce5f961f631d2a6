"""The members of an ensemble: which backbones, how their features are computed, and each one's
branch of the saved model.

Image members share one decoding: the saved module decodes every image once, at the largest
member input size, and a member with a smaller input resizes inside the model (graft's
``ResizeImage`` layer, bilinear). Its training features are computed through exactly that
(decode at the shared size -> resize -> backbone), so served predictions match training.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from graft.errors import InvalidArgumentError, received
from graft.training.features import FeatureExtractor
from graft.training.run import FEATURE_TASKS
from graft.training.tfidf import TFIDF


@dataclass(frozen=True)
class Member:
    """One member as resolved.

    Attributes:
        name: as given (a zoo name, a module handle, or ``"tfidf"``).
        kind: ``"image"`` or ``"text"``.
        module_dir: the backbone module (``None`` for ``tfidf``).
        size: an image backbone's input ``(height, width)``.
        max_length: a text backbone's sequence length, if it has one.
        license: the backbone's license.
        sha256: the backbone's model.keras sha256 (empty for ``tfidf``).
    """

    name: str
    kind: str
    module_dir: Path | None = None
    size: tuple[int, int] | None = None
    max_length: int | None = None
    license: str = ""
    sha256: str = ""

    @property
    def layer_name(self) -> str:
        """The name as a Keras layer name (the last part of a path or handle)."""
        short = self.name.rstrip("/").rsplit("/", 1)[-1]
        return re.sub(r"[^A-Za-z0-9_]+", "_", short).strip("_") or "member"


def check_names(names: Sequence[str]) -> list[str]:
    """Checks there are at least two members and none is repeated (before any data is read).

    Raises:
        InvalidArgumentError: fewer than two members, or a repeated one.
    """
    names = [str(n) for n in names]
    if len(names) < 2:
        raise InvalidArgumentError(
            "An ensemble needs at least two members (--model A --model B); for one backbone "
            f"use graft train. {received(models=names)}"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidArgumentError(
            f"Each member can appear once; these are repeated: {repeated}. {received(models=names)}"
        )
    return names


def resolve_members(names: Sequence[str], kind: str) -> list[Member]:
    """Resolves member handles and checks they fit ``kind`` data.

    Raises:
        InvalidArgumentError: fewer than two members, a repeated one, or a member that does
            not take ``kind`` input or is not a feature-vector / text-embedding backbone.
        ModelNotFoundError: an unknown member (the message lists the accepted forms).
    """
    from graft.handles import resolve
    from graft.module.io import verify

    names = check_names(names)
    members = []
    for name in names:
        if name == TFIDF:
            if kind != "text":
                raise InvalidArgumentError(
                    f"The {TFIDF!r} member reads texts, but the data is {kind}. "
                    f"{received(model=name, data_kind=kind)}"
                )
            members.append(Member(name=name, kind="text", license="none (fitted on your data)"))
            continue
        module_dir = resolve(name)
        manifest = verify(module_dir)
        if manifest.task not in FEATURE_TASKS:
            raise InvalidArgumentError(
                f"{name} is a {manifest.task} model; ensemble members are backbones whose task "
                f"is image-feature-vector or text-embedding, or {TFIDF!r} for texts. "
                f"{received(model=name)}"
            )
        if FEATURE_TASKS[manifest.task] != kind:
            raise InvalidArgumentError(
                f"{name} takes {FEATURE_TASKS[manifest.task]} input but the data is {kind}. "
                f"{received(model=name, data_kind=kind)}"
            )
        members.append(
            Member(
                name=name,
                kind=kind,
                module_dir=module_dir,
                size=tuple(manifest.inputs.size) if manifest.inputs.size else None,
                max_length=manifest.inputs.max_length,
                license=manifest.license,
                sha256=manifest.files["model.keras"].sha256,
            )
        )
    return members


def decode_size(members: Sequence[Member]) -> tuple[int, int] | None:
    """The size every image is decoded to once: the largest member input (by area)."""
    sizes = [m.size for m in members if m.size]
    return max(sizes, key=lambda s: (s[0] * s[1], s)) if sizes else None


class ResizedFeatureExtractor(FeatureExtractor):
    """Features of an image backbone fed images decoded at ``decoded`` and resized to its own
    input size by a ``ResizeImage`` layer: what the saved ensemble computes. Cached beside the
    backbone's plain features under a key of its own.

    Example:
        >>> fx = ResizedFeatureExtractor(lite0_dir, (240, 240))  # doctest: +SKIP
        >>> fx(["a.png"]).shape  # doctest: +SKIP
        (1, 1280)
    """

    def __init__(self, module_dir: str | Path, decoded: tuple[int, int], runtime: str = "auto"):
        super().__init__(module_dir, runtime=runtime)
        self.decoded = tuple(decoded)
        size = tuple(self.manifest.inputs.size)
        step = f"decode {self.decoded} -> ResizeImage {size} bilinear"
        key = f"{self.preprocess_key}|{step}"
        self.preprocess_key = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.cache_dir = self.cache_dir.parent / self.preprocess_key
        self.engine_key = hashlib.sha256(f"{self.model_sha}|{step}".encode()).hexdigest()
        self._resized = None

    def keras_model(self):
        """Decoded images at ``decoded`` -> resized -> backbone features."""
        if self._resized is None:
            import keras

            from graft.models.layers import ResizeImage

            backbone = super().keras_model()
            inputs = keras.Input((*self.decoded, 3), name="image")
            x = ResizeImage(self.manifest.inputs.size, name="resize")(inputs)
            self._resized = keras.Model(inputs, backbone(x), name=f"{backbone.name}_resized")
        return self._resized

    def _prepare(self, raw: list):
        from graft.data.images import decode_batch

        return decode_batch(raw, self.decoded)


def extractor_for(member: Member, decoded, texts: Sequence[str], runtime: str = "auto"):
    """The feature extractor of a member: ``FeatureExtractor`` (cached on disk),
    ``ResizedFeatureExtractor`` for images decoded at another size, or ``TfidfFeatures``
    adapted on ``texts``."""
    if member.name == TFIDF:
        from graft.training.tfidf import TfidfFeatures

        return TfidfFeatures(texts)
    if member.kind == "image" and tuple(member.size) != tuple(decoded):
        return ResizedFeatureExtractor(member.module_dir, decoded, runtime=runtime)
    return FeatureExtractor(member.module_dir, runtime=runtime)


def member_branch(member: Member, index: int, feature_model, head, output: str):
    """``input -> features -> head``: one member's part of the saved ensemble, named
    ``member<i>_<name>``.

    Args:
        feature_model: what the extractor ran (``extractor.keras_model()``).
        head: the member's fitted ``LinearHead``.
        output: ``"log_softmax"`` (log-probabilities) or ``"softmax"``.
    """
    import keras

    from graft.training.head import head_model, uncompiled

    layer = uncompiled(head_model(head, activation=output))
    if member.kind == "image":
        inputs = keras.Input(tuple(feature_model.input.shape[1:]), name="image")
    else:
        inputs = keras.Input(shape=(), dtype="string", name="text")
    return keras.Model(
        inputs, layer(feature_model(inputs)), name=f"member{index}_{member.layer_name}"
    )
