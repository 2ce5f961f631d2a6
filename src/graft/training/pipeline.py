"""tf.data pipelines for fine-tuning: parallel decode/resize, augmentation, prefetch."""

from __future__ import annotations

import numpy as np


def augmenter(seed: int):
    """Random flip, rotation, zoom, brightness and contrast (training only)."""
    import keras

    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, seed=seed + 1),
            keras.layers.RandomZoom(0.1, seed=seed + 2),
            keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed + 3),
            keras.layers.RandomContrast(0.1, seed=seed + 4),
        ],
        name="augment",
    )


def make_dataset(
    kind: str,
    inputs: list,
    onehot: np.ndarray,
    batch_size: int,
    *,
    size: tuple[int, int] | None = None,
    shuffle_seed: int | None = None,
    augment_seed: int | None = None,
):
    """Builds a batched, prefetched dataset of (input, one-hot label).

    Args:
        kind: ``"image"`` (``inputs`` are encoded image bytes) or ``"text"``.
        inputs: image bytes or texts.
        onehot: ``(n, classes)`` labels.
        batch_size: batch size.
        size: image size for decoding.
        shuffle_seed: shuffle once with this seed (per epoch, by the caller).
        augment_seed: augment images with this seed; ``None`` for no augmentation.
    """
    import tensorflow as tf

    from graft.data.images import decode_resize

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(inputs), onehot.astype("float32")))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(inputs), seed=shuffle_seed, reshuffle_each_iteration=False)
    if kind == "image":
        ds = ds.map(
            lambda data, y: (decode_resize(data, size), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    ds = ds.batch(batch_size)
    if kind == "image" and augment_seed is not None:
        augment = augmenter(augment_seed)
        ds = ds.map(
            lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.prefetch(tf.data.AUTOTUNE)
