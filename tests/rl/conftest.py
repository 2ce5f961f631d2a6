"""RL fixtures: one short CartPole run uninterrupted and one killed and resumed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

# A small run: 3,000 steps, checkpoints every 500, the Zoo's CartPole settings otherwise.
SHORT = [
    "--steps", "3000", "--seed", "7", "--hidden", "32,32", "--checkpoint-every", "500",
    "--eval-every", "1000", "--eval-episodes", "2", "--final-eval-episodes", "5",
    "--train-freq", "64", "--gradient-steps", "16", "--learning-starts", "200",
]  # fmt: skip


def _cli(home, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "GRAFT_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "graft.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def _finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """An uninterrupted run and one killed after a checkpoint and resumed, in parallel."""
    root = tmp_path_factory.mktemp("rl")
    home = root / "home"
    whole = _cli(home, "rl", "train", "CartPole-v1", "--out", str(root / "whole"), *SHORT)
    killed = _cli(home, "rl", "train", "CartPole-v1", "--out", str(root / "killed"), *SHORT)
    state = root / "killed" / "checkpoint" / "state.json"
    deadline = time.monotonic() + 300
    while not state.is_file() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert killed.poll() is None, "the run ended before it could be killed"
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 0 < killed_at < 3000 and not (root / "killed" / "metrics.json").exists()
    resumed = _cli(home, "rl", "train", "CartPole-v1", "--out", str(root / "killed"), "--resume")
    return {
        "whole": root / "whole",
        "resumed": root / "killed",
        "killed_at": killed_at,
        "stdout": _finish(whole),
        "resumed_stdout": _finish(resumed),
    }
