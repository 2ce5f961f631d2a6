"""A graft module as an MLflow pyfunc model: a DataFrame with one column ``input`` (image
file paths, encoded image bytes, or texts) in; label names and probabilities out.

Logged as a model from code (``pyfunc_model.py``), so loading it unpickles nothing; the module
itself is loaded by graft with ``safe_mode`` and the class allowlist.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np
import pandas as pd


class GraftPyfunc(mlflow.pyfunc.PythonModel):
    """``predict(df)`` -> DataFrame with ``label``, ``probability`` and one column per label.

    Example:
        >>> model = mlflow.pyfunc.load_model("models:/digits@champion")  # doctest: +SKIP
        >>> model.predict(pd.DataFrame({"input": ["seven.png"]}))["label"][0]  # doctest: +SKIP
        '7'
    """

    def load_context(self, context) -> None:
        from graft.module.io import load

        self.loaded = load(context.artifacts["module"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        import tensorflow as tf

        from graft.data.images import image_bytes
        from graft.errors import InvalidArgumentError, received

        if isinstance(model_input, pd.DataFrame):
            if "input" not in model_input.columns:
                raise InvalidArgumentError(
                    "The DataFrame needs a column named 'input' (image paths, encoded image "
                    f"bytes, or texts). {received(columns=list(model_input.columns))}"
                )
            values = list(model_input["input"])
        else:
            values = list(np.asarray(model_input, dtype=object).reshape(-1))
        manifest = self.loaded.manifest
        if manifest.inputs.kind == "image":
            values = [v if isinstance(v, bytes) else image_bytes(str(v)) for v in values]
        else:
            values = [str(v) for v in values]
        probs = np.asarray(self.loaded.model.predict(tf.constant(values), verbose=0))
        labels = list(manifest.labels or [str(i) for i in range(probs.shape[1])])
        best = probs.argmax(axis=1)
        frame = {
            "label": [labels[i] for i in best],
            "probability": probs[np.arange(len(best)), best].astype(float),
        }
        frame.update({label: probs[:, i].astype(float) for i, label in enumerate(labels)})
        return pd.DataFrame(frame)
