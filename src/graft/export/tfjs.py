"""TF.js export, when the converter can be installed beside graft."""

from __future__ import annotations

from graft.errors import MissingDependencyError, received

HOW = (
    "TF.js export needs the `tensorflowjs` converter, which cannot be installed beside graft: "
    "tensorflowjs 4.22 pins TensorFlow 2.19 (graft needs 2.21) and pulls tf_keras, JAX and "
    "flax. Export a SavedModel with graft, then convert it in a separate environment:\n"
    "  python -m venv tfjs-env && tfjs-env/bin/pip install tensorflowjs\n"
    "  tfjs-env/bin/tensorflowjs_converter --input_format=tf_saved_model "
    "--signature_name=serving_default EXPORT/saved_model EXPORT/tfjs\n"
    "(graft export --format saved_model writes EXPORT/saved_model)."
)


def check() -> None:
    """Raises with the set-up steps unless ``tensorflowjs`` imports.

    Raises:
        MissingDependencyError: always, in environments where the converter is missing.
    """
    try:
        import tensorflowjs  # noqa: F401
    except ImportError:
        raise MissingDependencyError(f"{HOW} {received(format='tfjs')}") from None
