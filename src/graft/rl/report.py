"""``report.html`` of a DQN run: return curve, epsilon and loss curves, evaluation table."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from graft.rl.config import DQNConfig
from graft.rl.envs import EnvInfo


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def moving_average(values, window: int = 100) -> np.ndarray:
    """Mean of the last ``window`` values at each point (fewer at the start)."""
    values = np.asarray(values, float)
    if not len(values):
        return values
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(1, len(values) + 1)
    start = np.maximum(0, index - window)
    return (cumulative[index] - cumulative[start]) / (index - start)


def plots(config: DQNConfig, history: dict) -> tuple[str, str]:
    """Two base64 PNGs: returns (per episode, moving average, evaluations) and training curves."""
    from graft.evaluation.plots import _pyplot

    plt = _pyplot()
    episodes = np.asarray(history["episodes"], float).reshape(-1, 3)
    evaluations = np.asarray(history["evaluations"], float).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(10, 4))
    if len(episodes):
        ax.plot(episodes[:, 0], episodes[:, 1], ".", ms=3, alpha=0.35, label="episode return")
        ax.plot(episodes[:, 0], moving_average(episodes[:, 1]), lw=2, label="mean of last 100")
    if len(evaluations):
        ax.errorbar(
            evaluations[:, 0],
            evaluations[:, 1],
            yerr=evaluations[:, 2],
            fmt="o-",
            ms=4,
            capsize=2,
            label=f"greedy evaluation ({config.eval_episodes} episodes)",
        )
    ax.set_xlabel("environment step")
    ax.set_ylabel("return")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    returns_png = _png(fig)
    plt.close(fig)

    losses = np.asarray(history["losses"], float).reshape(-1, 4)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    steps = np.linspace(0, config.steps, 200)
    axes[0].plot(steps, [config.epsilon(int(s)) for s in steps])
    axes[0].set_title("epsilon")
    if len(losses):
        axes[1].plot(losses[:, 0], moving_average(losses[:, 1], 50))
        axes[2].plot(losses[:, 0], moving_average(losses[:, 2], 50))
    axes[1].set_title("Huber loss (moving average)")
    axes[1].set_yscale("log" if len(losses) and (losses[:, 1] > 0).all() else "linear")
    axes[2].set_title("mean Q of actions taken")
    for ax in axes:
        ax.set_xlabel("environment step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    training_png = _png(fig)
    plt.close(fig)
    return returns_png, training_png


def write_rl_report(
    directory: Path, config: DQNConfig, info: EnvInfo, history: dict, metrics: dict
) -> Path:
    """Renders ``directory/report.html`` (plots inlined), atomically."""
    from graft.evaluation.report import _environment, _write_text

    returns_png, training_png = plots(config, history)
    html = (
        _environment()
        .get_template("rl_report.html.j2")
        .render(
            title=f"DQN on {config.env_id}: {Path(directory).name}",
            metrics=metrics,
            config=config,
            config_items=sorted(config.to_dict().items()),
            info=info,
            evaluations=history["evaluations"],
            returns_png=returns_png,
            training_png=training_png,
        )
    )
    path = Path(directory) / "report.html"
    _write_text(path, html)
    return path
