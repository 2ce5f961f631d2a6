"""Token batches for fine-tuning text encoders: grouped by length, with token augmentation.

Texts are tokenized once. Each epoch shuffles them, sorts them by length within windows of
a few batches (so a batch holds texts of similar length and is cut to its longest one, yet
the order stays random), and optionally augments the tokens of training batches:

- ``light``: random deletion (10% of the word pieces),
- ``default``: deletion plus masking (10% replaced by ``[MASK]``),
- ``strong``: deletion, masking and swaps of neighbouring pieces (10% each).

``[CLS]``, ``[SEP]`` and padding are never touched.
"""

from __future__ import annotations

import numpy as np

WINDOW = 16  # batches sorted by length together
RATE = 0.1


def special_ids(preprocessor) -> dict[str, int]:
    """Ids of ``[PAD]``, ``[CLS]``, ``[SEP]`` and ``[MASK]`` in the preprocessor's vocabulary."""
    vocabulary = preprocessor.vocabulary
    index = {token: i for i, token in enumerate(vocabulary)}
    return {k: index.get(f"[{k.upper()}]", -1) for k in ("pad", "cls", "sep", "mask")}


def augment_tokens(tokens: dict, policy: str, rng: np.random.Generator, ids: dict) -> dict:
    """Deletes, masks and swaps word pieces of one batch (arrays ``(batch, length)``)."""
    token_ids = tokens["token_ids"].copy()
    mask = tokens["padding_mask"].astype(bool)
    content = mask & (token_ids != ids["cls"]) & (token_ids != ids["sep"])
    if policy == "strong":  # swap a piece with its right neighbour
        swap = content & (rng.random(token_ids.shape) < RATE)
        swap[:, -1] = False
        swap &= np.roll(content, -1, axis=1)
        rows, cols = np.nonzero(swap)
        token_ids[rows, cols], token_ids[rows, cols + 1] = (
            token_ids[rows, cols + 1],
            token_ids[rows, cols],
        )
    if policy in ("default", "strong") and ids["mask"] >= 0:
        masked = content & (rng.random(token_ids.shape) < RATE)
        token_ids[masked] = ids["mask"]
    keep = ~(content & (rng.random(token_ids.shape) < RATE))  # deletion, every policy
    out_ids = np.full_like(token_ids, ids["pad"])
    out_mask = np.zeros_like(mask)
    for r in range(len(token_ids)):
        row = token_ids[r][keep[r] & mask[r]]
        out_ids[r, : len(row)] = row
        out_mask[r, : len(row)] = True
    return {
        "token_ids": out_ids,
        "padding_mask": out_mask,
        "segment_ids": np.zeros_like(token_ids),
    }


def dataset(
    tokens: dict,
    onehot: np.ndarray,
    batch_size: int,
    *,
    seed: int | None = None,
    augment: str = "none",
    ids: dict | None = None,
):
    """A ``tf.data.Dataset`` of ``(token dict, one-hot)`` batches cut to their longest text.

    Args:
        tokens: the three full-length int32 arrays of every example.
        onehot: ``(n, classes)`` labels.
        batch_size: examples per batch.
        seed: shuffle (and augment) with this seed; ``None`` keeps the order (validation).
        augment: the token augmentation policy (see the module docstring).
        ids: special token ids (``special_ids``), needed to augment.
    """
    import tensorflow as tf

    n = len(onehot)
    lengths = tokens["padding_mask"].sum(axis=1)
    rng = np.random.default_rng(seed) if seed is not None else None
    order = rng.permutation(n) if rng is not None else np.arange(n)
    window = batch_size * WINDOW
    for start in range(0, n, window):  # similar lengths together, random order overall
        chunk = order[start : start + window]
        order[start : start + window] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    if rng is not None:
        rng.shuffle(batches)

    def generate():
        for rows in batches:
            width = min(
                tokens["token_ids"].shape[1], max(16, -(-int(lengths[rows].max()) // 16) * 16)
            )
            batch = {k: v[rows, :width] for k, v in tokens.items()}
            if augment != "none" and rng is not None:
                batch = augment_tokens(batch, augment, rng, ids)
            yield {k: v.astype(np.int32) for k, v in batch.items()}, onehot[rows]

    spec = {k: tf.TensorSpec((None, None), tf.int32) for k in tokens}
    signature = (spec, tf.TensorSpec((None, onehot.shape[1]), tf.float32))
    return tf.data.Dataset.from_generator(generate, output_signature=signature)
