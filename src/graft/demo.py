"""``make demo``: real pretrained models, fully offline, on data that ships with scikit-learn.

1. The zoo (``graft models list``).
2. EfficientNet-Lite0 (ImageNet, converted from the original checkpoint) classifies the two
   photos scikit-learn ships.
3. all-MiniLM-L6-v2 embeds sentences and ranks them against a query.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    import numpy as np
    from PIL import Image
    from rich.console import Console
    from rich.table import Table
    from sklearn.datasets import load_sample_images

    import graft
    from graft.cli.main import app

    console = Console()
    console.rule("[bold]1. The zoo")
    try:
        app(["models", "list"], standalone_mode=False)
    except SystemExit:
        pass

    console.rule("[bold]2. graft.load('efficientnet_lite0.imagenet_classifier') on real photos")
    start = time.perf_counter()
    classifier = graft.load("efficientnet_lite0.imagenet_classifier")
    console.print(
        f"loaded in {time.perf_counter() - start:.1f}s from "
        f"{graft.models.materialize('efficientnet_lite0.imagenet_classifier')}"
    )
    labels = classifier.graft_manifest.labels
    photos = load_sample_images()
    size = classifier.graft_manifest.inputs.size
    batch = np.stack(
        [np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR)) for img in photos.images]
    ).astype("float32")
    probs = classifier.predict(batch / 255.0, verbose=0)
    table = Table("photo", "top-3 ImageNet classes")
    for name, row in zip(photos.filenames, probs, strict=True):
        top = np.argsort(-row)[:3]
        table.add_row(os.path.basename(name), ", ".join(f"{labels[i]} ({row[i]:.3f})" for i in top))
    console.print(table)

    console.rule("[bold]3. graft.load('minilm_l6.sentence'): semantic search")
    import tensorflow as tf

    encoder = graft.load("minilm_l6.sentence")
    query = "How did the company's sales do?"
    documents = [
        "Quarterly revenue grew by twelve percent.",
        "A cat sat on the warm windowsill.",
        "The new phone has a larger battery.",
        "Profits fell sharply in the last fiscal year.",
    ]
    vectors = encoder.predict(tf.constant([query, *documents]), verbose=0)
    scores = vectors[1:] @ vectors[0]
    table = Table("cosine", f"documents ranked for: {query!r}")
    for i in np.argsort(-scores):
        table.add_row(f"{scores[i]:.3f}", documents[i])
    console.print(table)
    console.print(
        "[green]Done.[/] Next: `graft models info efficientnet_lite0.imagenet` for provenance."
    )


if __name__ == "__main__":
    main()
