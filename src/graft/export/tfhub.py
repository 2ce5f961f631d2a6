"""A module as a TF2 SavedModel the way TF Hub serves them, for ``tensorflow_hub.load``.

TF Hub's conventions: ``obj(inputs)`` is the model (images: float32 ``(batch, h, w, 3)`` RGB in
[0, 1] at the module's size; texts: a ``(batch,)`` string tensor), and ``serving_default``
takes what TF Serving clients send (encoded image bytes, or strings). Classifiers return
probabilities, feature vectors and text embeddings their vectors; multi-task modules a dict
by task. graft hub makes one per module version on first request and caches it
(``graft.hub.server.tfhub``).
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from graft.errors import InvalidArgumentError, received


def write(module_dir: str | Path, dest: str | Path) -> Path:
    """Writes the SavedModel of a graft module into the folder ``dest`` (new).

    Example:
        >>> write("runs/digits/module", "digits_hub")  # doctest: +SKIP
        >>> import tensorflow_hub as hub  # doctest: +SKIP
        >>> hub.load("digits_hub")(images)  # doctest: +SKIP
    """
    import tensorflow as tf

    from graft.export.graphs import core_of
    from graft.module.io import load

    loaded = load(module_dir)
    manifest, model = loaded.manifest, loaded.model
    inputs = manifest.inputs
    if manifest.task == "rl-policy":
        raise InvalidArgumentError(
            "TF Hub's format holds image and text models; a reinforcement-learning policy is "
            f"served by graft serve or exported to TFLite/ONNX. {received(task=manifest.task)}"
        )
    holder = tf.Module()
    holder.model = model  # tracks every variable the functions use
    if inputs.kind == "image":
        h, w = inputs.size
        core = core_of(model, "image", inputs.encoded, inputs.size)
        call_spec = tf.TensorSpec([None, h, w, 3], tf.float32, name="images")
        raw_spec = tf.TensorSpec([None], tf.string, name="inputs") if inputs.encoded else call_spec
    else:
        core = model
        call_spec = raw_spec = tf.TensorSpec([None], tf.string, name="inputs")

    @tf.function(input_signature=[call_spec])
    def call(x):
        return core(x, training=False)

    @tf.function(input_signature=[raw_spec])
    def serve(x):
        out = model(x, training=False)
        return out if isinstance(out, dict) else {"outputs": out}

    holder.__call__ = call
    holder.core = core
    dest = Path(dest)
    tf.saved_model.save(holder, str(dest), signatures={"serving_default": serve})
    if manifest.labels:
        (dest / "assets").mkdir(exist_ok=True)
        (dest / "assets" / "labels.txt").write_text("\n".join(manifest.labels) + "\n")
    return dest


def write_tar_gz(folder: Path, dest: Path) -> Path:
    """Writes the folder's files as a gzipped tar with the SavedModel at its root
    (``saved_model.pb``, ``variables/``), as ``?tf-hub-format=compressed`` answers; fixed
    times and owners, sorted names, streamed to ``dest``."""
    with tarfile.open(dest, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(folder.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(folder)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return dest
