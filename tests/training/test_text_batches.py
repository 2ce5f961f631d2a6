"""Token batches for text fine-tuning: grouped by length, augmented without touching markers."""

from __future__ import annotations

import numpy as np

from graft.training import text_batches

IDS = {"pad": 0, "cls": 101, "sep": 102, "mask": 103}


def _tokens(lengths, width=32):
    ids = np.zeros((len(lengths), width), np.int32)
    mask = np.zeros((len(lengths), width), bool)
    for r, n in enumerate(lengths):
        ids[r, : n + 2] = [101, *range(1000 + r * 50, 1000 + r * 50 + n), 102]
        mask[r, : n + 2] = True
    return {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}


def test_augmentation_keeps_markers_and_padding():
    tokens = _tokens([20, 25, 3, 28])
    rng = np.random.default_rng(0)
    for policy in ("light", "default", "strong"):
        out = text_batches.augment_tokens(tokens, policy, rng, IDS)
        for r in range(4):
            row = out["token_ids"][r][out["padding_mask"][r]]
            assert row[0] == 101 and row[-1] == 102 and (row == 102).sum() == 1
            assert not out["token_ids"][r][~out["padding_mask"][r]].any()  # padding is 0
            assert len(row) <= tokens["padding_mask"][r].sum()
        kept = out["token_ids"][out["padding_mask"]]
        assert (kept == 103).any() == (policy != "light")
    big = _tokens([28] * 200)
    out = text_batches.augment_tokens(big, "light", np.random.default_rng(1), IDS)
    deleted = 1 - out["padding_mask"].sum() / big["padding_mask"].sum()
    assert 0.05 < deleted < 0.15  # about 10% of the pieces (markers excluded)


def test_batches_hold_similar_lengths_and_every_example_once():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 29, 300)
    tokens = _tokens(lengths)
    onehot = np.eye(3, dtype=np.float32)[np.arange(300) % 3]
    seen, widths = [], []
    for x, _ in text_batches.dataset(tokens, onehot, 16, seed=5):
        x = {k: v.numpy() for k, v in x.items()}
        widths.append(x["token_ids"].shape[1])
        seen += [int(v) for v in x["token_ids"][:, 1]]  # each row's first piece names it
        assert x["token_ids"].shape[1] % 16 == 0 and x["padding_mask"][:, -1].sum() < 16
    assert sorted(seen) == sorted(1000 + r * 50 for r in range(300))
    assert min(widths) < max(widths)  # batches were cut to their own longest text
    again = [
        x["token_ids"].numpy()[:, 1].tolist()
        for x, _ in text_batches.dataset(tokens, onehot, 16, seed=5)
    ]
    other = [
        x["token_ids"].numpy()[:, 1].tolist()
        for x, _ in text_batches.dataset(tokens, onehot, 16, seed=6)
    ]
    assert again != other
