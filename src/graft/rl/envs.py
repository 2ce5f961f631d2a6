"""Gymnasium environments for DQN: checked ids, discrete actions, and episodes that can be
replayed exactly (each one starts from its own seed, so its state is the seed plus the actions
taken since)."""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from graft.errors import InvalidArgumentError, MissingDependencyError, received

# Names of the actions of the classic-control tasks (Gymnasium's documentation).
ACTION_NAMES = {
    "CartPole": ("push left", "push right"),
    "Acrobot": ("torque -1", "torque 0", "torque +1"),
    "MountainCar": ("accelerate left", "no acceleration", "accelerate right"),
    "LunarLander": ("nothing", "fire left", "fire main", "fire right"),
}


def gymnasium():
    """Imports Gymnasium, or says how to install it."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renders without a sound card
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        import gymnasium as gym
    except ImportError:
        raise MissingDependencyError(
            "Reinforcement learning needs Gymnasium: pip install 'graft[rl]'. "
            f"{received(module='gymnasium')}"
        ) from None
    return gym


@dataclass(frozen=True)
class EnvInfo:
    """What a DQN agent needs to know about an environment."""

    env_id: str
    observation_shape: tuple[int, ...]
    observation_dtype: str
    n_actions: int
    action_names: tuple[str, ...]
    max_episode_steps: int | None

    @property
    def image(self) -> bool:
        """Observations are images (height, width, channels), not vectors."""
        return len(self.observation_shape) == 3


def _close_ids(env_id: str, known: list[str]) -> list[str]:
    lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(env_id.lower(), list(lower), n=5, cutoff=0.5)
    return [lower[c] for c in close]


def make(env_id: str, render_mode: str | None = None) -> Any:
    """Creates a Gymnasium environment, with a clear error for an unknown id.

    Raises:
        InvalidArgumentError: no environment of that id (naming the close ones).
        MissingDependencyError: Gymnasium, or the environment's own extra, is missing.
    """
    gym = gymnasium()
    if not isinstance(env_id, str) or env_id not in gym.registry:
        known = sorted(gym.registry)
        close = _close_ids(str(env_id), known)
        hint = f"Did you mean {', '.join(close)}? " if close else ""
        raise InvalidArgumentError(
            f"Gymnasium has no environment {env_id!r}. {hint}Classic control tasks: "
            f"CartPole-v1, Acrobot-v1, MountainCar-v0 (all {len(known)} ids: "
            f"gymnasium.pprint_registry()). {received(env_id=env_id)}"
        )
    try:
        return gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as exc:
        raise MissingDependencyError(f"{exc} {received(env_id=env_id)}") from None


def describe(env: Any) -> EnvInfo:
    """The observation and action spaces, checked for DQN.

    Raises:
        InvalidArgumentError: the actions are not ``Discrete(n)`` or the observations are not
            one array (a vector, or an image).
    """
    gym = gymnasium()
    env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
    action_space = env.action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise InvalidArgumentError(
            f"DQN chooses among a fixed set of actions, so it needs a discrete action space "
            f"(Discrete(n)); {env_id} has {action_space}. Pick an environment with discrete "
            f"actions (CartPole-v1, Acrobot-v1, MountainCar-v0), or a discrete version of this "
            f"one (MountainCar-v0 for MountainCarContinuous-v0). "
            f"{received(action_space=str(action_space))}"
        )
    obs_space = env.observation_space
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 3):
        raise InvalidArgumentError(
            f"graft's DQN takes observations that are one vector or one image (a Box of rank "
            f"1 or 3); {env_id} has {obs_space}. {received(observation_space=str(obs_space))}"
        )
    base = env_id.split("-")[0]
    n = int(action_space.n)
    names = ACTION_NAMES.get(base)
    if names is None or len(names) != n:
        names = tuple(str(i) for i in range(n))
    return EnvInfo(
        env_id=env_id,
        observation_shape=tuple(int(d) for d in obs_space.shape),
        observation_dtype=str(np.dtype(obs_space.dtype)),
        n_actions=n,
        action_names=tuple(names),
        max_episode_steps=env.spec.max_episode_steps if env.spec is not None else None,
    )


class Episode:
    """One environment and its current episode, restorable from ``(seed, actions)``.

    Each episode is reset with its own seed; Gymnasium's environments are deterministic given
    the seed and the actions, so a checkpoint stores those instead of the simulator's state.
    """

    def __init__(self, env: Any):
        self.env = env
        self.seed = 0
        self.actions: list[int] = []
        self.ret = 0.0
        self.length = 0
        self.obs: np.ndarray | None = None

    def reset(self, seed: int) -> np.ndarray:
        self.seed = int(seed)
        self.actions = []
        self.ret = 0.0
        self.length = 0
        self.obs, _ = self.env.reset(seed=self.seed)
        return self.obs

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(int(action))
        self.actions.append(int(action))
        self.ret += float(reward)
        self.length += 1
        self.obs = obs
        return obs, float(reward), bool(terminated), bool(truncated)

    def state(self) -> dict:
        return {"seed": self.seed, "actions": list(self.actions)}

    def restore(self, state: dict, expected_obs: np.ndarray | None = None) -> None:
        """Replays the saved episode up to where it was.

        Raises:
            InvalidArgumentError: the environment does not reproduce the saved observation
                (it is not deterministic given its seed), so the run cannot resume exactly.
        """
        self.reset(state["seed"])
        for action in state["actions"]:
            self.step(action)
        if expected_obs is not None and not np.allclose(self.obs, expected_obs, atol=1e-6):
            raise InvalidArgumentError(
                "The environment did not reproduce its saved state from the episode's seed "
                "and actions, so the run cannot resume exactly; start it again without "
                f"--resume. {received(episode_seed=state['seed'], steps=len(state['actions']))}"
            )
