"""``graft rl``: train a DQN agent on a Gymnasium environment, evaluate it, watch it play."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from graft.cli._common import console, handle_errors

app = typer.Typer(
    help="Reinforcement learning: DQN with a target network on Gymnasium environments, as a "
    "run folder (checkpoints, --resume, report.html) whose policy is a graft module.\n\n"
    "Example: graft rl train CartPole-v1 --out runs/cartpole",
    no_args_is_help=True,
)


def _hidden(text: str | None) -> tuple[int, ...] | None:
    from graft.errors import InvalidArgumentError, received

    if text is None:
        return None
    try:
        units = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        units = ()
    if not units or min(units) < 1:
        raise InvalidArgumentError(
            f"--hidden lists layer sizes separated by commas, such as 256,256. "
            f"{received(hidden=text)}"
        )
    return units


@app.command("train")
@handle_errors
def train(
    env_id: Annotated[str, typer.Argument(help="Gymnasium id, such as CartPole-v1.")],
    out: Annotated[Path, typer.Option(help="Run folder.")],
    steps: Annotated[
        int | None, typer.Option(help="Environment steps (default: the Zoo's budget).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seeds weights, episodes and minibatches.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run folder.")] = False,
    n_envs: Annotated[int | None, typer.Option(help="Environments stepped together.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Adam's step size.")] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="constant or linear.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Transitions per step.")] = None,
    buffer_size: Annotated[int | None, typer.Option(help="Replay capacity.")] = None,
    learning_starts: Annotated[int | None, typer.Option(help="Steps before learning.")] = None,
    gamma: Annotated[float | None, typer.Option(help="Discount factor.")] = None,
    train_freq: Annotated[int | None, typer.Option(help="Steps between rounds.")] = None,
    gradient_steps: Annotated[
        int | None, typer.Option(help="Gradient steps per round (-1: train_freq).")
    ] = None,
    target_update_interval: Annotated[
        int | None, typer.Option(help="Steps between target updates.")
    ] = None,
    tau: Annotated[float | None, typer.Option(help="1: hard copy; <1: Polyak averaging.")] = None,
    double_dqn: Annotated[
        bool | None, typer.Option("--double-dqn/--no-double-dqn", help="Double DQN targets.")
    ] = None,
    hidden: Annotated[str | None, typer.Option(help="MLP layer sizes, e.g. 256,256.")] = None,
    exploration_fraction: Annotated[
        float | None, typer.Option(help="Share of steps over which epsilon falls.")
    ] = None,
    exploration_final_eps: Annotated[float | None, typer.Option(help="Final epsilon.")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Steps between evaluations.")] = None,
    eval_episodes: Annotated[int | None, typer.Option(help="Episodes per evaluation.")] = None,
    final_eval_episodes: Annotated[
        int | None, typer.Option(help="Episodes of the final evaluation.")
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Steps between checkpoints.")] = None,
) -> None:
    """Train a DQN agent; the RL Baselines3 Zoo's tuned settings are the defaults for
    CartPole-v1, Acrobot-v1 and MountainCar-v0. Writes config.json, checkpoint/,
    tensorboard/, metrics.json, report.html and module/ (the kept policy).

    Example: graft rl train CartPole-v1 --out runs/cartpole --seed 1
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from graft import rl

    settings = dict(
        n_envs=n_envs,
        learning_rate=learning_rate,
        lr_schedule=lr_schedule,
        batch_size=batch_size,
        buffer_size=buffer_size,
        learning_starts=learning_starts,
        gamma=gamma,
        train_freq=train_freq,
        gradient_steps=gradient_steps,
        target_update_interval=target_update_interval,
        tau=tau,
        double_dqn=double_dqn,
        hidden=_hidden(hidden),
        exploration_fraction=exploration_fraction,
        exploration_final_eps=exploration_final_eps,
        eval_every=eval_every,
        eval_episodes=eval_episodes,
        final_eval_episodes=final_eval_episodes,
        checkpoint_every=checkpoint_every,
    )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} steps {task.fields[status]}"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"DQN {env_id}", total=steps or 1, status="")

        def on_progress(step: int, total: int, info: dict) -> None:
            status = bar.tasks[0].fields.get("status", "")
            if "eval" in info:
                status = f"evaluation {info['eval']:.1f}"
            elif "return" in info:
                last = status.split(" | ")[0] if "evaluation" in status else ""
                status = " | ".join(filter(None, [last, f"last 100 episodes {info['return']:.1f}"]))
            bar.update(task, completed=step, total=total, status=status)

        run = rl.train(
            env_id,
            out=out,
            steps=steps,
            seed=seed,
            resume=resume,
            overwrite=overwrite,
            on_progress=on_progress,
            **settings,
        )
    m = run.metrics
    console.print(
        f"{m['env_id']}: mean return {m['mean_return']:.1f} +- {m['std_return']:.1f} over "
        f"{m['eval_episodes']} greedy episodes, after {m['steps']:,} steps "
        f"({m['seconds']:.0f} s, {m['steps_per_second']:.0f} steps/s)."
    )
    console.print(
        f"Kept the policy of step {m['kept_step']:,} ({m['kept']}; best periodic evaluation "
        f"{m['kept_eval_mean_return']:.1f}, last {m['final_eval_mean_return']:.1f})."
    )
    console.print(f"Saved: {run.module}  Report: {run.report}")


@app.command("evaluate")
@handle_errors
def evaluate(
    run: Annotated[str, typer.Argument(help="Run folder or policy module.")],
    episodes: Annotated[int, typer.Option(help="Greedy episodes to run.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the first episode.")] = 2_000_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run a trained policy greedily and report its mean return.

    Example: graft rl evaluate runs/cartpole --episodes 100 --json
    """
    from graft import rl

    result = rl.evaluate(run, episodes=episodes, seed=seed)
    if as_json:
        typer.echo(json.dumps(result))
        return
    console.print(
        f"{result['env_id']}: mean return {result['mean_return']:.1f} +- "
        f"{result['std_return']:.1f} over {result['episodes']} episodes (min "
        f"{result['min_return']:.1f}, max {result['max_return']:.1f})."
    )


@app.command("play")
@handle_errors
def play(
    run: Annotated[str, typer.Argument(help="Run folder or policy module.")],
    gif: Annotated[Path, typer.Option(help="Animated GIF to write.")],
    seed: Annotated[int, typer.Option(help="The episode's seed.")] = 2_000_000,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    fps: Annotated[int, typer.Option(help="Frames per second.")] = 30,
) -> None:
    """Play one greedy episode and save it as an animated GIF.

    Example: graft rl play runs/cartpole --gif cartpole.gif
    """
    from graft import rl

    result = rl.play(run, gif, seed=seed, max_steps=max_steps, fps=fps)
    console.print(
        f"Return {result['return']:.1f} in {result['steps']} steps; {result['frames']} frames "
        f"written to {result['path']}."
    )
