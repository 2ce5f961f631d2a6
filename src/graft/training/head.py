"""The classifier head trained on cached features."""

from __future__ import annotations


def build_head(
    input_dim: int,
    num_classes: int,
    *,
    dropout: float = 0.2,
    hidden_units: int = 0,
    learning_rate: float = 1e-3,
    label_smoothing: float = 0.1,
):
    """``Dropout -> [Dense(hidden, relu) -> Dropout] -> Dense(num_classes, softmax)``, compiled.

    Example:
        >>> build_head(1280, 5).output_shape  # doctest: +SKIP
        (None, 5)
    """
    import keras

    inputs = keras.Input((input_dim,), name="features")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs) if dropout else inputs
    if hidden_units:
        x = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")(x)
        x = keras.layers.Dropout(dropout, name="head_hidden_dropout")(x) if dropout else x
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="head")
    compile_classifier(model, learning_rate, label_smoothing)
    return model


def compile_classifier(model, learning_rate: float, label_smoothing: float) -> None:
    """Adam + categorical cross-entropy with label smoothing + accuracy."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
