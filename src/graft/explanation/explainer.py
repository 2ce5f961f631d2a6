"""One classifier, explained: its probabilities on prepared inputs and the attributions of a
method (Grad-CAM or SHAP), for ``graft.explain`` and for the misclassified examples of a
report."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from graft.errors import InvalidArgumentError, received

METHODS = ("auto", "gradcam", "hirescam", "shap")
CAM_METHODS = ("gradcam", "hirescam")


def check_method(method: str, kind: str) -> str:
    """The method to use: ``auto`` is HiResCAM for images and SHAP for texts.

    HiResCAM, not Grad-CAM, is the image default because it is the more faithful of the two at
    the same cost: on the EfficientNet-Lite0 digits module its deletion score beat random
    hiding on 83% of the test images, Grad-CAM's on 74% (``bench/explain.py``).

    Raises:
        InvalidArgumentError: an unknown method, or Grad-CAM for a text model.
    """
    if method not in METHODS:
        raise InvalidArgumentError(
            f"method must be one of {', '.join(METHODS)} (auto: hirescam for images, shap for "
            f"texts). {received(method=method)}"
        )
    if method == "auto":
        return "hirescam" if kind == "image" else "shap"
    if method in CAM_METHODS and kind != "image":
        raise InvalidArgumentError(
            "Grad-CAM and HiResCAM explain convolutional image models; for a text model use "
            f"method='shap' (per-word attributions). {received(method=method)}"
        )
    return method


class Explainer:
    """Attributions and probabilities of one loaded classifier module.

    Args:
        model: the module's Keras model (raw inputs: encoded image bytes or strings).
        kind: ``"image"`` or ``"text"``.
        size: the module's image size (images).
        layer: Grad-CAM's layer in the backbone (default: the last 4-D one).
    """

    def __init__(
        self,
        model,
        kind: str,
        size=None,
        layer: str | None = None,
    ) -> None:
        self.model = model
        self.layer = layer
        self.kind = kind
        self.size = tuple(size) if size else None
        self._engine = None  # float images -> probabilities; the Keras core by default
        self._parts = None
        self._gradcam = None
        self._text_call = None

    def use_fast_engine(self, manifest, runtime: str = "auto") -> None:
        """Runs images through the module's cached TFLite core (``_engines.core_engine``), as
        ``graft serve`` does: SHAP and the deletion check run hundreds of masked copies."""
        from graft._engines import core_engine

        self._engine = core_engine(self.parts.core, manifest, runtime)

    @property
    def parts(self):
        if self._parts is None:
            from graft.explanation.gradcam import split_classifier

            self._parts = split_classifier(self.model, self.size)
        return self._parts

    def probabilities(self, batch) -> np.ndarray:
        """Probabilities of decoded images (float ``(n, h, w, 3)``) or of texts."""
        import tensorflow as tf

        if self.kind == "text":
            if self._text_call is None:
                self._text_call = _text_probabilities(self.model)
            texts = [str(t) for t in batch]
            out = [self._text_call(texts[i : i + 64]) for i in range(0, len(texts), 64)]
            return np.concatenate(out) if out else np.zeros((0, self.model.output_shape[-1]))
        if self._engine is None:
            h, w = self.size
            call = tf.function(
                self.parts.core, input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)]
            )
            self._engine = lambda x: call(tf.constant(x, tf.float32)).numpy()
        return np.asarray(self._engine(np.asarray(batch, np.float32)))

    def attributions(
        self, inputs, targets: Sequence[int], method: str, max_evals: int | None = None
    ) -> list:
        """Per input: an ``(h, w)`` map (images, at the module's input size) or ``(spans,
        values)`` per word (texts)."""
        if method in CAM_METHODS:
            from graft.explanation.gradcam import GradCam, upsample

            hires = method == "hirescam"
            if self._gradcam is None or self._gradcam.hires != hires:
                self._gradcam = GradCam(self.parts, self.layer, hires=hires)
            maps, _ = self._gradcam(inputs, targets)
            return list(upsample(maps, self.size))
        from graft.explanation import shapley

        if self.kind == "text":
            return shapley.explain_texts(
                self.probabilities, inputs, targets, max_evals=max_evals or 200
            )
        return list(
            shapley.explain_images(self.probabilities, inputs, targets, max_evals=max_evals or 300)
        )

    def deletion_check(self, inputs, attributions, targets, fraction: float = 0.2):
        """The deletion check of these attributions (``deletion.DeletionCheck``)."""
        from graft.explanation import deletion

        if self.kind == "text":
            spans = [a[0] for a in attributions]
            values = [a[1] for a in attributions]
            return deletion.check_texts(
                self.probabilities, inputs, spans, values, targets, fraction=fraction
            )
        return deletion.check_images(
            self.probabilities, inputs, np.stack(attributions), targets, fraction=fraction
        )


def _text_probabilities(model) -> Callable[[list[str]], np.ndarray]:
    """Texts -> probabilities. graft's text layout (encoder, head) runs through ``TextEngine``,
    which cuts each batch to its longest text instead of the full sequence length (10x faster
    on sentences, and SHAP runs the model on hundreds of masked copies); other text models run
    whole."""
    import keras
    import tensorflow as tf

    from graft.models.text import TextEngine

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(layers) == 2:
        try:
            engine = TextEngine(layers[0], batch_size=64)
        except InvalidArgumentError:
            pass
        else:
            head = layers[1]
            return lambda texts: np.asarray(head(engine(texts), training=False))
    call = tf.function(model, input_signature=[tf.TensorSpec([None], tf.string)])
    return lambda texts: call(tf.constant(texts)).numpy()
