"""``graft.rl``: DQN agents on Gymnasium environments, as graft runs and modules.

Example:
    >>> run = graft.rl.train("CartPole-v1", out="runs/cartpole")  # doctest: +SKIP
    >>> graft.rl.evaluate("runs/cartpole", episodes=100)["mean_return"]  # doctest: +SKIP
    500.0
"""

from __future__ import annotations

from graft.rl.config import DQNConfig, config_for
from graft.rl.play import evaluate, play
from graft.rl.train import RLRun, train

__all__ = ["DQNConfig", "RLRun", "config_for", "evaluate", "play", "train"]
