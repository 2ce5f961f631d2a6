"""tf.data pipelines for fine-tuning: parallel decode/resize, augmentation, prefetch."""

from __future__ import annotations

import numpy as np

# What each --augment policy does to training images while fine-tuning. None of "light" and
# "default" flips or rotates: a mirrored 2, a turned 6 or mirrored text is another image. "strong"
# adds a horizontal flip and rotation, for natural photos whose classes survive both.
AUGMENT_POLICIES = {
    "none": "no augmentation (and fine-tuning trains on cached block activations)",
    "light": "brightness and contrast +-10%",
    "default": "brightness and contrast +-10%, shift +-5%, zoom +-10%",
    "strong": "the default plus horizontal flip and rotation +-18 degrees",
}


def check_augment(policy: str) -> str:
    """Returns ``policy`` if it is a known augmentation policy.

    Raises:
        InvalidArgumentError: naming the policies.
    """
    from graft.errors import InvalidArgumentError, received

    if policy not in AUGMENT_POLICIES:
        listed = "; ".join(f"{k}: {v}" for k, v in AUGMENT_POLICIES.items())
        raise InvalidArgumentError(
            f"Unknown augmentation policy. Policies are {listed}. {received(augment=policy)}"
        )
    return policy


def augmenter(seed: int, policy: str = "default"):
    """The Keras layers of an augmentation ``policy`` (applied to training batches only)."""
    import keras

    layers = [
        keras.layers.RandomBrightness(0.1, value_range=(0.0, 1.0), seed=seed + 3),
        keras.layers.RandomContrast(0.1, seed=seed + 4),
    ]
    if policy in ("default", "strong"):
        layers += [
            keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest", seed=seed + 5),
            keras.layers.RandomZoom(0.1, fill_mode="nearest", seed=seed + 2),
        ]
    if policy == "strong":
        layers += [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="nearest", seed=seed + 1),
        ]
    return keras.Sequential(layers, name="augment")


def make_dataset(
    kind: str,
    inputs: list,
    onehot: np.ndarray,
    batch_size: int,
    *,
    size: tuple[int, int] | None = None,
    shuffle_seed: int | None = None,
    augment_seed: int | None = None,
    augment: str = "default",
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
        augment: the augmentation policy (``AUGMENT_POLICIES``).
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
    if kind == "image" and augment_seed is not None and augment != "none":
        layers = augmenter(augment_seed, augment)
        ds = ds.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
