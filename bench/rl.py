"""Benchmark: graft's DQN on Gymnasium's classic control tasks against the RL Baselines3 Zoo.

    .venv/bin/python bench/rl.py                       # 3 tasks x 3 seeds (about 30 min)
    .venv/bin/python bench/rl.py --envs CartPole-v1 --seeds 0

Each (task, seed) is one ``graft rl train`` run with the task's defaults (the Zoo's tuned DQN
settings and step budget) in its own process, one at a time so that the wall times and steps
per second are this machine's. The score is the kept policy's mean return over 100 greedy
episodes on episode seeds the run never evaluated on (``metrics.json``). Results are kept in
``bench/.work/rl/`` (an interrupted bench continues); figures go into bench/RESULTS.md
between the ``rl`` markers.

Baselines (published, hyperparams/dqn.yml and benchmark.md of the RL Baselines3 Zoo, SB3's
DQN with the same settings): CartPole-v1 500 after 50,000 steps; Acrobot-v1 -76.6 after
100,000; MountainCar-v0 -100.8 after 120,000.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def measure(env_id: str, seed: int) -> dict:
    path = WORK / env_id / f"seed_{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    result = run_child(__file__, env_id, str(seed), env={"GRAFT_HOME": str(WORK / "home")})
    path.write_text(json.dumps(result, indent=2))
    print(env_id, seed, json.dumps(result), flush=True)
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
            int(p.stem.split("_")[1]): json.loads(p.read_text())
            for p in sorted((WORK / env_id).glob("seed_*.json"))
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
    args = parser.parse_args()
    started = time.perf_counter()
    for env_id in [e for e in args.envs.split(",") if e]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            measure(env_id, seed)
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
