"""Experience replay: a numpy ring buffer of transitions, saved and restored whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graft._atomic import atomic_path


class ReplayBuffer:
    """The last ``capacity`` transitions ``(obs, action, reward, next_obs, terminated)``.

    ``terminated`` is true only when the episode really ended; an episode cut by a time limit
    still bootstraps from ``next_obs``.

    Args:
        capacity: how many transitions are kept; the oldest are overwritten first.
        observation_shape: the shape of one observation.
        observation_dtype: stored as given (uint8 images stay uint8).

    Example:
        >>> buffer = ReplayBuffer(3, (2,))
        >>> for i in range(4):
        ...     buffer.add(np.full((1, 2), i), [i % 2], [1.0], np.full((1, 2), i + 1), [False])
        >>> len(buffer), sorted(buffer.obs[:, 0].tolist())
        (3, [1.0, 2.0, 3.0])
    """

    FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")

    def __init__(
        self, capacity: int, observation_shape: tuple[int, ...], observation_dtype="float32"
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1. Received: capacity={capacity}")
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, *observation_shape), observation_dtype)
        self.next_obs = np.zeros((capacity, *observation_shape), observation_dtype)
        self.actions = np.zeros(capacity, np.int32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.position = 0  # where the next transition goes
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Adds a batch of transitions (one per environment)."""
        obs = np.asarray(obs)
        for i in range(len(obs)):
            p = self.position
            self.obs[p] = obs[i]
            self.next_obs[p] = np.asarray(next_obs)[i]
            self.actions[p] = int(np.asarray(actions)[i])
            self.rewards[p] = float(np.asarray(rewards)[i])
            self.terminated[p] = float(bool(np.asarray(terminated)[i]))
            self.position = (p + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, batches: int = 1) -> dict:
        """``batches`` minibatches drawn uniformly with replacement, stacked on a new first axis
        (``(batches, batch_size, ...)``)."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer. Received: size=0")
        index = rng.integers(0, self.size, size=(batches, batch_size))
        return {name: getattr(self, name)[index] for name in self.FIELDS}

    def save(self, path: str | Path) -> None:
        """Writes the filled part and the write position to one ``.npz`` file, atomically."""
        with atomic_path(path, ".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    position=np.int64(self.position),
                    capacity=np.int64(self.capacity),
                    **{name: getattr(self, name)[: self.size] for name in self.FIELDS},
                )

    def load(self, path: str | Path) -> None:
        """Restores what ``save`` wrote (plain arrays; nothing is unpickled)."""
        with np.load(path, allow_pickle=False) as data:
            if int(data["capacity"]) != self.capacity:
                raise ValueError(
                    f"the saved replay buffer holds {int(data['capacity'])} transitions, this "
                    f"one {self.capacity}. Received: path={str(path)!r}"
                )
            size = len(data["actions"])
            for name in self.FIELDS:
                getattr(self, name)[:size] = data[name]
            self.size = size
            self.position = int(data["position"])
