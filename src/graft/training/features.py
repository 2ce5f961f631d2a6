"""Feature extraction: the frozen backbone runs once per example, through the fastest runtime.

For image backbones the Keras model is converted once to TFLite and run by the LiteRT
interpreter with XNNPACK (about 3x Keras ``predict`` on CPU, see bench/RESULTS.md); Keras is
the fallback. Texts are tokenized, sorted by length and run in batches cut to their longest
text (``graft.models.text.TextEngine``). Vectors are cached under
``$GRAFT_HOME/features/<model sha>/<preprocessing hash>/`` by example sha256, in sharded chunk
files (``vector_store.VectorStore``), and reused across epochs, runs and split changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from graft import config

log = logging.getLogger(__name__)
BATCH = 32
FLUSH_BYTES = 64 << 20  # computed vectors written to the cache as one shard per this many bytes


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FeatureExtractor:
    """Computes and caches backbone features for image files or texts.

    Args:
        module_dir: the backbone module (feature-vector task).
        runtime: ``"auto"`` (``graft._engines.plan_runtime``: TFLite for images and Keras for
            texts on CPU, Keras on a GPU), ``"tflite"`` or ``"keras"``.
        threads: interpreter threads (default: all cores).
        model: the module's Keras model, if the caller has already loaded it.

    Example:
        >>> fx = FeatureExtractor(graft.models.materialize("efficientnet_lite0.imagenet"))
        >>> fx(["a.jpg", "b.png"]).shape  # doctest: +SKIP
        (2, 1280)
    """

    def __init__(
        self,
        module_dir: str | Path,
        runtime: str = "auto",
        threads: int | None = None,
        model=None,
    ):
        from graft._engines import check_runtime
        from graft.module.io import verify

        check_runtime(runtime)
        self.module_dir = Path(module_dir)
        self.manifest = verify(self.module_dir)
        self.kind = self.manifest.inputs.kind
        self.model_sha = self.manifest.files["model.keras"].sha256
        from graft._engines import plan_runtime, visible_devices

        devices = visible_devices() if runtime == "auto" else ()
        self.plan = plan_runtime(runtime, self.kind, devices)
        self.runtime = self.plan.runtime
        self.threads = threads or os.cpu_count() or 1
        size = self.manifest.inputs.size
        self.preprocess_key = _sha(f"{self.kind}|{size}|{self._decoder_version()}".encode())[:16]
        self.cache_dir = config.graft_home() / "features" / self.model_sha / self.preprocess_key
        self.engine_key = self.model_sha
        self.output_shape: tuple[int, ...] = (self.manifest.outputs.dim,)
        self._model = model
        self._engine = None

    def _decoder_version(self) -> str:
        from graft.data.images import DECODER_VERSION

        return DECODER_VERSION if self.kind == "image" else "raw-text"

    # -- runtimes ---------------------------------------------------------------------------
    def keras_model(self):
        if self._model is None:
            from graft.module.io import load

            self._model = load(self.module_dir).model
        return self._model

    def tflite_path(self) -> Path:
        """Converts the backbone to TFLite once per model sha (cached, atomic)."""
        from graft._engines import tflite_file

        return tflite_file(self.keras_model(), self.engine_key)

    def _run_tflite(self, batch: np.ndarray) -> np.ndarray:
        if self._engine is None:
            from graft._engines import TFLiteEngine

            self._engine = TFLiteEngine(self.tflite_path(), self.threads)
        return self._engine(batch)

    def _run(self, batch) -> np.ndarray:
        if self.runtime == "tflite":
            return self._run_tflite(batch)
        if self.kind == "text":
            if self._engine is None:
                from graft.errors import InvalidArgumentError
                from graft.models.text import TextEngine

                try:
                    self._engine = TextEngine(self.keras_model())
                except InvalidArgumentError:  # another text layout: the model on strings
                    import tensorflow as tf

                    model = self.keras_model()
                    self._engine = lambda texts: np.asarray(
                        model(tf.constant(list(texts), tf.string), training=False)
                    )
            return self._engine(batch)
        if self._engine is None:  # images on Keras: one compiled call (XLA on a GPU)
            import tensorflow as tf

            model = self.keras_model()
            self._engine = tf.function(
                lambda x: model(x, training=False),
                jit_compile=self.plan.jit_compile or None,
                reduce_retracing=True,
            )
        return np.asarray(self._engine(batch))

    # -- extraction -------------------------------------------------------------------------
    def read(self, items: Sequence[str]) -> tuple[list[str], list]:
        """The cache keys (sha256 of each example: image file bytes or UTF-8 text) and the raw
        inputs (texts, or image bytes), as ``__call__`` computes them."""
        from graft.data.images import read_inputs

        raw = read_inputs(self.kind, items)
        return [_sha(r.encode("utf-8") if self.kind == "text" else r) for r in raw], raw

    def _prepare(self, raw: list):
        if self.kind == "text":
            return raw
        from graft.data.images import decode_batch

        return decode_batch(raw, tuple(self.manifest.inputs.size))

    def __call__(self, items: Sequence[str], progress: Callable[[int], None] | None = None):
        """Returns an ``(n, dim)`` float32 array of features, computing only uncached ones.

        Decoding of the next batch overlaps with inference on the current one.
        """
        from graft.training.vector_store import VectorStore

        items = list(items)
        keys, raw = self.read(items)
        store = VectorStore(self.cache_dir, self.output_shape)
        found, out = store.get(keys)
        todo = np.flatnonzero(~found).tolist()
        if progress:
            progress(len(items) - len(todo))
        # Texts go to the engine in large chunks: it sorts them by length and batches them.
        step = BATCH * 16 if self.kind == "text" else BATCH
        chunks = [todo[s : s + step] for s in range(0, len(todo), step)]
        flush_rows = max(1, FLUSH_BYTES // (4 * int(np.prod(self.output_shape))))
        done: list[int] = []  # computed, not yet in the store
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(self._prepare, [raw[i] for i in chunks[0]]) if chunks else None
            try:
                for n, chunk in enumerate(chunks):
                    batch = pending.result()
                    if n + 1 < len(chunks):
                        pending = pool.submit(self._prepare, [raw[i] for i in chunks[n + 1]])
                    out[chunk] = self._run(batch)
                    done += chunk
                    if len(done) >= flush_rows:  # one shard per ~64 MB, not per batch
                        store.put([keys[i] for i in done], out[done])
                        done = []
                    if progress:
                        progress(len(chunk))
            finally:  # what was computed stays cached, even if a later batch fails
                store.put([keys[i] for i in done], out[done])
        return out


class ActivationExtractor(FeatureExtractor):
    """Like ``FeatureExtractor``, for the activations at a block boundary inside the backbone.

    Fine-tuning the top blocks without augmentation sees the same frozen bottom part every
    epoch, so its output is computed once (TFLite, like features) and cached under the same
    keys plus the boundary: ``features/<model sha>/<preprocessing>/at-<layer>/``.

    Args:
        module_dir: the backbone module.
        bottom: the Keras model from the backbone's input to the boundary tensor.
        boundary: the name of the first layer above the boundary.
        runtime: as for ``FeatureExtractor``.
    """

    def __init__(self, module_dir: str | Path, bottom, boundary: str, runtime: str = "auto"):
        super().__init__(module_dir, runtime=runtime, model=bottom)
        self.cache_dir = self.cache_dir / f"at-{boundary}"
        self.engine_key = _sha(f"{self.model_sha}|{boundary}".encode())
        self.output_shape = tuple(int(d) for d in bottom.output.shape[1:])
