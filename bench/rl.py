"""Benchmark: graft's DQN on Gymnasium's classic control tasks against the RL Baselines3 Zoo.

    .venv/bin/python bench/rl.py                       # 3 tasks x 3 seeds (about 30 min)
    .venv/bin/python bench/rl.py --envs CartPole-v1 --seeds 0

Each (task, seed) is one ``graft rl train`` run with the task's defaults (the Zoo's tuned DQN
settings and step budget) in its own process, one at a time so that the wall times and steps
per second are this machine's. The score is the kept policy's mean return over 100 greedy
episodes on episode seeds the run never evaluated on (``metrics.json``). Results are kept in
``bench/.work/rl/`` (an interrupted bench continues); figures go into bench/RESULTS.md
between the ``rl`` markers.

Baselines: the published scores of the RL Baselines3 Zoo (hyperparams/dqn.yml and
benchmark.md; SB3's DQN with the same settings): CartPole-v1 500 after 50,000 steps;
Acrobot-v1 -76.6 after 100,000; MountainCar-v0 -100.8 after 120,000. With ``--baseline``,
Stable-Baselines3's DQN itself (PyTorch, in its own virtualenv ``bench/.work/sb3venv``, made
here on first use; torch is not a graft dependency) runs each (task, seed) too, with the
Zoo's settings and graft's evaluation protocol (``bench/_sb3_dqn.py``), one run at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_flags, machine, run_child, write_section  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "rl"
SEEDS = (0, 1, 2)
# task: (Zoo's published mean return, its budget, the target, how the target reads)
TASKS = {
    "CartPole-v1": (500.0, 50_000, 475.0, "at least 475 for every seed"),
    "Acrobot-v1": (-76.6, 100_000, -80.0, "-80 or better, mean of the seeds"),
    "MountainCar-v0": (-100.8, 120_000, -110.0, "-110 or better, mean of the seeds"),
}


def child(env_id: str, seed: int) -> dict:
    import graft.rl

    out = WORK / env_id / f"seed_{seed}"
    start = time.perf_counter()
    run = graft.rl.train(env_id, out=out, seed=seed, overwrite=True)
    seconds = time.perf_counter() - start
    m = run.metrics
    shutil.rmtree(out / "tensorboard", ignore_errors=True)
    return {
        "mean_return": m["mean_return"],
        "std_return": m["std_return"],
        "steps": m["steps"],
        "episodes": m["episodes"],
        "kept_step": m["kept_step"],
        "kept_eval_mean_return": m["kept_eval_mean_return"],
        "final_eval_mean_return": m["final_eval_mean_return"],
        "train_seconds": m["seconds"],
        "steps_per_second": m["steps_per_second"],
        "wall_seconds": seconds,
    }


SB3_VENV = WORK / "sb3venv"
SB3_PACKAGES = ("torch==2.13.0", "stable-baselines3==2.9.2", "gymnasium[classic-control]==1.4.0")


def sb3_python() -> Path:
    """The baseline's interpreter, its virtualenv made on first use."""
    python = SB3_VENV / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SB3_PACKAGES], check=True)
    return python


def run_sb3(env_id: str, seed: int) -> dict:
    out = subprocess.run(
        [str(sb3_python()), str(HERE / "_sb3_dqn.py"), env_id, str(seed)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"SB3 {env_id} {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(env_id: str, seed: int, baseline: bool = False) -> dict:
    name = f"sb3_seed_{seed}.json" if baseline else f"seed_{seed}.json"
    path = WORK / env_id / name
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    if baseline:
        result = run_sb3(env_id, seed)
    else:
        result = run_child(__file__, env_id, str(seed), env={"GRAFT_HOME": str(WORK / "home")})
    path.write_text(json.dumps(result, indent=2))
    print(env_id, seed, "sb3" if baseline else "graft", json.dumps(result), flush=True)
    return result


def table() -> str:
    import numpy as np

    lines = [
        "| task | steps | seed | mean return (100 episodes) | sd | kept step | wall time (s) "
        "| steps/s |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    verdicts = []
    for env_id, (zoo, budget, target, rule) in TASKS.items():
        results = {
            int(p.stem.split("_")[-1]): json.loads(p.read_text())
            for p in sorted((WORK / env_id).glob("seed_*.json"))
        }
        baseline = {
            int(p.stem.split("_")[-1]): json.loads(p.read_text())
            for p in sorted((WORK / env_id).glob("sb3_seed_*.json"))
        }
        if not results:
            continue
        for seed, r in sorted(results.items()):
            lines.append(
                f"| {env_id} | {r['steps']:,} | {seed} | {r['mean_return']:.1f} | "
                f"{r['std_return']:.1f} | {r['kept_step']:,} | {r['wall_seconds']:.0f} | "
                f"{r['steps_per_second']:.0f} |"
            )
        means = [r["mean_return"] for r in results.values()]
        mean = float(np.mean(means))
        ok = min(means) >= target if env_id == "CartPole-v1" else mean >= target
        lines.append(
            f"| **{env_id}, mean of {len(means)} seeds** | {budget:,} | | **{mean:.1f}** | "
            f"{float(np.std(means)):.1f} (across seeds) | | "
            f"{np.mean([r['wall_seconds'] for r in results.values()]):.0f} | "
            f"{np.mean([r['steps_per_second'] for r in results.values()]):.0f} |"
        )
        if baseline:
            for seed, r in sorted(baseline.items()):
                lines.append(
                    f"| {env_id}, SB3 baseline | {r['steps']:,} | {seed} | {r['mean_return']:.1f} "
                    f"| {r['std_return']:.1f} | {r['kept_step']:,} | {r['seconds']:.0f} | "
                    f"{r['steps_per_second']:.0f} |"
                )
            b_means = [r["mean_return"] for r in baseline.values()]
            b_speed = np.mean([r["steps_per_second"] for r in baseline.values()])
            g_speed = np.mean([r["steps_per_second"] for r in results.values()])
            lines.append(
                f"| **{env_id}, SB3 baseline, mean of {len(b_means)} seeds** | {budget:,} | | "
                f"**{np.mean(b_means):.1f}** | {float(np.std(b_means)):.1f} (across seeds) | | "
                f"{np.mean([r['seconds'] for r in baseline.values()]):.0f} | {b_speed:.0f} |"
            )
            verdicts.append(
                f"- {env_id}, same run: graft {mean:.1f} vs Stable-Baselines3 "
                f"{np.mean(b_means):.1f} (its final policies: "
                f"{np.mean([r['final_policy_mean_return'] for r in baseline.values()]):.1f}); "
                f"graft trains at {g_speed / b_speed:.1f}x SB3's steps per second."
            )
        verdicts.append(
            f"- {env_id}: {mean:.1f} (seeds: {', '.join(f'{v:.1f}' for v in means)}); the Zoo "
            f"reports {zoo} after {budget:,} steps; target {rule}: "
            f"**{'met' if ok else 'not met'}**."
        )
    return "\n".join(lines + [""] + verdicts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", default=",".join(TASKS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument(
        "--baseline", action="store_true", help="also run Stable-Baselines3's DQN (torch)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    for env_id in [e for e in args.envs.split(",") if e]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            measure(env_id, seed)
            if args.baseline:
                measure(env_id, seed, baseline=True)
    section = (
        f"## Reinforcement learning (`bench/rl.py`, {time.strftime('%Y-%m-%d')})\n\n"
        f"Machine: {machine(('tensorflow', 'keras', 'gymnasium'))}.\n"
        f"CPU flags: {cpu_flags()}.\n\n"
        "`graft rl train ENV --seed S` with its defaults (the RL Baselines3 Zoo's tuned DQN "
        "settings and step budget, plus Double DQN), one run at a time. Score: the kept "
        "policy (best periodic 10-episode evaluation) on 100 greedy episodes with other "
        "seeds. Wall time: the whole `graft.rl.train` call (periodic evaluations, the final 100 episodes, report and module included).\n\n"
        + table()
        + "\n"
    )
    write_section("rl", section)
    print(section)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
