"""The replay buffer: what it keeps, how it samples, and its round trip through a file."""

import numpy as np
import pytest

from graft.rl.replay import ReplayBuffer


def _fill(buffer: ReplayBuffer, start: int, count: int) -> None:
    for i in range(start, start + count):
        buffer.add(
            np.full((1, 2), i, np.float32),
            [i % 3],
            [float(i)],
            np.full((1, 2), i + 1, np.float32),
            [i % 5 == 0],
        )


def test_wraps_around_keeping_the_newest_transitions():
    buffer = ReplayBuffer(5, (2,))
    _fill(buffer, 0, 3)
    assert len(buffer) == 3 and buffer.position == 3
    _fill(buffer, 3, 4)  # 7 transitions into 5 slots: 0 and 1 are overwritten
    assert len(buffer) == 5 and buffer.position == 2
    assert sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0]
    # the slots written last hold 5 and 6, where 0 and 1 were
    assert buffer.obs[:2, 0].tolist() == [5.0, 6.0]
    # each slot's fields stay together
    np.testing.assert_array_equal(buffer.next_obs[:, 0], buffer.obs[:, 0] + 1)
    np.testing.assert_array_equal(buffer.actions, buffer.rewards.astype(int) % 3)
    np.testing.assert_array_equal(buffer.terminated, (buffer.rewards.astype(int) % 5 == 0))


def test_samples_only_filled_slots_uniformly_and_stacks_batches():
    buffer = ReplayBuffer(1000, (2,))
    _fill(buffer, 0, 10)
    batch = buffer.sample(64, np.random.default_rng(0), batches=50)
    assert batch["obs"].shape == (50, 64, 2) and batch["actions"].shape == (50, 64)
    values = batch["rewards"].ravel()
    assert set(values.tolist()) == set(range(10))  # never an empty slot (reward 0 of slot 10+)
    counts = np.bincount(values.astype(int), minlength=10)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    np.testing.assert_array_equal(batch["next_obs"], batch["obs"] + 1)
    # the same generator state gives the same minibatches
    again = buffer.sample(64, np.random.default_rng(0), batches=50)
    np.testing.assert_array_equal(again["rewards"], batch["rewards"])


def test_empty_buffer_refuses_to_sample():
    with pytest.raises(ValueError, match="empty replay buffer"):
        ReplayBuffer(4, (2,)).sample(2, np.random.default_rng(0))


def test_save_and_load_round_trip(tmp_path):
    buffer = ReplayBuffer(5, (2,))
    _fill(buffer, 0, 7)
    buffer.save(tmp_path / "replay.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["replay.npz"]  # no temporary file left
    restored = ReplayBuffer(5, (2,))
    restored.load(tmp_path / "replay.npz")
    assert (restored.size, restored.position) == (5, 2)
    for name in ReplayBuffer.FIELDS:
        np.testing.assert_array_equal(getattr(restored, name), getattr(buffer, name))
    with pytest.raises(ValueError, match="holds 5 transitions"):
        ReplayBuffer(6, (2,)).load(tmp_path / "replay.npz")
