"""Using a trained policy module: evaluation episodes and a GIF of one episode."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, received
from graft.rl.train import FINAL_SEEDS


def _q_function(model):
    import tensorflow as tf

    call = tf.function(lambda obs: model(obs, training=False)["q_values"])

    def q_values(obs: np.ndarray) -> np.ndarray:
        return call(tf.constant(obs, tf.float32)).numpy()

    return q_values


def evaluate(module: str | os.PathLike, *, episodes: int = 100, seed: int = FINAL_SEEDS) -> dict:
    """Runs the policy greedily for ``episodes`` episodes (seeds ``seed``, ``seed + 1``, ...).

    Args:
        module: a policy module, its run folder, or any module handle.
        episodes: how many episodes.
        seed: the first episode's seed.

    Returns:
        ``{"env_id", "episodes", "mean_return", "std_return", "min_return", "max_return",
        "returns"}``.

    Example:
        >>> graft.rl.evaluate("runs/cartpole", episodes=10)["mean_return"]  # doctest: +SKIP
        500.0
    """
    from graft.rl.policy import load_policy
    from graft.rl.train import evaluate_policy

    if not isinstance(episodes, int) or episodes < 1:
        raise InvalidArgumentError(
            f"episodes is a positive number of episodes. {received(episodes=episodes)}"
        )
    model, manifest, _ = load_policy(module)
    env_id = manifest.inputs.environment
    returns = evaluate_policy(_q_function(model), env_id, episodes, seed)
    return {
        "env_id": env_id,
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "min_return": float(np.min(returns)),
        "max_return": float(np.max(returns)),
        "returns": returns,
    }


def play(
    module: str | os.PathLike,
    gif: str | os.PathLike,
    *,
    seed: int = FINAL_SEEDS,
    max_steps: int | None = None,
    fps: int = 30,
    scale: float = 0.5,
) -> dict:
    """Plays one greedy episode and writes it as an animated GIF.

    Args:
        module: a policy module or its run folder.
        gif: the file to write (replaced atomically).
        seed: the episode's seed.
        max_steps: stop after this many steps (default: the environment's time limit).
        fps: frames per second of the GIF.
        scale: frame size relative to the environment's rendering.

    Returns:
        ``{"return", "steps", "frames", "path"}``.
    """
    from PIL import Image

    from graft._atomic import atomic_path
    from graft.rl import envs
    from graft.rl.policy import load_policy

    if fps < 1 or not 0 < scale <= 1:
        raise InvalidArgumentError(
            f"fps is at least 1 and scale in (0, 1]. {received(fps=fps, scale=scale)}"
        )
    gif = Path(gif)
    if gif.suffix.lower() != ".gif":
        raise InvalidArgumentError(f"The output is a .gif file. {received(gif=str(gif))}")
    model, manifest, _ = load_policy(module)
    q_values = _q_function(model)
    env = envs.make(manifest.inputs.environment, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    total, steps, done = 0.0, 0, False
    while not done and (max_steps is None or steps < max_steps):
        action = int(np.argmax(q_values(np.asarray(obs, np.float32)[None])[0]))
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        steps += 1
        done = terminated or truncated
        frames.append(env.render())
    env.close()
    images = []
    for frame in frames:
        image = Image.fromarray(np.asarray(frame, np.uint8))
        if scale != 1:
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            )
        images.append(image.convert("P", palette=Image.ADAPTIVE, colors=64))
    with atomic_path(gif, ".gif") as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
        )
    return {"return": total, "steps": steps, "frames": len(images), "path": str(gif)}
