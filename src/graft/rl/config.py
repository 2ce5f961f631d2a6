"""DQN settings: one frozen dataclass, with the RL Baselines3 Zoo's tuned values per task."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from graft.errors import InvalidArgumentError, received


@dataclass(frozen=True)
class DQNConfig:
    """Every setting of a DQN run (written to ``config.json``).

    Steps count environment transitions summed over the ``n_envs`` environments.

    Args:
        steps: transitions to train for.
        seed: seeds the network's initial weights, the episodes and the minibatches.
        hidden: units of the MLP's hidden layers (vector observations); images get a small
            CNN (three convolutions) before them.
        learning_rate: Adam's step size at the start.
        lr_schedule: ``constant``, or ``linear`` (decays to ``lr_final_fraction`` of the
            start by the last step).
        batch_size: transitions per gradient step.
        buffer_size: replay buffer capacity.
        learning_starts: transitions collected before the first gradient step.
        gamma: discount factor.
        train_freq: a training round every this many transitions ...
        gradient_steps: ... of this many gradient steps (-1: as many as transitions since the
            last round).
        target_update_interval: transitions between target-network updates ...
        tau: ... which copy the online network (1.0, hard) or move the target by ``tau``
            towards it (Polyak averaging, soft).
        double_dqn: the target's value of the online network's argmax (Double DQN).
        max_grad_norm: gradients are clipped to this global norm.
        exploration_fraction: epsilon falls linearly from ``exploration_initial_eps`` to
            ``exploration_final_eps`` over this share of ``steps``.
        n_envs: environments stepped together (one batched forward pass picks their actions).
        eval_every: transitions between greedy evaluations (the best evaluated policy is kept).
        eval_episodes: episodes per periodic evaluation.
        final_eval_episodes: episodes of the final evaluation (``metrics.json``).
        checkpoint_every: transitions between checkpoints (``--resume`` continues from the last).
    """

    env_id: str
    steps: int = 100_000
    seed: int = 0
    hidden: tuple[int, ...] = (256, 256)
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    lr_final_fraction: float = 0.1
    batch_size: int = 64
    buffer_size: int = 100_000
    learning_starts: int = 1000
    gamma: float = 0.99
    train_freq: int = 4
    gradient_steps: int = -1
    target_update_interval: int = 1000
    tau: float = 1.0
    double_dqn: bool = True
    max_grad_norm: float = 10.0
    exploration_fraction: float = 0.1
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.05
    n_envs: int = 1
    eval_every: int = 5000
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    checkpoint_every: int = 10_000

    def __post_init__(self) -> None:
        checks = {
            "steps": self.steps >= 1,
            "batch_size": self.batch_size >= 1,
            "buffer_size": self.buffer_size >= self.batch_size,
            "learning_starts": self.learning_starts >= 0,
            "gamma": 0.0 <= self.gamma <= 1.0,
            "train_freq": self.train_freq >= 1,
            "gradient_steps": self.gradient_steps == -1 or self.gradient_steps >= 1,
            "target_update_interval": self.target_update_interval >= 1,
            "tau": 0.0 < self.tau <= 1.0,
            "learning_rate": self.learning_rate > 0,
            "lr_schedule": self.lr_schedule in ("constant", "linear"),
            "exploration_fraction": 0.0 < self.exploration_fraction <= 1.0,
            "exploration_final_eps": 0.0 <= self.exploration_final_eps <= 1.0,
            "n_envs": self.n_envs >= 1,
            "eval_every": self.eval_every >= 1,
            "eval_episodes": self.eval_episodes >= 1,
            "final_eval_episodes": self.final_eval_episodes >= 1,
            "checkpoint_every": self.checkpoint_every >= 1,
            "hidden": len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            name = bad[0]
            raise InvalidArgumentError(
                f"Invalid DQN setting {name!r}: {_RULES[name]}. "
                f"{received(**{name: getattr(self, name)})}"
            )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["hidden"] = list(self.hidden)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> DQNConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)

    def epsilon(self, step: int) -> float:
        """The exploration rate after ``step`` transitions (linear, then constant)."""
        span = self.exploration_fraction * self.steps
        progress = min(1.0, step / span) if span > 0 else 1.0
        start, end = self.exploration_initial_eps, self.exploration_final_eps
        return start + progress * (end - start)


_RULES = {
    "steps": "at least 1",
    "batch_size": "at least 1",
    "buffer_size": "at least batch_size",
    "learning_starts": "0 or more",
    "gamma": "between 0 and 1",
    "train_freq": "at least 1",
    "gradient_steps": "-1 (as many as transitions) or at least 1",
    "target_update_interval": "at least 1",
    "tau": "in (0, 1]; 1 is a hard copy",
    "learning_rate": "positive",
    "lr_schedule": "constant or linear",
    "exploration_fraction": "in (0, 1]",
    "exploration_final_eps": "between 0 and 1",
    "n_envs": "at least 1",
    "eval_every": "at least 1",
    "eval_episodes": "at least 1",
    "final_eval_episodes": "at least 1",
    "checkpoint_every": "at least 1",
    "hidden": "one or more positive layer sizes",
}

# The RL Baselines3 Zoo's tuned DQN settings (hyperparams/dqn.yml) for the classic tasks.
ZOO = {
    "CartPole-v1": dict(
        steps=50_000,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        hidden=(256, 256),
    ),
    "Acrobot-v1": dict(
        steps=100_000,
        learning_rate=6.3e-4,
        batch_size=128,
        buffer_size=50_000,
        learning_starts=0,
        gamma=0.99,
        target_update_interval=250,
        train_freq=4,
        gradient_steps=-1,
        exploration_fraction=0.12,
        exploration_final_eps=0.1,
        hidden=(256, 256),
    ),
    "MountainCar-v0": dict(
        steps=120_000,
        learning_rate=4e-3,
        batch_size=128,
        buffer_size=10_000,
        learning_starts=1000,
        gamma=0.98,
        target_update_interval=600,
        train_freq=16,
        gradient_steps=8,
        exploration_fraction=0.2,
        exploration_final_eps=0.07,
        hidden=(256, 256),
    ),
}


def config_for(env_id: str, **overrides) -> DQNConfig:
    """The Zoo's settings for ``env_id`` (general defaults for other tasks), then
    ``overrides`` (None values are ignored).

    Example:
        >>> config_for("CartPole-v1", steps=2000).train_freq
        256
    """
    values = {**ZOO.get(env_id, {}), **{k: v for k, v in overrides.items() if v is not None}}
    steps = values.get("steps", DQNConfig.steps)
    values.setdefault("eval_every", max(1, min(5000, steps // 10)))
    values.setdefault("checkpoint_every", max(1, min(10_000, steps // 5)))
    if "hidden" in values:
        values["hidden"] = tuple(values["hidden"])
    return DQNConfig(env_id=env_id, **values)
