"""Data-parallel fine-tuning on several machines with ``tf.distribute.MultiWorkerMirroredStrategy``.

When ``TF_CONFIG`` describes a cluster (Kubernetes operators and Ray Train set it; under Slurm,
build it from the ``SLURM_*`` variables), every worker runs the same ``graft train`` command:

- each worker owns a fixed shard of the examples (every W-th, starting at its rank) and
  computes only their activations; it trains on batches of ``batch_size / W`` of them, so a
  step sees ``batch_size`` examples in all;
- a step is a custom ``strategy.run`` step (Keras 3's ``fit`` fails under this strategy with
  two real workers, keras-team/keras#20585): per-example losses summed and divided by the
  step's global example count, gradients summed across workers by a collective all-reduce, one
  Keras optimizer update. Without shuffling this is the one-process run with the same global
  batch, step for step;
- the chief (``chief`` task, else worker 0) starts everyone from its weights (a broadcast),
  writes the run folder, the module and the report; other workers write into a temporary
  folder that is deleted when they finish;
- validation is sharded too, and its counts are summed across workers, so every worker takes
  the same early-stopping decision;
- a worker that dies stops sending heartbeats; the others fail within seconds with
  ``WorkerFailedError`` (and collective operations time out after ``GRAFT_COLLECTIVE_TIMEOUT``
  seconds, default 600) instead of hanging; the start-up wait for every worker is bounded by
  the same timeout. The chief checkpoints weights, optimizer state and
  loop state after every epoch; restarting every worker with ``--resume`` continues from there
  (the chief's checkpoint reaches the others by broadcast).

The strategy must exist before TensorFlow runs any operation, so ``graft.train`` creates it
first (``strategy()``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.errors import InvalidArgumentError, WorkerFailedError, received

DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Cluster:
    """This process's place in a ``TF_CONFIG`` cluster.

    Attributes:
        workers: how many processes train (chief included).
        rank: this process's position, 0 for the chief.
        task: ``"worker:1"``, ``"chief:0"``...
    """

    workers: int
    rank: int
    task: str

    @property
    def is_chief(self) -> bool:
        return self.rank == 0

    def shard(self, items: list | tuple) -> list:
        """This worker's examples: every ``workers``-th, starting at ``rank``.

        Example:
            >>> Cluster(workers=2, rank=1, task="worker:1").shard(list("abcde"))
            ['b', 'd']
        """
        return list(items)[self.rank :: self.workers]


def cluster_from_env(environ: Mapping[str, str] | None = None) -> Cluster | None:
    """The cluster ``TF_CONFIG`` describes, or ``None`` when it is unset or empty.

    Raises:
        InvalidArgumentError: ``TF_CONFIG`` is not JSON, has no ``cluster``/``task``, names a
            task type graft does not run (``ps``, ``evaluator``) or an index outside its list.

    Example:
        >>> cluster = '{"worker": ["a:1", "b:1"]}'
        >>> task = '{"type": "worker", "index": 1}'
        >>> cluster_from_env({"TF_CONFIG": f'{{"cluster": {cluster}, "task": {task}}}'})
        Cluster(workers=2, rank=1, task='worker:1')
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return None
    accepted = (
        'TF_CONFIG must be JSON like {"cluster": {"worker": ["host0:port", "host1:port"]}, '
        '"task": {"type": "worker", "index": 0}} (an optional "chief" list holds one address)'
    )
    try:
        config = json.loads(raw)
        cluster, task = config["cluster"], config["task"]
        kind, index = str(task["type"]), int(task["index"])
        chiefs, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InvalidArgumentError(f"{accepted}. {received(TF_CONFIG=raw[:200])}") from None
    if set(cluster) - {"chief", "worker"} or kind not in ("chief", "worker"):
        raise InvalidArgumentError(
            f"graft trains data-parallel with chief and worker tasks only (no parameter servers "
            f"or evaluators). {accepted}. {received(TF_CONFIG=raw[:200])}"
        )
    for address in chiefs + workers:
        host, _, port = str(address).rpartition(":")
        if not host or not port.isdigit():
            raise InvalidArgumentError(
                f"Every address in TF_CONFIG's cluster must be host:port (a port each worker "
                f"listens on; on one machine, a different port per worker). "
                f"{received(address=address)}"
            )
    members = chiefs if kind == "chief" else workers
    if len(chiefs) > 1 or not 0 <= index < len(members):
        raise InvalidArgumentError(
            f"The task's index must point into its list, and there is at most one chief. "
            f"{accepted}. {received(TF_CONFIG=raw[:200])}"
        )
    rank = index if kind == "chief" else index + len(chiefs)
    return Cluster(workers=len(chiefs) + len(workers), rank=rank, task=f"{kind}:{index}")


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    """How long a collective operation may wait for the other workers
    (``GRAFT_COLLECTIVE_TIMEOUT``, seconds)."""
    raw = (os.environ if environ is None else environ).get("GRAFT_COLLECTIVE_TIMEOUT", "")
    try:
        value = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        value = -1.0
    if value <= 0:
        raise InvalidArgumentError(
            "GRAFT_COLLECTIVE_TIMEOUT must be a positive number of seconds. "
            f"{received(GRAFT_COLLECTIVE_TIMEOUT=raw)}"
        )
    return value


def check_settings(config, cluster: Cluster) -> None:
    """Refuses a ``TrainConfig`` the workers cannot run together.

    Raises:
        InvalidArgumentError: no fine-tuning is asked for (the only distributed stage), or
            folds or pruning are, or the batch does not split evenly.
    """
    where = f"TF_CONFIG describes a cluster of {cluster.workers} workers"
    if not (config.fine_tune_blocks or config.fine_tune_layers):
        raise InvalidArgumentError(
            f"{where}, and fine-tuning is what graft runs on several workers: add "
            "--fine-tune-blocks N (or --fine-tune-layers N), or unset TF_CONFIG to train the "
            f"head on one machine. {received(fine_tune_blocks=config.fine_tune_blocks)}"
        )
    unsupported = {"folds": config.folds, "prune_sparsity": config.prune_sparsity}
    used = {k: v for k, v in unsupported.items() if v}
    if used:
        raise InvalidArgumentError(
            f"{where}; distributed fine-tuning runs one split, without folds or pruning. "
            f"{received(**used)}"
        )
    if config.batch_size % cluster.workers:
        raise InvalidArgumentError(
            f"{where}: the batch size is split evenly between them, so it must be a multiple "
            f"of {cluster.workers}. {received(batch_size=config.batch_size)}"
        )


_STRATEGY = None
_CLUSTER: Cluster | None = None


def active() -> Cluster | None:
    """The cluster this process trains in, once ``strategy()`` has created the strategy."""
    return _CLUSTER if _STRATEGY is not None else None


def strategy():
    """The process's ``MultiWorkerMirroredStrategy`` (created once, ring all-reduce, with the
    collective timeout). Call it before any other TensorFlow operation runs: it blocks until
    every worker of ``TF_CONFIG`` has started."""
    global _STRATEGY, _CLUSTER
    if _STRATEGY is None:
        _CLUSTER = cluster_from_env()
        import tensorflow as tf

        implementation = tf.distribute.experimental.CommunicationImplementation.RING
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=implementation, timeout_seconds=timeout_seconds()
        )
        _STRATEGY = _bounded_start(
            lambda: tf.distribute.MultiWorkerMirroredStrategy(communication_options=options),
            _CLUSTER,
            timeout_seconds(),
        )
    return _STRATEGY


def _bounded_start(create, cluster: Cluster | None, timeout: float):
    """Runs ``create()``, the strategy's start, which waits inside TensorFlow for every worker
    without a limit, holding the interpreter: no Python thread or signal handler runs, and
    SIGINT/SIGTERM stay pending (measured; only SIGKILL ends it). ``faulthandler``'s C
    watchdog ends the process (exit 1, with the stack) after ``timeout`` seconds; a line on
    stderr says so first."""
    import faulthandler

    workers = cluster.workers if cluster else "the"
    sys.stderr.write(
        f"Waiting for {workers} workers of TF_CONFIG to join (at most {timeout:g} s, "
        "GRAFT_COLLECTIVE_TIMEOUT); every worker runs the same command.\n"
    )
    sys.stderr.flush()
    faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        return create()
    finally:
        faulthandler.cancel_dump_traceback_later()


def _failed(cluster: Cluster, error: Exception) -> WorkerFailedError:
    import re

    detail = " ".join(str(error).split())
    cut = detail.find("Collective ops is aborted by")
    detail = detail[cut:] if cut >= 0 else detail
    for end in (" The tasks have crashed", " [[", " [Op:", " The error could be"):
        detail = detail.split(end)[0]
    if len(detail) > 400:
        detail = detail[:400].rsplit(" ", 1)[0] + " ..."
    lost = sorted(set(re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", detail)))
    lost = [f"{job}:{task}" for job, task in lost if f"{job}:{task}" != cluster.task]
    return WorkerFailedError(
        f"Distributed fine-tuning stopped: another worker of the cluster "
        f"{'(' + ', '.join(lost) + ') ' if lost else ''}stopped responding (it crashed, was "
        f"killed or its network failed), or a collective operation waited longer than "
        f"GRAFT_COLLECTIVE_TIMEOUT. Restart every worker with the same command plus --resume "
        f"(the run continues from the chief's last epoch). TensorFlow said: "
        f"{detail.rstrip('.')}. {received(task=cluster.task, workers=cluster.workers)}"
    )


def _sum_across(strat, values: list[float]) -> np.ndarray:
    """``values`` summed over every worker (the same result everywhere)."""
    import tensorflow as tf

    return np.asarray(_all_reduce(strat, [tf.constant(values, tf.float64)])[0])


def _all_reduce(strat, tensors: list) -> list:
    """Sums ``tensors`` over every worker, in one traced ``strategy.run``."""
    import tensorflow as tf

    def fn(values):  # (an argument reduced as it is finds no device: "destinations can not
        # be empty"; a copy made inside the replica function has one)
        values = tf.nest.map_structure(tf.identity, values)
        return tf.distribute.get_replica_context().all_reduce("sum", values)

    run = _REDUCERS.get(id(strat))
    if run is None:  # traced once per strategy and structure, not on every call
        run = _REDUCERS[id(strat)] = tf.function(
            lambda values: strat.run(fn, args=(values,)), reduce_retracing=True
        )
    return strat.experimental_local_results(run(tensors))[0]


_REDUCERS: dict[int, object] = {}


def broadcast_from_chief(strat, cluster: Cluster, variables: list) -> None:
    """Sets every worker's ``variables`` to the chief's values (a sum where only the chief
    contributes, so the values arrive exactly). Checks first that every worker holds the same
    number of values."""
    import tensorflow as tf

    count = float(sum(int(np.prod(v.shape)) for v in variables))
    totals = _sum_across(strat, [count, count**2])
    if totals[1] * cluster.workers != totals[0] ** 2:  # not all equal
        raise InvalidArgumentError(
            "The workers built different networks (their heads differ), so they cannot train "
            "together: give every worker the same data, backbone and settings. "
            f"{received(task=cluster.task, weights=int(count))}"
        )

    mine = [tf.convert_to_tensor(v) for v in variables]
    if not cluster.is_chief:
        mine = [tf.zeros_like(t) for t in mine]
    by_dtype: dict = {}  # one all-reduce per dtype (the optimizer's step count is an integer)
    for i, tensor in enumerate(mine):
        by_dtype.setdefault(tensor.dtype, []).append(i)
    for indices in by_dtype.values():
        values = _all_reduce(strat, [mine[i] for i in indices])
        for i, value in zip(indices, values, strict=True):
            variables[i].assign(value)


def _batches(data: tuple, batch_size: int) -> Iterator[tuple]:
    """Local batches from ``(x, y, batch_size[, w])`` arrays or ``(dataset,)``."""
    if len(data) == 1:
        for x, y in data[0]:
            yield x, y
        return
    x, y = data[0], data[1]
    for start in range(0, len(y), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def _empty_like(batch: tuple) -> tuple:
    import tensorflow as tf

    def cut(t):
        return tf.nest.map_structure(lambda a: tf.convert_to_tensor(a)[:0], t)

    return cut(batch[0]), cut(batch[1])


class DistributedTrainer:
    """A clone of ``model`` inside the strategy, started from the chief's weights, with a Keras
    optimizer and a custom ``strategy.run`` step.

    Args:
        model: the Keras model to train (its weights are copied in, and back by ``copy_to``).
        learning_rate: a number or a Keras schedule (Adam).
        label_smoothing: of the categorical cross-entropy.
        cluster: this process's place (``cluster_from_env``).
        jit_compile: compile the step with XLA.
    """

    def __init__(
        self,
        model,
        learning_rate,
        label_smoothing: float,
        cluster: Cluster,
        *,
        jit_compile: bool = False,
    ):
        import keras
        import tensorflow as tf

        import graft.models.layers  # noqa: F401  (graft's layers, for the clone)

        self.cluster = cluster
        self.strategy = strategy()
        try:
            with self.strategy.scope():
                self.model = keras.models.clone_model(model)
                self.model.set_weights(model.get_weights())
                self.optimizer = keras.optimizers.Adam(learning_rate)
                self.optimizer.build(self.model.trainable_variables)
            broadcast_from_chief(self.strategy, cluster, self.model.weights)
        except tf.errors.OpError as error:
            raise _failed(cluster, error) from error
        self.loss = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None
        )
        self._step = tf.function(
            self._replica_step, jit_compile=jit_compile or None, reduce_retracing=True
        )

    def _replica_step(self, x, y):
        import tensorflow as tf

        model, loss_fn, optimizer = self.model, self.loss, self.optimizer

        def step(x, y):
            ctx = tf.distribute.get_replica_context()
            count = ctx.all_reduce("sum", tf.cast(tf.shape(y)[0], tf.float32))
            with tf.GradientTape() as tape:
                probs = model(x, training=True)
                losses = loss_fn(y, probs)
                loss = tf.reduce_sum(losses) / tf.maximum(count, 1.0)
            grads = tape.gradient(loss, model.trainable_variables)
            grads = [
                tf.zeros_like(v) if g is None else g
                for g, v in zip(grads, model.trainable_variables, strict=True)
            ]
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            correct = tf.reduce_sum(tf.cast(tf.argmax(probs, -1) == tf.argmax(y, -1), tf.float32))
            local = tf.cast(tf.shape(y)[0], tf.float32)
            return ctx.all_reduce("sum", tf.stack([tf.reduce_sum(losses), correct, local]))

        return self.strategy.run(step, args=(x, y))

    def fit_epoch(self, data: tuple, batch_size: int, steps: int) -> dict[str, float]:
        """One epoch of ``steps`` steps on this worker's batches (a worker with fewer batches
        contributes empty ones); returns the epoch's loss and accuracy over every worker."""
        import tensorflow as tf

        totals = np.zeros(3)
        template = None
        batches = _batches(data, batch_size)
        try:
            for _ in range(steps):
                batch = next(batches, None)
                if batch is None:
                    batch = _empty_like(template)
                else:
                    template = batch
                out = self._step(*batch)
                totals += np.asarray(self.strategy.experimental_local_results(out)[0])
        except tf.errors.OpError as error:
            raise _failed(self.cluster, error) from error
        return {"loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1)}

    def evaluate(self, data: tuple, batch_size: int) -> dict[str, float]:
        """Loss and accuracy on every worker's validation shard together."""
        import tensorflow as tf

        totals = np.zeros(3)
        for x, y in _batches(data, batch_size):
            probs = self.model(x, training=False)
            y = np.asarray(y)
            totals += [
                float(np.sum(self.loss(y, probs))),
                float(np.sum(np.argmax(probs, -1) == np.argmax(y, -1))),
                len(y),
            ]
        try:
            totals = _sum_across(self.strategy, totals.tolist())
        except tf.errors.OpError as error:
            raise _failed(self.cluster, error) from error
        return {"loss": totals[0] / max(totals[2], 1), "accuracy": totals[1] / max(totals[2], 1)}

    def copy_to(self, model) -> None:
        """Puts the trained weights into ``model`` (the one given at construction)."""
        model.set_weights(self.model.get_weights())


def _agree_on_state(trainer, cluster: Cluster, run_dir: Path, stage: str, resume: bool):
    """The stage's loop state every worker continues from: the chief's last checkpoint when it
    resumes one (its weights and optimizer state are broadcast), else a fresh start."""
    import tensorflow as tf

    from graft.training.loop import StageState

    state = StageState(stage=stage)
    last = run_dir / "checkpoints" / f"{stage}_last"
    weights, moments = last.with_suffix(".weights.h5"), last.with_suffix(".optimizer.npz")
    if cluster.is_chief and resume and weights.is_file() and moments.is_file():
        saved = StageState.read(run_dir / "state.json", stage)
        if saved.epochs_done:
            state = saved
            trainer.model.load_weights(weights)
            with np.load(moments, allow_pickle=False) as f:
                values = [f[f"arr_{i}"] for i in range(len(f.files))]
            for variable, value in zip(trainer.optimizer.variables, values, strict=True):
                variable.assign(value)
    mine = [state.epochs_done, *state.best, state.best_epoch, state.wait, float(state.finished)]
    if not cluster.is_chief:
        mine = [0.0] * len(mine)
    try:
        agreed = _sum_across(trainer.strategy, [float(v) for v in mine])
        if agreed[0] > 0:  # the chief resumes: everyone takes its weights and moments
            broadcast_from_chief(
                trainer.strategy, cluster, [*trainer.model.weights, *trainer.optimizer.variables]
            )
    except tf.errors.OpError as error:
        raise _failed(cluster, error) from error
    if not cluster.is_chief:
        state.epochs_done, state.best_epoch, state.wait = (int(agreed[i]) for i in (0, 3, 4))
        state.best, state.finished = [float(agreed[1]), float(agreed[2])], bool(agreed[5])
    return state


def global_steps(n_train: int, batch_size: int, cluster: Cluster) -> int:
    """Steps per epoch: the batches of the largest shard (worker 0's).

    Example:
        >>> global_steps(9, 4, Cluster(workers=2, rank=1, task="worker:1"))
        3
    """
    local = batch_size // cluster.workers
    return -(-len(range(0, n_train, cluster.workers)) // local)


def run_stage(
    *,
    stage: str,
    model,
    run_dir: Path,
    epochs: int,
    seed: int,
    train_data: Callable[[int], tuple],
    validation_data: tuple,
    batch_size: int,
    steps: int,
    learning_rate,
    label_smoothing: float,
    cluster: Cluster,
    patience: int | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    jit_compile: bool = False,
    resume: bool = False,
):
    """``graft.training.loop.run_stage`` across the workers of ``cluster``.

    Args:
        stage: names the checkpoints (``checkpoints/<stage>_best.weights.h5``).
        model: the Keras model; it ends holding the best epoch's weights.
        run_dir: where this worker writes (the run folder on the chief, a temporary folder on
            the others).
        epochs: epochs of the stage.
        seed: the run seed.
        train_data: ``epoch -> (x, y, local_batch[, w])`` or ``epoch -> (dataset,)`` of this
            worker's shard.
        validation_data: ``(x, y)`` arrays or a dataset of this worker's validation shard.
        batch_size: this worker's batch size (the global one divided by the workers).
        steps: steps per epoch (``global_steps``), the same on every worker.
        learning_rate: a number or a Keras schedule.
        label_smoothing: of the loss.
        cluster: this process's place in the cluster.
        patience: stop after this many epochs without a better validation score.
        on_epoch: called with ``(epoch, logs)`` after each epoch.
        jit_compile: compile the step with XLA.
        resume: on the chief, continue from the stage's last checkpoint in ``run_dir`` (the
            chief's weights, optimizer state and loop state reach every worker; the others'
            value of ``resume`` is not used).

    Returns:
        ``(model, state, start)``: the model, the ``StageState`` and the validation scores
        before the first step.
    """
    import keras
    import tensorflow as tf

    from graft._atomic import atomic_path
    from graft.training.loop import write_json

    checkpoints = run_dir / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    trainer = DistributedTrainer(
        model, learning_rate, label_smoothing, cluster, jit_compile=jit_compile
    )
    val = validation_data if isinstance(validation_data, tuple) else (validation_data,)
    start = trainer.evaluate(val, batch_size)
    state = _agree_on_state(trainer, cluster, run_dir, stage, resume)
    last = checkpoints / f"{stage}_last"
    best_weights = None
    for epoch in range(state.epochs_done, epochs):
        if state.finished:
            break
        started = time.perf_counter()
        keras.utils.set_random_seed(seed * 10_007 + 1_000_003 + epoch)
        logs = trainer.fit_epoch(train_data(epoch), batch_size, steps)
        scores = trainer.evaluate(val, batch_size)
        logs.update(val_loss=scores["loss"], val_accuracy=scores["accuracy"])
        for key, value in logs.items():
            state.history.setdefault(key, []).append(float(value))
        state.history.setdefault("seconds", []).append(time.perf_counter() - started)
        score = [logs["val_accuracy"], -logs["val_loss"]]
        if score > state.best:
            state.best, state.best_epoch, state.wait = score, epoch, 0
            best_weights = trainer.model.get_weights()
            if cluster.is_chief:
                with atomic_path(checkpoints / f"{stage}_best.weights.h5", ".weights.h5") as tmp:
                    trainer.model.save_weights(tmp)
        else:
            state.wait += 1
        state.epochs_done = epoch + 1
        if patience is not None and state.wait >= patience:
            state.finished = True
        if cluster.is_chief:  # what --resume continues from: weights, optimizer, loop state
            with atomic_path(last.with_suffix(".weights.h5"), ".weights.h5") as tmp:
                trainer.model.save_weights(tmp)
            with atomic_path(last.with_suffix(".optimizer.npz"), ".npz") as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, *[v.numpy() for v in trainer.optimizer.variables])
        write_json(run_dir / "state.json", {stage: state.__dict__})
        if on_epoch:
            on_epoch(epoch, logs)
    state.finished = True
    write_json(run_dir / "state.json", {stage: state.__dict__})
    best = checkpoints / f"{stage}_best.weights.h5"
    if best_weights is not None:
        trainer.model.set_weights(best_weights)
    elif state.best_epoch >= 0:  # resumed after the best epoch: the chief's checkpoint
        if cluster.is_chief:
            trainer.model.load_weights(best)
        try:
            broadcast_from_chief(trainer.strategy, cluster, trainer.model.weights)
        except tf.errors.OpError as error:
            raise _failed(cluster, error) from error
    trainer.copy_to(model)
    return model, state, start
