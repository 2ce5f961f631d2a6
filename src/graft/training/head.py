"""The classifier head on cached features: convex (the default) or trained by SGD.

The convex head is a logistic regression fitted to convergence (``linear.py``) and written into
the same Keras layers an SGD head has (``[PowerNormalization] -> Dropout -> Dense``), so every
later step (fine-tuning, saving, export, serving) sees one kind of head. The SGD head remains for
hidden layers, pruning and quantization-aware training.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HEAD_KINDS = ("auto", "convex", "sgd")


def build_head(
    input_dim: int,
    num_classes: int,
    *,
    dropout: float = 0.2,
    hidden_units: int = 0,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.1,
    transform: str = "none",
    scaling: tuple[np.ndarray, np.ndarray] | None = None,
    activation: str = "softmax",
):
    """``[PowerNormalization] [-> FeatureScaling] -> Dropout -> [Dense(hidden, relu) -> Dropout]
    -> Dense(softmax)``, compiled with Adam and categorical cross-entropy.

    ``scaling`` is ``(mean, scale)`` of a fixed ``FeatureScaling`` layer (the convex head's);
    ``activation`` of the last layer may also be ``"log_softmax"`` (an ensemble member's
    log-probabilities).

    Example:
        >>> build_head(1280, 5).output_shape  # doctest: +SKIP
        (None, 5)
    """
    import keras

    from graft.models.layers import FeatureScaling, PowerNormalization

    inputs = keras.Input((input_dim,), name="features")
    x = PowerNormalization(name="head_power")(inputs) if transform == "power" else inputs
    if scaling is not None:
        x = FeatureScaling(*scaling, name="head_scaling")(x)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x) if dropout else x
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
        x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x) if dropout else x
    outputs = keras.layers.Dense(num_classes, activation=activation, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="head")
    compile_classifier(model, learning_rate, label_smoothing)
    return model


def compile_classifier(
    model, learning_rate, label_smoothing: float, jit_compile: bool | str = "auto"
) -> None:
    """Adam + categorical cross-entropy with label smoothing + accuracy.

    ``learning_rate`` may be a number or a Keras schedule; ``jit_compile`` as Keras takes it
    (``graft._engines.plan_runtime`` turns XLA on where a GPU is visible).
    """
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


@contextlib.contextmanager
def mixed_precision(model, policy: str | None) -> Iterator[None]:
    """Runs ``model`` with a mixed dtype policy (``"mixed_float16"`` on GPUs,
    ``"mixed_bfloat16"``) while the block runs: every layer computes in the lower precision
    with float32 variables, except the last layer (the softmax stays float32); Keras scales
    the loss for float16 when the model is compiled inside the block. Every layer's policy is
    restored afterwards, so what is saved is float32. ``None`` changes nothing.

    Example:
        >>> with mixed_precision(model, "mixed_float16"):  # doctest: +SKIP
        ...     model.compile(...); model.fit(...)
    """
    if policy is None:
        yield
        return
    everything = list(model._flatten_layers(include_self=True))
    before = [(layer, layer.dtype_policy) for layer in everything]
    last = model.layers[-1]
    keep = {id(layer) for layer in last._flatten_layers(include_self=True)}
    try:
        for layer in everything:
            if id(layer) not in keep:
                layer.dtype_policy = policy  # the model itself too: compile reads it
        yield
    finally:
        for layer, original in before:
            layer.dtype_policy = original


def warmup_cosine(learning_rate: float, total_steps: int, warmup_fraction: float = 0.1):
    """A linear warm-up from 0 over ``warmup_fraction`` of the steps, then cosine decay to 0."""
    import keras

    warmup = max(1, int(round(total_steps * warmup_fraction)))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total_steps - warmup),
        warmup_target=learning_rate,
        warmup_steps=warmup,
    )


@dataclass
class HeadResult:
    """A trained head and what is known about it.

    Attributes:
        model: the Keras head (features -> probabilities).
        kind: ``"convex"`` or ``"sgd"``.
        val_accuracy: accuracy on the validation split (``None`` if it was trained on it).
        info: how it was fitted (JSON-ready): solver, strength, selection...
        history: per-epoch logs of an SGD head.
    """

    model: object
    kind: str
    val_accuracy: float | None
    info: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)


def resolve_kind(head: str, hidden_units: int, prune_sparsity: float) -> str:
    """``auto`` -> ``convex`` unless a hidden layer or pruning asks for SGD training."""
    if head != "auto":
        return head
    return "sgd" if hidden_units or prune_sparsity else "convex"


def fit_convex(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    num_classes: int,
    *,
    dropout: float,
    label_smoothing: float,
    class_weight: str,
    refit_on: str,
    seed: int,
    sample_weight: np.ndarray | None = None,
    lam: float = 0.0,
    transform: str = "auto",
) -> HeadResult:
    """The convex head on ``features["train"]`` (+ ``"val"``), as a Keras head model.

    ``lam`` (> 0) and ``transform`` (``"none"`` or ``"power"``) fix the L2 strength and the
    feature transform; by default both are chosen by cross-validation.
    """
    from graft.training.linear import LAMBDAS, fit_linear_head

    if transform == "auto":
        transforms = ("none", "power") if nonnegative_features(features) else ("none",)
    else:
        transforms = (transform,)
    # Whatever is not fixed is chosen by cross-validation; both fixed: one fit, no search.
    fixed = lam if lam and len(transforms) == 1 else None
    linear = fit_linear_head(
        features["train"],
        labels["train"],
        features["val"],
        labels["val"],
        num_classes,
        refit_on=refit_on,
        class_weight=class_weight,
        transforms=transforms,
        lambdas=(lam,) if lam else LAMBDAS,
        lam=fixed,
        sample_weight=sample_weight,
        seed=seed,
    )
    model = head_model(linear, label_smoothing=label_smoothing)
    val_accuracy = None
    if refit_on == "train" and len(labels["val"]):
        val_accuracy = float(
            (linear.predict_proba(features["val"]).argmax(1) == labels["val"]).mean()
        )
    return HeadResult(model=model, kind="convex", val_accuracy=val_accuracy, info=linear.summary())


def nonnegative_features(features: dict[str, np.ndarray]) -> bool:
    """Whether power normalisation is worth trying: it is for non-negative (pooled ReLU)
    features, CNNs' kind."""
    return all(float(features[name].min()) >= 0 for name in ("train", "val") if features[name].size)


def uncompiled(model):
    """``model`` without its training configuration (an uncompiled copy with the same weights),
    so that a module holding it does not warn about optimizer variables on every load."""
    if not getattr(model, "compiled", False):
        return model
    import keras

    weights = model.get_weights()
    copy = keras.Model.from_config(model.get_config())  # clone_model would compile it
    copy.set_weights(weights)
    return copy


def head_model(linear, *, label_smoothing: float = 0.1, activation: str = "softmax"):
    """A fitted convex head (``linear.LinearHead``) as Keras layers: ``[PowerNormalization] ->
    FeatureScaling -> Dense``, with ``activation`` (``"softmax"`` or ``"log_softmax"``).

    Example:
        >>> head_model(fit_linear_head(xtr, ytr, xva, yva, 5)).output_shape  # doctest: +SKIP
        (None, 5)
    """
    dim, n = linear.kernel.shape
    # No Dropout: the solution is exact without it, and dropping inputs of a kernel fitted
    # without dropout would only add noise to the logits when fine-tuning starts from it.
    model = build_head(
        dim,
        n,
        dropout=0.0,
        label_smoothing=label_smoothing,
        transform=linear.transform,
        scaling=(linear.mean, linear.scale),
        activation=activation,
    )
    model.get_layer("predictions").set_weights([linear.kernel, linear.bias])
    return model


def fit_sgd(
    features: dict[str, np.ndarray],
    onehot: dict[str, np.ndarray],
    *,
    run_dir: Path,
    config,
    resume: bool,
    on_epoch: Callable[[int, dict], None] | None,
    pruning_for: Callable[[int, int], object],
    class_weights: np.ndarray | None = None,
) -> HeadResult:
    """The head trained by Adam on cached features: cosine schedule, best epoch kept."""
    import keras

    from graft.training.loop import run_stage

    n = onehot["train"].shape[1]
    keras.utils.set_random_seed(config.seed)  # the head's initial weights
    steps = -(-len(onehot["train"]) // config.batch_size)
    head = build_head(
        features["train"].shape[1],
        n,
        dropout=config.dropout,
        hidden_units=config.hidden_units,
        learning_rate=warmup_cosine(config.lr, steps * config.epochs, warmup_fraction=0.05),
        label_smoothing=config.label_smoothing,
    )
    targets = onehot["train"]
    weights = None if class_weights is None else class_weights[targets.argmax(1)]

    def epoch_data(epoch: int):
        order = np.random.default_rng([config.seed, epoch]).permutation(len(targets))
        data = (features["train"][order], targets[order], config.batch_size)
        return data if weights is None else (*data, weights[order])

    head, state = run_stage(
        stage="head",
        model=head,
        run_dir=run_dir,
        epochs=config.epochs,
        seed=config.seed,
        train_data=epoch_data,
        validation_data=(features["val"], onehot["val"]),
        resume=resume,
        on_epoch=on_epoch,
        pruning=pruning_for(config.epochs, steps),
        steps_per_epoch=steps,
    )
    best = state.best[0] if state.best_epoch >= 0 else None
    info = {
        "solver": "Adam on cached features, warm-up + cosine learning rate",
        "epochs": config.epochs,
        "best_epoch": state.best_epoch + 1,
        "hidden_units": config.hidden_units,
        "class_weighted": class_weights is not None,
    }
    return HeadResult(
        model=head, kind="sgd", val_accuracy=best, info=info, history=dict(state.history)
    )
