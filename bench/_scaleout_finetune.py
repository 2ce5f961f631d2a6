"""One process of bench/scaleout.py's fine-tuning part (run by it, not by hand).

    python bench/_scaleout_finetune.py MODE GLOBAL_BATCH STEPS

MODE ``fit``: Keras ``model.fit`` in this process (no strategy), the single-machine path.
MODE ``dist``: ``graft.training.distributed.DistributedTrainer`` in the cluster ``TF_CONFIG``
describes (one worker or several). The network is EfficientNet-Lite0's top two blocks plus a
10-class head on the cached activations below them, as ``graft train --fine-tune-blocks 2
--no-augment`` trains it; the activations are synthetic. Prints one JSON line: seconds per step
(median of the timed epochs, after a warm-up epoch), trainable parameters, examples per step.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    mode, global_batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    from graft.training import distributed

    cluster = distributed.cluster_from_env() if mode == "dist" else None
    if cluster is not None:
        distributed.strategy()  # before any other TensorFlow operation
    import keras
    import numpy as np

    import graft
    from graft.models.transfer import set_trainable
    from graft.module.io import load
    from graft.training.finetune import boundary_split
    from graft.training.head import compile_classifier

    loaded = load(graft.models.materialize("efficientnet_lite0.imagenet"))
    backbone, groups = loaded.model, loaded.manifest.groups
    set_trainable(backbone, groups, top_groups=2)
    first = groups[-2].layers[0]
    bottom, top = boundary_split(backbone, first)
    inputs = keras.Input(top.input.shape[1:])
    head = keras.layers.Dense(10, activation="softmax")
    model = keras.Model(inputs, head(top(inputs)))
    rng = np.random.default_rng(0)
    n = global_batch * steps
    x = rng.normal(size=(n, *top.input.shape[1:])).astype("float32")
    y = np.eye(10, dtype="float32")[rng.integers(0, 10, n)]
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    timings = []
    if cluster is None:
        compile_classifier(model, 1e-4, 0.1, jit_compile=False)
        for _ in range(4):
            started = time.perf_counter()
            model.fit(x, y, batch_size=global_batch, epochs=1, verbose=0, shuffle=False)
            timings.append((time.perf_counter() - started) / steps)
        workers = 1
    else:
        trainer = distributed.DistributedTrainer(model, 1e-4, 0.1, cluster)
        local = global_batch // cluster.workers
        data = (x[cluster.rank :: cluster.workers], y[cluster.rank :: cluster.workers], local)
        for _ in range(4):
            started = time.perf_counter()
            trainer.fit_epoch(data, local, steps)
            timings.append((time.perf_counter() - started) / steps)
        workers = cluster.workers
    print(
        json.dumps(
            {
                "mode": mode,
                "workers": workers,
                "rank": cluster.rank if cluster else 0,
                "step_s": float(np.median(timings[1:])),
                "trainable": trainable,
                "global_batch": global_batch,
                "boundary": f"{first} {tuple(top.input.shape[1:])}",
            }
        )
    )


if __name__ == "__main__":
    main()
