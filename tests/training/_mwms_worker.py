"""One worker of the two-process tests in test_distributed.py (run as a script).

Usage: python _mwms_worker.py OUT_DIR [KILL_AT_EPOCH [resume]]. TF_CONFIG describes the
cluster. Trains a
small convolutional network (frozen BatchNorm with non-trivial statistics, no dropout, no
shuffling) on this worker's shard with ``graft.training.distributed.run_stage`` and saves its
final weights as OUT_DIR/weights-<rank>.npz. With KILL_AT_EPOCH, the worker of rank 1 kills
itself when that epoch starts (-1: never); ``resume`` continues from the chief's last
checkpoint.
"""

import os
import sys
from pathlib import Path

from graft.training import distributed


def main() -> None:
    out = Path(sys.argv[1])
    kill_at = int(sys.argv[2]) if len(sys.argv) > 2 else -1
    resume = sys.argv[3:] == ["resume"]
    cluster = distributed.cluster_from_env()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    distributed.strategy()  # before any other TensorFlow operation
    import keras
    import numpy as np

    keras.utils.set_random_seed(cluster.rank + 1)  # the broadcast must make them equal
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    norm = keras.layers.BatchNormalization()
    x = norm(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    norm.set_weights([np.full(4, 1.5), np.full(4, 0.1), np.full(4, 0.3), np.full(4, 2.0)])
    norm.trainable = False
    rng = np.random.default_rng(0)
    x_all = rng.normal(size=(70, 8, 8, 3)).astype("float32")
    y_all = np.eye(3, dtype="float32")[rng.integers(0, 3, 70)]
    global_batch = 16
    x_mine, y_mine = x_all[cluster.rank :: cluster.workers], y_all[cluster.rank :: cluster.workers]
    local = global_batch // cluster.workers

    def epoch_data(epoch):
        if epoch == kill_at and cluster.rank == 1:
            os._exit(9)
        return x_mine, y_mine, local

    np.savez(out / f"initial-{cluster.rank}.npz", *model.get_weights())
    model, state, start = distributed.run_stage(
        stage="finetune",
        model=model,
        run_dir=out / f"run-{cluster.rank}",
        epochs=3,
        seed=0,
        train_data=epoch_data,
        validation_data=(
            x_all[:20][cluster.rank :: cluster.workers],
            y_all[:20][cluster.rank :: cluster.workers],
        ),
        batch_size=local,
        steps=distributed.global_steps(len(y_all), global_batch, cluster),
        learning_rate=0.05,
        label_smoothing=0.1,
        cluster=cluster,
        resume=resume,
    )
    np.savez(out / f"weights-{cluster.rank}.npz", *model.get_weights())
    print("done", cluster.task, state.history["val_accuracy"], flush=True)


if __name__ == "__main__":
    main()
