"""Distributed fine-tuning (MultiWorkerMirroredStrategy): real worker processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graft.errors import InvalidArgumentError
from graft.training.distributed import (
    Cluster,
    check_settings,
    cluster_from_env,
    global_steps,
    timeout_seconds,
)
from graft.training.run import TrainConfig

WORKER = Path(__file__).with_name("_mwms_worker.py")
ROOT = Path(__file__).parents[2]


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _tf_config(ports: list[int], index: int) -> str:
    hosts = [f"127.0.0.1:{p}" for p in ports]
    return json.dumps({"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}})


def _env(ports: list[int], index: int, **extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CONFIG=_tf_config(ports, index), **extra)
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", PYTHONPATH=path)
    return env


def _start(args: list[str], workers: int, env_extra=None, cwd=None) -> list[subprocess.Popen]:
    ports = _ports(workers)
    return [
        subprocess.Popen(
            [*args[i]] if isinstance(args[0], list) else args,
            env=_env(ports, i, **(env_extra[i] if env_extra else {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
        )
        for i in range(workers)
    ]


def _wait(procs, timeout: float = 240) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, stdout, stderr))
    return out


# -- the cluster, from TF_CONFIG ------------------------------------------------------------
def test_cluster_from_env_reads_workers_and_chief():
    assert cluster_from_env({}) is None
    assert cluster_from_env({"TF_CONFIG": "  "}) is None
    assert cluster_from_env({"TF_CONFIG": _tf_config([1, 2, 3], 2)}) == Cluster(3, 2, "worker:2")
    chief = {"chief": ["c:1"], "worker": ["w:1", "w:2"]}
    as_chief = json.dumps({"cluster": chief, "task": {"type": "chief", "index": 0}})
    as_worker = json.dumps({"cluster": chief, "task": {"type": "worker", "index": 0}})
    assert cluster_from_env({"TF_CONFIG": as_chief}) == Cluster(3, 0, "chief:0")
    worker = cluster_from_env({"TF_CONFIG": as_worker})
    assert worker == Cluster(3, 1, "worker:0") and not worker.is_chief
    assert worker.shard(list(range(8))) == [1, 4, 7]


@pytest.mark.parametrize(
    "raw, match",
    [
        (
            '{"cluster": {"worker": ["10.0.0.1", "b:1"]}, "task": {"type": "worker", "index": 0}}',
            r"must be host:port .*Received: address='10\.0\.0\.1'",
        ),
        ("{not json", r"TF_CONFIG must be JSON like .*Received: TF_CONFIG='\{not json'"),
        ('{"cluster": {"worker": ["a:1"]}}', r"TF_CONFIG must be JSON"),
        (
            '{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "ps", "index": 0}}',
            r"chief and worker tasks only \(no parameter servers",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            r"index must point into its list",
        ),
    ],
)
def test_bad_tf_config_is_refused(raw, match):
    with pytest.raises(InvalidArgumentError, match=match):
        cluster_from_env({"TF_CONFIG": raw})


def test_settings_the_workers_cannot_run_together_are_refused():
    cluster = Cluster(2, 0, "worker:0")
    with pytest.raises(InvalidArgumentError, match=r"add --fine-tune-blocks N.*fine_tune_blocks=0"):
        check_settings(TrainConfig(), cluster)
    tuned = {"fine_tune_blocks": 1}
    with pytest.raises(InvalidArgumentError, match=r"without folds.*Received: folds=5"):
        check_settings(TrainConfig(folds=5, **tuned), cluster)
    with pytest.raises(InvalidArgumentError, match=r"multiple of 2\. Received: batch_size=33"):
        check_settings(TrainConfig(batch_size=33, **tuned), cluster)
    check_settings(TrainConfig(batch_size=32, **tuned), cluster)  # accepted


def test_steps_and_timeout():
    assert global_steps(70, 16, Cluster(2, 1, "worker:1")) == 5  # shards of 35, batches of 8
    assert global_steps(70, 16, Cluster(1, 0, "worker:0")) == 5
    assert global_steps(9, 4, Cluster(2, 0, "worker:0")) == 3  # worker 1 pads one empty batch
    assert timeout_seconds({}) == 600.0
    assert timeout_seconds({"GRAFT_COLLECTIVE_TIMEOUT": "30"}) == 30.0
    with pytest.raises(InvalidArgumentError, match=r"Received: GRAFT_COLLECTIVE_TIMEOUT='soon'"):
        timeout_seconds({"GRAFT_COLLECTIVE_TIMEOUT": "soon"})


# -- two real workers ---------------------------------------------------------------------
def test_a_worker_whose_peers_never_start_gives_up_after_the_timeout(tmp_path):
    started = time.monotonic()
    ports, out = _ports(2), tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(out)],
        env=_env(ports, 0, GRAFT_COLLECTIVE_TIMEOUT="5"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "Waiting for 2 workers of TF_CONFIG to join (at most 5 s" in proc.stderr
    assert "Timeout (0:00:05)!" in proc.stderr
    assert time.monotonic() - started < 60
    assert not list(out.iterdir())


def _weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[k] for k in sorted(f.files, key=lambda k: int(k.split("_")[1]))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, Path]:
    """The worker script run by two workers and by one process, at the same time."""
    two, one = tmp_path_factory.mktemp("two"), tmp_path_factory.mktemp("one")
    results = _wait(
        _start([sys.executable, str(WORKER), str(two)], 2)
        + _start([sys.executable, str(WORKER), str(one)], 1)
    )
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return two, one


def test_two_workers_end_equal_to_one_process_with_the_same_global_batch(uninterrupted):
    two, one = uninterrupted
    chief, worker, alone = (
        _weights(p) for p in (two / "weights-0.npz", two / "weights-1.npz", one / "weights-0.npz")
    )
    assert len(chief) == 8  # conv, frozen BatchNorm (4 arrays), dense
    for a, b, c in zip(chief, worker, alone, strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise, on both workers
        np.testing.assert_allclose(a, c, atol=1e-6)  # as one process with the global batch
    start0, start1 = _weights(two / "initial-0.npz"), _weights(two / "initial-1.npz")
    assert not np.allclose(start0[0], start1[0])  # different seeds: the chief's were broadcast
    assert not np.allclose(chief[0], start0[0], atol=1e-3)  # and it trained
    # Only the chief writes checkpoints.
    assert (two / "run-0" / "checkpoints" / "finetune_best.weights.h5").is_file()
    assert not list((two / "run-1" / "checkpoints").iterdir())


def test_a_killed_worker_fails_the_other_clearly_and_resume_finishes_the_run(
    tmp_path, uninterrupted
):
    started = time.monotonic()
    (code0, _, err0), (code1, _, _) = _wait(
        _start([sys.executable, str(WORKER), str(tmp_path), "1"], 2), timeout=180
    )
    elapsed = time.monotonic() - started
    assert code1 == 9  # the worker killed itself at the start of epoch 2
    assert code0 != 0
    assert "WorkerFailedError: Distributed fine-tuning stopped: another worker" in err0
    assert "(worker:1) stopped responding" in err0 and "same command plus --resume" in err0
    assert "stopped sending heartbeats" in err0 and "task='worker:0', workers=2" in err0
    assert elapsed < 120  # heartbeats notice within seconds; no hang until the 600 s timeout
    assert not (tmp_path / "weights-0.npz").exists()
    state = json.loads((tmp_path / "run-0" / "state.json").read_text())["finetune"]
    assert state["epochs_done"] == 1
    # Every worker restarted with resume continues from the chief's checkpoint and ends where
    # the uninterrupted run ends.
    for code, _, stderr in _wait(
        _start([sys.executable, str(WORKER), str(tmp_path), "-1", "resume"], 2)
    ):
        assert code == 0, stderr[-3000:]
    chief, worker = _weights(tmp_path / "weights-0.npz"), _weights(tmp_path / "weights-1.npz")
    straight = _weights(uninterrupted[0] / "weights-0.npz")
    history = (tmp_path / "run-0" / "state.json").read_text()
    for a, b, c in zip(chief, worker, straight, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, atol=1e-6, err_msg=history)
    state = json.loads((tmp_path / "run-0" / "state.json").read_text())["finetune"]
    assert state["epochs_done"] == 3 and len(state["history"]["val_accuracy"]) == 3


# -- graft train on two workers -------------------------------------------------------------
def _h5_arrays(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as f:
        f.visititems(lambda n, o: out.update({n: o[()]}) if isinstance(o, h5py.Dataset) else None)
    return out


def test_graft_train_on_two_workers_writes_once(tmp_path, digits_dir, graft_home):
    import shutil

    import graft
    import tests._tiny_zoo  # noqa: F401  (registers tiny_cnn.test)

    backbone = graft.models.materialize("tiny_cnn.test")
    data = tmp_path / "digits"
    for folder in sorted(digits_dir.iterdir()):
        (data / folder.name).mkdir(parents=True)
        for f in sorted(folder.iterdir())[:30]:
            shutil.copy(f, data / folder.name / f.name)
    # One full batch per step (240 train examples), a rate that moves the weights.
    common = ["--model", str(backbone), "--fine-tune-blocks", "1", "--fine-tune-epochs", "6"]
    common += ["--batch-size", "256", "--fine-tune-lr", "0.003", "--no-augment"]

    def cmd(out: Path) -> list[str]:
        return [sys.executable, "-m", "graft.cli.main", "train", str(data), "--out", str(out)]

    chief_out, worker_out = tmp_path / "run", tmp_path / "worker_run"
    worker_tmp = tmp_path / "worker_tmp"
    worker_tmp.mkdir()
    procs = _start(
        [cmd(chief_out) + common, cmd(worker_out) + common],
        2,
        env_extra=[{}, {"TMPDIR": str(worker_tmp)}],
    )
    (c0, _, err0), (c1, out1, err1) = _wait(procs)
    assert (c0, c1) == (0, 0), (err0 + err1)[-4000:]
    assert "Worker worker:1 of 2: fine-tuning done; the chief writes" in " ".join(out1.split())
    assert not worker_out.exists() and not list(worker_tmp.iterdir())  # nothing left behind
    assert (chief_out / "module" / "manifest.json").is_file()
    assert (chief_out / "report.html").is_file()
    run = json.loads((chief_out / "run.json").read_text())
    assert "data-parallel on 2 workers" in run["selection"]["finetune"]["compute"]
    assert "128 examples per worker and step" in run["selection"]["finetune"]["compute"]
    state = json.loads((chief_out / "state.json").read_text())["finetune"]
    assert state["best_epoch"] > 0  # a trained epoch, not the starting weights
    best = _h5_arrays(chief_out / "checkpoints" / "finetune_best.weights.h5")
    assert best and all(np.isfinite(v).all() for v in best.values())
    # Step-level equality with one process is tested above; here the command's plumbing.
