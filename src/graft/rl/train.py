"""``graft.rl.train``: a DQN run folder that resumes exactly after a kill.

A run folder holds ``config.json``, ``checkpoint/`` (networks, optimizer, replay buffer, random
state, each environment's episode seed and actions, counters, curves), ``tensorboard/``,
``metrics.json``, ``report.html`` and ``module/`` (the kept policy).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft._atomic import replace_dir
from graft.errors import InvalidArgumentError, ModuleExistsError, received
from graft.rl import envs
from graft.rl.config import DQNConfig, config_for

CHECKPOINT = "checkpoint"
EVAL_SEEDS = 1_000_000  # periodic evaluations: seeds 1e6 + k (the kept policy is chosen on them)
FINAL_SEEDS = 2_000_000  # the final evaluation: other seeds, so the choice does not flatter it
OBSERVATION_SAMPLE = 256


@dataclass(frozen=True)
class RLRun:
    """A finished DQN run."""

    directory: Path
    config: DQNConfig
    metrics: dict

    @property
    def module(self) -> Path:
        return self.directory / "module"

    @property
    def report(self) -> Path:
        return self.directory / "report.html"


def _crossed(before: int, after: int, every: int) -> bool:
    return before // every != after // every


def episode_seed(run_seed: int, index: int) -> int:
    """The seed of the run's ``index``-th training episode."""
    return (run_seed * 1_000_003 + index) % (2**31 - 1)


def evaluate_policy(
    q_values: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    episodes: int,
    seed_base: int,
    env=None,
) -> list[float]:
    """Returns of greedy episodes, each reset with seed ``seed_base + k``."""
    env = env if env is not None else envs.make(env_id)
    returns = []
    for k in range(episodes):
        obs, _ = env.reset(seed=seed_base + k)
        total, done = 0.0, False
        while not done:
            action = int(np.argmax(q_values(np.asarray(obs, np.float32)[None])[0]))
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


class _Progress:
    """Training state that is not in the networks or the buffer (``state.json``)."""

    def __init__(self) -> None:
        self.step = 0
        self.episodes_started = 0
        self.episodes: list[list[float]] = []  # [end step, return, length]
        self.losses: list[list[float]] = []  # [step, loss, mean Q, learning rate]
        self.evaluations: list[list[float]] = []  # [step, mean return, sd]
        self.best = {"step": -1, "mean_return": -np.inf}
        self.seconds = 0.0

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "episodes_started": self.episodes_started,
            "episodes": self.episodes,
            "losses": self.losses,
            "evaluations": self.evaluations,
            "best": self.best,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict) -> _Progress:
        p = cls()
        for key, value in data.items():
            setattr(p, key, value)
        return p


def train(
    env_id: str,
    *,
    out: str | os.PathLike,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    overwrite: bool = False,
    on_progress: Callable[[int, int, dict], None] | None = None,
    **settings,
) -> RLRun:
    """Trains a DQN agent on a Gymnasium environment into a run folder.

    The RL Baselines3 Zoo's tuned settings are the defaults for CartPole-v1, Acrobot-v1 and
    MountainCar-v0; any ``DQNConfig`` field can be overridden by keyword. The policy with the
    best periodic greedy evaluation is kept (ties: the later one) and evaluated again on other
    episode seeds for ``metrics.json``.

    Args:
        env_id: a Gymnasium id with discrete actions, such as ``CartPole-v1``.
        out: the run folder.
        steps: environment transitions (default: the Zoo's budget, or 100,000).
        seed: seeds weights, episodes and minibatches; the same seed gives the same run.
        resume: continue the run in ``out`` from its last checkpoint (its settings are kept).
        overwrite: replace an existing run folder.
        on_progress: called as ``(step, steps, info)`` after each episode or evaluation.
        **settings: other ``DQNConfig`` fields (``learning_rate=...``, ``tau=0.005``, ...).

    Returns:
        The ``RLRun``.

    Raises:
        InvalidArgumentError: unknown environment, continuous actions, bad settings, or
            ``resume`` without a checkpoint.
        ModuleExistsError: ``out`` holds a run and neither ``resume`` nor ``overwrite`` is set.

    Example:
        >>> run = graft.rl.train("CartPole-v1", out="runs/cartpole", seed=1)  # doctest: +SKIP
        >>> run.metrics["mean_return"]  # doctest: +SKIP
        500.0
    """
    import tensorflow as tf

    from graft.rl.agent import DQNAgent
    from graft.rl.replay import ReplayBuffer
    from graft.training.loop import write_json

    out = Path(out)
    config_path = out / "config.json"
    if resume:
        if _checkpoint_folder(out) is None:
            finished = (
                " (it has finished: metrics.json is there)"
                if (out / "metrics.json").is_file()
                else ""
            )
            raise InvalidArgumentError(
                f"{out} has no checkpoint to resume from{finished}; start the run without "
                f"--resume, or with --overwrite. {received(out=str(out))}"
            )
        config = DQNConfig.from_dict(json.loads(config_path.read_text())["config"])
    else:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise ModuleExistsError(
                f"{out} already holds a run; pass --resume to continue it or --overwrite "
                f"to start again. {received(out=str(out))}"
            )
        config = config_for(env_id, steps=steps, seed=seed, **settings)
    env_list = [envs.make(config.env_id) for _ in range(config.n_envs)]
    info = envs.describe(env_list[0])  # the settings and the environment are checked ...
    if not resume:  # ... before anything in out is replaced
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True, exist_ok=True)
        write_json(config_path, {"config": config.to_dict(), "environment": info.__dict__})

    agent = DQNAgent(info, config)
    buffer = ReplayBuffer(config.buffer_size, info.observation_shape, info.observation_dtype)
    rng = np.random.default_rng(config.seed)
    episodes = [envs.Episode(env) for env in env_list]
    best_weights = agent.online.get_weights()
    eval_env = envs.make(config.env_id)
    if resume:
        progress, best_weights = _load_checkpoint(out, agent, buffer, rng, episodes)
    else:
        progress = _Progress()
        for ep in episodes:
            ep.reset(episode_seed(config.seed, progress.episodes_started))
            progress.episodes_started += 1

    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    started = time.perf_counter() - progress.seconds
    n = config.n_envs
    log_every = max(1, config.steps // 1000)
    next_log = 0
    last_loss = None
    with writer.as_default():
        while progress.step < config.steps:
            before = progress.step
            epsilon = config.epsilon(before)
            obs = np.stack([ep.obs for ep in episodes])
            actions = agent.act(obs, epsilon, rng)
            next_obs = np.empty_like(obs)
            rewards = np.zeros(n, np.float32)
            terminated = np.zeros(n, bool)
            for i, ep in enumerate(episodes):
                o2, r, term, trunc = ep.step(actions[i])
                next_obs[i], rewards[i], terminated[i] = o2, r, term
                if term or trunc:
                    end = before + i + 1
                    progress.episodes.append([end, ep.ret, ep.length])
                    tf.summary.scalar("episode/return", ep.ret, step=end)
                    tf.summary.scalar("episode/length", ep.length, step=end)
                    ep.reset(episode_seed(config.seed, progress.episodes_started))
                    progress.episodes_started += 1
                    if on_progress:
                        on_progress(end, config.steps, {"return": ep_return(progress)})
            buffer.add(obs, actions, rewards, next_obs, terminated)
            progress.step = after = before + n

            if after > config.learning_starts and _crossed(before, after, config.train_freq):
                g = config.gradient_steps if config.gradient_steps > 0 else config.train_freq
                loss, q = agent.train(buffer.sample(config.batch_size, rng, batches=g))
                lr = agent.learning_rate
                progress.losses.append([after, loss, q, lr])
                last_loss = loss
                if after >= next_log:  # about 1,000 points per curve
                    next_log = after + log_every
                    tf.summary.scalar("train/loss", loss, step=after)
                    tf.summary.scalar("train/q_mean", q, step=after)
                    tf.summary.scalar("train/learning_rate", lr, step=after)
            if _crossed(before, after, config.target_update_interval):
                agent.update_target()
            if _crossed(before, after, log_every):
                tf.summary.scalar("train/epsilon", epsilon, step=after)
            if _crossed(before, after, config.eval_every) or after >= config.steps:
                returns = evaluate_policy(
                    agent.q_values, config.env_id, config.eval_episodes, EVAL_SEEDS, eval_env
                )
                mean, sd = float(np.mean(returns)), float(np.std(returns))
                progress.evaluations.append([after, mean, sd])
                tf.summary.scalar("eval/mean_return", mean, step=after)
                if mean >= progress.best["mean_return"]:
                    progress.best = {"step": after, "mean_return": mean}
                    best_weights = agent.online.get_weights()
                if on_progress:
                    on_progress(after, config.steps, {"eval": mean, "loss": last_loss})
            if _crossed(before, after, config.checkpoint_every) and after < config.steps:
                progress.seconds = time.perf_counter() - started
                _save_checkpoint(out, agent, buffer, rng, episodes, progress, best_weights)
    writer.flush()
    progress.seconds = time.perf_counter() - started
    return _finish(out, config, info, agent, buffer, rng, progress, best_weights)


def ep_return(progress: _Progress) -> float:
    """Mean return of the last 100 finished episodes."""
    last = [e[1] for e in progress.episodes[-100:]]
    return float(np.mean(last)) if last else float("nan")


def _save_checkpoint(out, agent, buffer, rng, episodes, progress, best_weights) -> None:
    """Writes ``checkpoint/`` whole: a temporary sibling, then renamed over the old one."""
    from graft.training.loop import write_json

    tmp = out / f".{CHECKPOINT}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        agent.save(tmp / "agent.npz")
        buffer.save(tmp / "replay.npz")
        with open(tmp / "best.npz", "wb") as f:
            np.savez(f, **{f"w_{i:04d}": w for i, w in enumerate(best_weights)})
        with open(tmp / "observations.npz", "wb") as f:
            np.savez(f, **{f"env_{i}": np.asarray(ep.obs) for i, ep in enumerate(episodes)})
        state = {
            **progress.to_dict(),
            "rng": rng.bit_generator.state,
            "envs": [{**ep.state(), "ret": ep.ret} for ep in episodes],
        }
        write_json(tmp / "state.json", state)
        replace_dir(tmp, out / CHECKPOINT)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _checkpoint_folder(out: Path) -> Path | None:
    """``checkpoint/``, or the previous one when a kill came between the two renames that
    replace it."""
    if (out / CHECKPOINT / "state.json").is_file():
        return out / CHECKPOINT
    aside = [p for p in out.glob(f".{CHECKPOINT}.old-*") if (p / "state.json").is_file()]
    return max(aside, key=lambda p: p.stat().st_mtime) if aside else None


def _load_checkpoint(out, agent, buffer, rng, episodes):
    folder = _checkpoint_folder(out)
    state = json.loads((folder / "state.json").read_text())
    agent.load(folder / "agent.npz")
    buffer.load(folder / "replay.npz")
    rng.bit_generator.state = state["rng"]
    with np.load(folder / "observations.npz", allow_pickle=False) as saved:
        for i, (ep, env_state) in enumerate(zip(episodes, state["envs"], strict=True)):
            ep.restore(env_state, saved[f"env_{i}"])
    with np.load(folder / "best.npz", allow_pickle=False) as saved:
        best = [saved[k] for k in sorted(saved.files)]
    progress = _Progress.from_dict({k: state[k] for k in _Progress().to_dict() if k in state})
    return progress, best


def _finish(out, config, info, agent, buffer, rng, progress, best_weights) -> RLRun:
    from graft.rl.policy import save_policy
    from graft.rl.report import write_rl_report
    from graft.training.loop import write_json

    final_eval = progress.evaluations[-1] if progress.evaluations else None
    agent.set_online_weights(best_weights)
    returns = evaluate_policy(
        agent.q_values, config.env_id, config.final_eval_episodes, FINAL_SEEDS
    )
    sample = buffer.sample(OBSERVATION_SAMPLE, np.random.default_rng(config.seed))["obs"][0]
    kept_final = progress.best["step"] == (final_eval[0] if final_eval else -1)
    metrics = {
        "env_id": config.env_id,
        "steps": progress.step,
        "episodes": len(progress.episodes),
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "eval_episodes": len(returns),
        "kept_step": int(progress.best["step"]),
        "kept": "final" if kept_final else "best evaluated",
        "kept_eval_mean_return": float(progress.best["mean_return"]),
        "final_eval_mean_return": float(final_eval[1]) if final_eval else float("nan"),
        "train_last100_mean_return": ep_return(progress),
        "seconds": progress.seconds,
        "steps_per_second": progress.step / max(progress.seconds, 1e-9),
        "returns": returns,
    }
    save_policy(
        agent.online,
        info,
        out / "module",
        name=f"dqn.{config.env_id.lower().replace('-', '_')}",
        observations=sample,
        metrics={"mean_return": metrics["mean_return"], "std_return": metrics["std_return"]},
        description=f"DQN policy for {config.env_id} ({progress.step} steps, seed {config.seed})",
    )
    write_json(out / "metrics.json", metrics)
    write_json(out / "history.json", progress.to_dict())
    write_rl_report(out, config, info, progress.to_dict(), metrics)
    shutil.rmtree(out / CHECKPOINT, ignore_errors=True)  # finished: nothing left to resume
    return RLRun(out, config, metrics)
