"""The baseline of bench/rl.py: Stable-Baselines3's DQN (PyTorch) with the RL Baselines3 Zoo's
settings, evaluated exactly as graft evaluates its runs. Runs in its own virtualenv (torch is
not a graft dependency); prints one JSON line.

    python bench/_sb3_dqn.py ENV_ID SEED
"""

from __future__ import annotations

import json
import sys
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback

# hyperparams/dqn.yml of the RL Baselines3 Zoo (the same values as graft.rl.config.ZOO)
ZOO = {
    "CartPole-v1": dict(
        n_timesteps=50_000, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
        learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
        gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
    ),
    "Acrobot-v1": dict(
        n_timesteps=100_000, learning_rate=6.3e-4, batch_size=128, buffer_size=50_000,
        learning_starts=0, gamma=0.99, target_update_interval=250, train_freq=4,
        gradient_steps=-1, exploration_fraction=0.12, exploration_final_eps=0.1,
    ),
    "MountainCar-v0": dict(
        n_timesteps=120_000, learning_rate=4e-3, batch_size=128, buffer_size=10_000,
        learning_starts=1000, gamma=0.98, target_update_interval=600, train_freq=16,
        gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07,
    ),
}  # fmt: skip
EVAL_SEEDS, FINAL_SEEDS = 1_000_000, 2_000_000  # graft.rl.train's


def returns(model, env_id: str, episodes: int, seed_base: int) -> list[float]:
    env = gym.make(env_id)
    out = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed_base + k)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    return out


class KeepBest(BaseCallback):
    """Every ``every`` steps: 10 greedy episodes; the best policy (ties: the later) is kept."""

    def __init__(self, env_id: str, every: int):
        super().__init__()
        self.env_id, self.every = env_id, every
        self.best, self.best_step, self.state = -np.inf, -1, None

    def _evaluate(self) -> None:
        mean = float(np.mean(returns(self.model, self.env_id, 10, EVAL_SEEDS)))
        if mean >= self.best:
            self.best, self.best_step = mean, self.num_timesteps
            self.state = {k: v.clone() for k, v in self.model.policy.state_dict().items()}

    def _on_step(self) -> bool:
        if self.num_timesteps % self.every == 0:
            self._evaluate()
        return True


def main(env_id: str, seed: int) -> dict:
    torch.set_num_threads(2)
    settings = dict(ZOO[env_id])
    steps = settings.pop("n_timesteps")
    model = DQN(
        "MlpPolicy", gym.make(env_id), seed=seed, policy_kwargs=dict(net_arch=[256, 256]),
        **settings,
    )  # fmt: skip
    keep = KeepBest(env_id, max(1, min(5000, steps // 10)))
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=keep)
    seconds = time.perf_counter() - start
    final = returns(model, env_id, 100, FINAL_SEEDS)
    model.policy.load_state_dict(keep.state)
    kept = returns(model, env_id, 100, FINAL_SEEDS)
    return {
        "mean_return": float(np.mean(kept)),
        "std_return": float(np.std(kept)),
        "final_policy_mean_return": float(np.mean(final)),
        "kept_step": keep.best_step,
        "steps": steps,
        "seconds": seconds,
        "steps_per_second": steps / seconds,
        "versions": {
            "stable-baselines3": __import__("stable_baselines3").__version__,
            "torch": torch.__version__,
        },  # fmt: skip
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
